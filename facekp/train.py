"""Train a keypoint model with a masked loss, resumable checkpoints and progress files.

A run lives in one folder, ``RUN_DIR``:

- ``run.json``: the configuration plus ``status`` (running, stopped, finished, failed),
  ``pid`` and, after a failure, ``error``.
- ``progress.json``: ``{"epoch", "epochs", "batch", "batches", "elapsed_seconds", "status"}``,
  rewritten atomically about once a second.
- ``metrics.jsonl``: one JSON object per finished epoch with ``train_rmse`` and ``val_rmse``
  (pixels of the 96x96 face, over labelled coordinates only), ``epoch_seconds``,
  ``elapsed_seconds``, ``lr`` and ``time`` (ISO 8601, UTC).
- ``best.pt`` (lowest validation RMSE so far, or the latest epoch without validation data)
  and ``last.pt`` (everything needed to resume), both written atomically.
- ``stop``: create this file to stop the run at the next batch boundary; SIGINT and
  SIGTERM do the same.

Missing keypoints (NaN) are masked out of the loss. Every random draw comes from the seed,
the epoch and the batch number, and the torch RNG state is saved, so a stopped run resumed
with :func:`train` gives the same weights and metrics as an unbroken run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facekp import data as data_module
from facekp._atomic import write_json_atomic
from facekp.checkpoint import (
    NotACheckpointError,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from facekp.errors import CheckpointError, DataFormatError, FacekpError
from facekp.keypoints import FACE_SIZE, KEYPOINT_NAMES
from facekp.models import MODELS, create_model
from facekp.transforms import Augmentation

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
PROGRESS_FILE = "progress.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
STOP_FILE = "stop"
# Held with flock by the one trainer that writes the folder.
LOCK_FILE = ".lock"

PROGRESS_INTERVAL_SECONDS = 1.0
EVAL_BATCH_SIZE = 256
HALF = FACE_SIZE / 2

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("onecycle", "constant")
LOSSES = ("l1", "mse")


class RunDirectoryError(FacekpError):
    """A run folder that cannot be used: it already contains a run, or has nothing to resume."""


@dataclass
class TrainConfig:
    """Everything that decides the result of a training run.

    ``lr`` is the peak learning rate of the one-cycle schedule (or the constant rate).
    ``val_fraction`` of the people in ``data`` are held out for validation unless
    ``val_data`` names a separate file. ``forward_fill`` copies each missing label from the
    row above, as the original notebook did, instead of masking it. ``skip_bad_rows`` leaves
    out invalid rows of ``data`` and ``val_data`` instead of raising; their counts are stored
    in ``run.json`` under ``data``.
    """

    data: str
    out: str
    model: str = "heatmapnet-lite"
    epochs: int = 30
    lr: float = 2e-3
    batch_size: int = 64
    augment: bool = True
    val_fraction: float = 0.1
    val_data: str | None = None
    seed: int = 0
    forward_fill: bool = False
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    loss: str = "l1"
    channels_last: bool = True
    skip_bad_rows: bool = False
    command: str = ""

    def validate(self) -> None:
        """Raise :class:`FacekpError` naming the first setting that cannot work."""
        if self.model not in MODELS:
            raise FacekpError(
                f"unknown model {self.model!r}; choose one of {', '.join(sorted(MODELS))}"
            )
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}"),
            (0.0 <= self.val_fraction < 1.0,
             f"val fraction must be in [0, 1), got {self.val_fraction}"),
            (self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES,
             f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
        ]
        for ok, message in checks:
            if not ok:
                raise FacekpError(message)


@dataclass
class TrainResult:
    """The outcome of a call to :func:`train`; RMSE values are pixels of the 96x96 face."""

    run_dir: Path
    status: str
    epochs_done: int
    best_val_rmse: float | None
    last_train_rmse: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_rows: int = 0  # invalid data rows left out by skip_bad_rows, both files together


# ----------------------------------------------------------------------------- losses


def masked_loss(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, kind: str = "l1"
) -> torch.Tensor:
    """Mean L1 or squared error over labelled coordinates only.

    ``predictions`` and ``targets`` are ``(B, 30)`` normalised coordinates; ``mask`` is
    ``(B, 30)`` with 1 where the target is labelled. Targets must be finite where the mask is
    0 (use 0 there). A batch without any labelled coordinate returns a zero loss that still
    backpropagates (all gradients zero), never NaN.
    """
    difference = (predictions - targets) * mask
    per_coordinate = difference.abs() if kind == "l1" else difference.square()
    return per_coordinate.sum() / mask.sum().clamp(min=1.0)


def squared_error_pixels(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> tuple[float, int]:
    """Return the summed squared error in pixels over labelled coordinates, and their count."""
    difference = (predictions.detach().float() - targets) * mask * HALF
    return float(difference.square().sum()), int(mask.sum())


def rmse_from_sums(squared_sum: float, count: int) -> float | None:
    """RMSE in pixels from summed squared errors, or None when nothing was labelled."""
    return math.sqrt(squared_sum / count) if count else None


# ----------------------------------------------------------------------------- data


@dataclass
class _Split:
    images: np.ndarray  # (N, 96, 96) uint8
    keypoints: np.ndarray  # (N, 15, 2) float32 pixels, NaN = missing


def forward_fill_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Copy each missing coordinate from the nearest earlier row that has it (file order).

    This is the original notebook's ``fillna(method="ffill")``; rows before the first label
    of a column stay NaN. ``keypoints`` is ``(N, 15, 2)``.
    """
    flat = keypoints.reshape(len(keypoints), -1).copy()
    for column in range(flat.shape[1]):
        values = flat[:, column]
        labelled = ~np.isnan(values)
        last_index = np.where(labelled, np.arange(len(values)), -1)
        np.maximum.accumulate(last_index, out=last_index)
        filled = np.where(last_index >= 0, values[np.maximum(last_index, 0)], np.nan)
        flat[:, column] = filled
    return flat.reshape(keypoints.shape).astype(np.float32)


def keypoint_counts(keypoints: np.ndarray) -> dict[str, int]:
    """Rows with both coordinates labelled, per keypoint name."""
    labelled = ~np.isnan(keypoints).any(axis=-1)
    return {name: int(n) for name, n in zip(KEYPOINT_NAMES, labelled.sum(axis=0), strict=True)}


def mean_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Per-coordinate mean ``(15, 2)`` over labelled rows; NaN where no row is labelled."""
    labelled = ~np.isnan(keypoints)
    totals = np.where(labelled, keypoints, 0.0).sum(axis=0, dtype=np.float64)
    counts = labelled.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan).astype(np.float32)


def _load_splits(config: TrainConfig) -> tuple[_Split, _Split | None, dict[str, Any]]:
    """Load and split the data; raise :class:`DataFormatError` when a part has no labels."""
    full = data_module.load_training_csv(config.data, skip_bad_rows=config.skip_bad_rows)
    _check_labelled(full.keypoints, (
        f"{config.data} has no labelled keypoints: every keypoint cell of its {len(full)} "
        "rows is empty; training needs a training.csv with keypoint coordinates"
    ))
    keypoints = full.keypoints.astype(np.float32)
    if config.forward_fill:
        keypoints = forward_fill_keypoints(keypoints)

    skipped = {"data": len(full.skipped_rows)}
    if config.val_data:
        validation_set = data_module.load_training_csv(
            config.val_data, skip_bad_rows=config.skip_bad_rows
        )
        skipped["val_data"] = len(validation_set.skipped_rows)
        train_idx = np.arange(len(full))
        val = _Split(validation_set.images, validation_set.keypoints.astype(np.float32))
        split_info = {"kind": "file", "val_data": _absolute(config.val_data)}
    elif config.val_fraction > 0:
        train_idx, val_idx = data_module.split_indices(full, config.val_fraction, config.seed)
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise FacekpError(
                f"a validation fraction of {config.val_fraction} leaves "
                f"{len(train_idx)} training and {len(val_idx)} validation faces out of "
                f"{len(full)}; use more data, another fraction or --val-fraction 0"
            )
        val = _Split(full.images[val_idx], full.keypoints[val_idx].astype(np.float32))
        split_info = {"kind": "grouped", "fraction": config.val_fraction, "seed": config.seed,
                      "val_rows": int(len(val_idx))}
    else:
        train_idx = np.arange(len(full))
        val = None
        split_info = {"kind": "none"}

    train = _Split(full.images[train_idx], keypoints[train_idx])
    if val is not None:
        _check_labelled(train.keypoints, (
            f"after the validation split, none of the {len(train_idx)} training faces of "
            f"{config.data} has a labelled keypoint; choose another --seed or --val-fraction, "
            "or pass --val-data"
        ))
        _check_labelled(val.keypoints, (
            f"none of the {len(val.images)} validation faces has a labelled keypoint, so "
            "neither the validation RMSE nor best.pt can be computed; choose another --seed "
            "or --val-fraction, or pass --val-data with labelled faces"
        ))
    summary = {
        "path": _absolute(config.data),
        "rows": int(len(full)),
        "skipped_rows": skipped,
        "train_rows": int(len(train_idx)),
        "keypoint_counts": keypoint_counts(full.keypoints[train_idx]),
        "split": split_info,
    }
    return train, val, summary


def _check_labelled(keypoints: np.ndarray, message: str) -> None:
    """Raise :class:`DataFormatError` with ``message`` when ``keypoints`` are all missing."""
    if np.isnan(keypoints).all():
        raise DataFormatError(message)


def _absolute(path: str) -> str:
    """Return ``path`` made absolute, so a stored run does not depend on the working folder."""
    return str(Path(path).resolve())


def stored_config(config: TrainConfig) -> dict[str, Any]:
    """Return ``config`` as stored in ``run.json`` and checkpoints, with absolute data paths."""
    absolute = replace(
        config,
        data=_absolute(config.data),
        val_data=_absolute(config.val_data) if config.val_data else config.val_data,
    )
    return asdict(absolute)


def _to_targets(keypoints: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised targets ``(B, 30)`` with 0 where missing, and the 0/1 mask."""
    flat = keypoints.reshape(len(keypoints), -1)
    mask = ~np.isnan(flat)
    targets = np.where(mask, (flat - HALF) / HALF, 0.0).astype(np.float32)
    return torch.from_numpy(targets), torch.from_numpy(mask.astype(np.float32))


def _training_batches(
    train: _Split,
    config: TrainConfig,
    epoch: int,
    start_batch: int,
    augmentation: Augmentation | None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(batch_index, faces (B,1,96,96), targets (B,30), mask (B,30))`` for one epoch.

    The order depends only on (seed, epoch) and each batch's augmentation only on
    (seed, epoch, batch), so a resumed epoch gets exactly the batches it would have had.
    """
    order = np.random.default_rng([config.seed, epoch]).permutation(len(train.images))
    batches = _batch_count(len(order), config.batch_size)
    for batch_index in range(start_batch, batches):
        rows = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
        images = train.images[rows]
        keypoints = train.keypoints[rows]
        if augmentation is None:
            faces = images.astype(np.float32) / 255.0
        else:
            rng = np.random.default_rng([config.seed, epoch, batch_index])
            faces = np.empty(images.shape, dtype=np.float32)
            keypoints = keypoints.copy()
            for i in range(len(rows)):
                faces[i], keypoints[i] = augmentation.apply(images[i], keypoints[i], rng)
        targets, mask = _to_targets(keypoints)
        yield batch_index, torch.from_numpy(faces).unsqueeze(1), targets, mask


def _batch_count(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


# ----------------------------------------------------------------------------- run files


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Return the epoch records of ``RUN_DIR/metrics.jsonl``, skipping an unfinished last line."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("ignoring an unreadable line in %s: %r", path, line[:80])
    return records


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def request_stop(run_dir: str | Path) -> None:
    """Ask a running training run to save and stop at its next batch boundary."""
    (Path(run_dir) / STOP_FILE).touch()


class _StopWatch:
    """A watcher for SIGINT, SIGTERM and the run's stop file.

    Signal handlers are installed only in the main thread, where Python allows them.
    """

    def __init__(self, stop_path: Path) -> None:
        self.stop_path = stop_path
        self.signalled: str | None = None
        # Set once training has ended, so that a signal no longer interrupts the final saves.
        self.finishing = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopWatch:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: object) -> None:
        if self.finishing:
            log.info("received %s while saving the finished run; ignoring it",
                     signal.Signals(number).name)
            return
        if self.signalled is not None:
            # A second signal means the user does not want to wait for the batch to finish.
            raise KeyboardInterrupt
        self.signalled = signal.Signals(number).name
        log.warning(
            "received %s; stopping after the current batch (send it again to stop at once)",
            self.signalled,
        )

    def should_stop(self) -> bool:
        return self.signalled is not None or self.stop_path.exists()


# ----------------------------------------------------------------------------- training


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, batches: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * batches, pct_start=0.15
    )


def evaluate_split(
    model: nn.Module, split: _Split, channels_last: bool = False
) -> tuple[float | None, int]:
    """RMSE in pixels over the labelled coordinates of ``split`` and their count (eval mode)."""
    was_training = model.training
    model.eval()
    squared, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(split.images), EVAL_BATCH_SIZE):
            faces = torch.from_numpy(split.images[start : start + EVAL_BATCH_SIZE]).float()
            faces = faces.div_(255.0).unsqueeze(1)
            if channels_last:
                faces = faces.contiguous(memory_format=torch.channels_last)
            targets, mask = _to_targets(split.keypoints[start : start + EVAL_BATCH_SIZE])
            batch_squared, batch_count = squared_error_pixels(model(faces), targets, mask)
            squared += batch_squared
            count += batch_count
    model.train(was_training)
    return rmse_from_sums(squared, count), count


def _config_from_run(run_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    path = run_dir / RUN_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RunDirectoryError(
            f"cannot resume: {path} is missing or unreadable ({error}); start a new run "
            "in an empty folder"
        ) from error
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in stored.get("config", {}).items() if k in known})
    return config, stored


def prepare_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Return the stored configuration of ``run_dir`` for :func:`train` with ``resume=True``.

    ``overrides`` may only repeat stored values (or change ``command``); a different value
    raises :class:`RunDirectoryError`, because a resumed run must continue the same recipe.
    """
    run_dir = Path(run_dir)
    config, _ = _config_from_run(run_dir)
    for key, value in (overrides or {}).items():
        if key in ("command", "out"):
            continue
        stored = getattr(config, key)
        if key in ("data", "val_data") and value is not None and stored is not None:
            # run.json stores absolute paths; the user may name the same file relatively.
            unchanged = _absolute(value) == _absolute(stored)
        else:
            unchanged = stored == value
        if not unchanged:
            raise RunDirectoryError(
                f"cannot change {key} from {getattr(config, key)!r} to {value!r} when "
                f"resuming {run_dir}; drop that option or start a new run folder"
            )
    config.out = str(run_dir)
    if overrides and overrides.get("command"):
        config.command = overrides["command"]
    return config


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Raise :class:`RunDirectoryError` unless ``run_dir`` can start (or resume) a run."""
    if resume:
        if not (run_dir / LAST_FILE).is_file():
            raise RunDirectoryError(
                f"cannot resume: {run_dir / LAST_FILE} does not exist, so the run never "
                "finished a batch. Start it again without --resume, in this folder if its run "
                "failed, otherwise in an empty folder"
            )
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir} exists and is not a folder; choose another --out")
    taken = [name for name in (RUN_FILE, METRICS_FILE, LAST_FILE, BEST_FILE)
             if (run_dir / name).exists()]
    if not taken:
        return
    if taken == [RUN_FILE]:
        status = _stored_status(run_dir)
        if status == "failed":
            # A run that failed before its first checkpoint has nothing worth keeping.
            log.info("reusing %s: its previous run failed before writing a checkpoint", run_dir)
            return
        raise RunDirectoryError(
            f"{run_dir} contains {RUN_FILE} of a run with status {status!r} and no checkpoint; "
            f"if that run is no longer running, delete {run_dir / RUN_FILE} to start a new run "
            "there, or choose another --out folder"
        )
    raise RunDirectoryError(
        f"{run_dir} already contains a training run ({', '.join(taken)}); pass --resume to "
        "continue it, or choose another --out folder"
    )


def _stored_status(run_dir: Path) -> str:
    """Return the ``status`` recorded in ``run_dir/run.json``, or "unreadable"."""
    try:
        stored = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "unreadable"
    status = stored.get("status") if isinstance(stored, dict) else None
    return status if isinstance(status, str) else "unreadable"


def train(
    config: TrainConfig,
    resume: bool = False,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` and keep the run files in ``config.out``.

    With ``resume=True`` the run continues from ``last.pt`` (use :func:`prepare_resume` to get
    its stored configuration). Returns when all epochs are done (status ``finished``) or when
    a stop was requested (status ``stopped``). Invalid settings, data or ``last.pt`` raise
    before anything is written to the run folder; later errors set status ``failed`` in
    ``run.json`` and are raised again. SIGINT and SIGTERM request a stop from the start of
    this call until it returns, and are ignored once the last epoch has ended. ``on_progress``
    receives each progress record as it is written.
    """
    config.validate()
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir} exists and is not a folder; choose another --out")

    with _exclusive_run_dir(run_dir), _StopWatch(run_dir / STOP_FILE) as stop:
        check_run_dir(run_dir, resume)
        (run_dir / STOP_FILE).unlink(missing_ok=True)

        # Check the data and the checkpoint before touching the run folder, so that bad
        # input leaves the folder as it was and a corrected retry can use it.
        splits = _load_splits(config)
        last_checkpoint = _read_last_checkpoint(run_dir) if resume else None
        previous = _config_from_run(run_dir)[1] if resume else {}

        run_dir.mkdir(parents=True, exist_ok=True)
        run_record: dict[str, Any] = {
            "config": stored_config(config),
            "status": "running",
            "pid": os.getpid(),
            "started": previous.get("started", _now()),
            "data": splits[2],
        }
        if resume:
            run_record["resumed"] = previous.get("resumed", 0) + 1
        write_json_atomic(run_dir / RUN_FILE, run_record)

        try:
            result = _train_loop(config, run_dir, splits, last_checkpoint, on_progress, stop)
        except BaseException as error:
            run_record["status"] = "failed"
            message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            run_record["error"] = message
            run_record["finished"] = _now()
            write_json_atomic(run_dir / RUN_FILE, run_record)
            _write_progress_status(run_dir, "failed")
            raise
        run_record["status"] = result.status
        run_record["finished"] = _now()
        run_record.pop("error", None)
        write_json_atomic(run_dir / RUN_FILE, run_record)
    return result


@contextlib.contextmanager
def _exclusive_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` so that a second trainer cannot write into it.

    The lock is ``flock`` on ``run_dir/.lock``, which the kernel releases when the process
    ends, however it ends. A folder that this call created and that holds nothing else when
    the block ends is removed again, so a rejected start leaves no trace.
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    with open(lock_path, "a", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryError(
                f"{run_dir} is in use by another training process; wait until it ends, or "
                f"stop it (create {run_dir / STOP_FILE}) and then resume, or choose another "
                "--out folder"
            ) from None
        try:
            yield
        finally:
            if created and [path.name for path in run_dir.iterdir()] == [LOCK_FILE]:
                lock_path.unlink(missing_ok=True)
                run_dir.rmdir()


def _read_last_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/last.pt`` to resume; raise :class:`CheckpointError` saying what to do."""
    path = run_dir / LAST_FILE
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        reason = error.reason if isinstance(error, NotACheckpointError) else str(error)
        raise CheckpointError(
            f"cannot resume: the last checkpoint {path} is damaged ({reason}). {BEST_FILE} "
            "contains only the model weights, not the optimizer state needed to continue the "
            "run, so start the run again in a new --out folder"
        ) from error
    if not isinstance(checkpoint.get("training"), dict):
        raise CheckpointError(
            f"cannot resume: {path} contains no training state; start the run again in a new "
            "--out folder"
        )
    return checkpoint


def _write_progress_status(run_dir: Path, status: str) -> None:
    path = run_dir / PROGRESS_FILE
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        progress = {"epoch": 0, "epochs": 0, "batch": 0, "batches": 0, "elapsed_seconds": 0.0}
    progress["status"] = status
    write_json_atomic(path, progress)


@dataclass
class _State:
    """The position and running totals of training, saved in ``last.pt`` to resume exactly."""

    epoch: int = 1  # the epoch in progress, 1-based
    batch: int = 0  # batches of that epoch already trained
    train_squared: float = 0.0
    train_count: int = 0
    epoch_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    best_val_rmse: float | None = None
    best_epoch: int | None = None
    last_train_rmse: float | None = None


def _train_loop(
    config: TrainConfig,
    run_dir: Path,
    splits: tuple[_Split, _Split | None, dict[str, Any]],
    last_checkpoint: dict[str, Any] | None,
    on_progress: Callable[[dict[str, Any]], None] | None,
    stop: _StopWatch,
) -> TrainResult:
    train_split, val_split, data_summary = splits
    skipped_rows = sum(data_summary["skipped_rows"].values())
    mean = mean_keypoints(train_split.keypoints)
    batches = _batch_count(len(train_split.images), config.batch_size)

    torch.manual_seed(config.seed)
    model = create_model(config.model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer, config, batches)
    state = _State()
    if last_checkpoint is not None:
        state = _restore(last_checkpoint, run_dir / LAST_FILE, model, optimizer, scheduler)
    history = [r for r in read_metrics(run_dir) if r.get("epoch", 0) < state.epoch]
    augmentation = Augmentation() if config.augment else None

    def checkpoint_for(metrics: dict[str, Any], training: dict[str, Any] | None) -> dict:
        return build_checkpoint(
            model, config.model, data=data_summary, mean_keypoints=mean, metrics=metrics,
            command=config.command, training=training,
            extra={"config": stored_config(config), "epoch": metrics.get("epoch")},
        )

    def save_last() -> None:
        training = {
            "state": asdict(state),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(),
        }
        metrics = {"epoch": state.epoch - 1 if state.batch == 0 else state.epoch,
                   "best_val_rmse": state.best_val_rmse, "train_rmse": state.last_train_rmse}
        save_checkpoint(checkpoint_for(metrics, training), run_dir / LAST_FILE)

    last_progress = 0.0

    def report(status: str, force: bool = False) -> None:
        """Pass progress to ``on_progress``; rewrite progress.json if forced or 1 s has passed."""
        nonlocal last_progress
        progress = {
            "epoch": min(state.epoch, config.epochs), "epochs": config.epochs,
            "batch": batches if status == "finished" else state.batch, "batches": batches,
            "elapsed_seconds": round(state.elapsed_seconds, 3), "status": status,
        }
        now = time.monotonic()
        if force or now - last_progress >= PROGRESS_INTERVAL_SECONDS:
            last_progress = now
            write_json_atomic(run_dir / PROGRESS_FILE, progress)
        if on_progress is not None:
            on_progress(progress)

    log.info(
        "training %s on %d faces (%d validation), %d epoch(s) of %d batch(es)",
        config.model, len(train_split.images),
        0 if val_split is None else len(val_split.images), config.epochs, batches,
    )
    model.train()
    report("running", force=True)
    while state.epoch <= config.epochs:
        if _train_epoch(model, optimizer, scheduler, train_split, config, state, batches,
                        augmentation, stop, report):
            save_last()
            stop.finishing = True
            report("stopped", force=True)
            log.info("stopped in epoch %d after batch %d", state.epoch, state.batch)
            return _result(run_dir, "stopped", state, history, skipped_rows)

        record = _finish_epoch(model, val_split, config, state, optimizer)
        if not any(r.get("epoch") == record["epoch"] for r in read_metrics(run_dir)):
            _append_metrics(run_dir / METRICS_FILE, record)
        history.append(record)
        improved = val_split is None or (
            record["val_rmse"] is not None
            and (state.best_val_rmse is None or record["val_rmse"] < state.best_val_rmse)
        )
        if improved:
            state.best_val_rmse = record["val_rmse"]
            state.best_epoch = record["epoch"]
            best_metrics = {"epoch": record["epoch"], "val_rmse": record["val_rmse"],
                            "train_rmse": record["train_rmse"],
                            "training_seconds": record["elapsed_seconds"]}
            save_checkpoint(checkpoint_for(best_metrics, None), run_dir / BEST_FILE)
        state.epoch += 1
        state.batch = 0
        save_last()
        report("running", force=True)
        log.info("epoch %d/%d: train RMSE %.3f px, validation RMSE %s px, %.1f s",
                 record["epoch"], config.epochs, record["train_rmse"] or float("nan"),
                 "n/a" if record["val_rmse"] is None else f"{record['val_rmse']:.3f}",
                 record["epoch_seconds"])
    stop.finishing = True
    report("finished", force=True)
    return _result(run_dir, "finished", state, history, skipped_rows)


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    train_split: _Split,
    config: TrainConfig,
    state: _State,
    batches: int,
    augmentation: Augmentation | None,
    stop: _StopWatch,
    report: Callable[..., None],
) -> bool:
    """Train the rest of the current epoch; returns True when a stop was requested."""
    for _, faces, targets, mask in _training_batches(
        train_split, config, state.epoch, state.batch, augmentation
    ):
        if stop.should_stop():
            return True
        started = time.perf_counter()
        if config.channels_last:
            faces = faces.contiguous(memory_format=torch.channels_last)
        predictions = model(faces)
        loss = masked_loss(predictions, targets, mask, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        squared, count = squared_error_pixels(predictions, targets, mask)
        state.train_squared += squared
        state.train_count += count
        state.batch += 1
        seconds = time.perf_counter() - started
        state.epoch_seconds += seconds
        state.elapsed_seconds += seconds
        report("running")
    return stop.should_stop() and state.batch < batches


def _finish_epoch(
    model: nn.Module,
    val_split: _Split | None,
    config: TrainConfig,
    state: _State,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    started = time.perf_counter()
    val_rmse = None
    if val_split is not None:
        val_rmse, _ = evaluate_split(model, val_split, config.channels_last)
    seconds = time.perf_counter() - started
    state.epoch_seconds += seconds
    state.elapsed_seconds += seconds

    train_rmse = rmse_from_sums(state.train_squared, state.train_count)
    record = {
        "epoch": state.epoch,
        "train_rmse": None if train_rmse is None else round(train_rmse, 5),
        "val_rmse": None if val_rmse is None else round(val_rmse, 5),
        "epoch_seconds": round(state.epoch_seconds, 3),
        "elapsed_seconds": round(state.elapsed_seconds, 3),
        "lr": optimizer.param_groups[0]["lr"],
        "time": _now(),
    }
    state.last_train_rmse = record["train_rmse"]
    state.train_squared, state.train_count, state.epoch_seconds = 0.0, 0, 0.0
    return record


def _restore(
    checkpoint: dict[str, Any],
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
) -> _State:
    """Load the weights, optimizer, schedule and RNG state of ``checkpoint``, read from ``path``."""
    training = checkpoint["training"]
    try:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(training["optimizer"])
        if scheduler is not None and training.get("scheduler") is not None:
            scheduler.load_state_dict(training["scheduler"])
        torch.set_rng_state(training["torch_rng"])
        state = _State(**training["state"])
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} does not match this run's model or optimizer ({error}); start a new run"
        ) from error
    log.info("resuming at epoch %d, batch %d", state.epoch, state.batch)
    return state


def _result(
    run_dir: Path, status: str, state: _State, history: list[dict], skipped_rows: int
) -> TrainResult:
    return TrainResult(
        run_dir=run_dir,
        status=status,
        epochs_done=state.epoch - 1,
        best_val_rmse=state.best_val_rmse,
        last_train_rmse=state.last_train_rmse,
        history=history,
        skipped_rows=skipped_rows,
    )
