"""Training runs on disk: list them, read their progress, and start, stop or resume them.

A run is a folder under the runs folder (``./runs`` unless ``FACEKP_RUNS_DIR`` names another).
``python -m facekp train --out RUN_DIR`` writes these files into it:

- ``run.json``: the configuration plus ``status`` (running, stopped, finished or failed),
  ``pid`` and ``error``.
- ``metrics.jsonl``: one JSON object per finished epoch (epoch, train_rmse, val_rmse in pixels
  of the 96x96 face, epoch_seconds, elapsed_seconds, lr, time).
- ``progress.json``: epoch, epochs, batch, batches, elapsed_seconds and status, rewritten about
  once a second.
- ``best.pt`` and ``last.pt``: checkpoints.

This module adds ``launch.json`` (the command line it started, the process id and the
process start time) and ``train.log`` (the trainer's stdout and stderr). A run is stopped by
creating ``RUN_DIR/stop`` and sending SIGTERM; the trainer then saves and exits with status
``stopped``. The trainer runs in its own session, so it outlives the process that started it
(a Streamlit server, a browser tab, a page change).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from facekp._atomic import write_json_atomic
from facekp.errors import FacekpError

log = logging.getLogger(__name__)

RUNS_DIR_ENV = "FACEKP_RUNS_DIR"
DEFAULT_RUNS_DIR = Path("runs")

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
PROGRESS_FILE = "progress.json"
LAUNCH_FILE = "launch.json"
LOG_FILE = "train.log"
STOP_FILE = "stop"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"

# Statuses that the trainer writes, plus two that only this module derives: "starting" (the
# process is alive but has not written run.json yet) and "unknown" (a folder with no run files).
ACTIVE_STATUSES = ("starting", "running")

# How many characters of train.log an error message quotes when a run died without saying why.
LOG_TAIL_CHARS = 600

# A run name is a timestamp and a registered model name, so it is always a plain folder name.
_RUN_NAME_PATTERN = re.compile(r"^[0-9]{8}-[0-9]{6}-[a-z0-9][a-z0-9_-]*$")


class RunError(FacekpError):
    """A run that cannot be started, stopped or resumed, with the reason and what to do."""


@dataclass(frozen=True)
class TrainSettings:
    """The options of ``python -m facekp train`` that a run is started with.

    ``data`` is a Kaggle-format ``training.csv`` on this machine, ``lr`` the peak learning
    rate and ``val_fraction`` the share of people held out for validation (0 to 1). An option
    left at None is not passed, so the trainer's own default applies.
    """

    data: Path
    model: str
    epochs: int
    lr: float | None = None
    batch_size: int | None = None
    augment: bool | None = None
    val_fraction: float | None = None
    seed: int | None = None

    def command_args(self) -> list[str]:
        """Return the ``train`` subcommand's options for these settings, without ``--out``."""
        args = ["--data", str(self.data), "--model", self.model, "--epochs", str(self.epochs)]
        if self.lr is not None:
            args += ["--lr", repr(float(self.lr))]
        if self.batch_size is not None:
            args += ["--batch-size", str(self.batch_size)]
        if self.augment is not None:
            args.append("--augment" if self.augment else "--no-augment")
        if self.val_fraction is not None:
            args += ["--val-fraction", repr(float(self.val_fraction))]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args


@dataclass
class RunInfo:
    """The contents of one run folder, read at one moment.

    ``status`` is the effective status: the trainer's own status, except that a run whose
    process is gone while ``run.json`` still records running is reported as ``failed``
    (or ``stopped`` when a stop was requested), with ``error`` explaining why.
    """

    path: Path
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    error: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    progress: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_name(self) -> str | None:
        model = self.config.get("model")
        return str(model) if model is not None else None

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.path / BEST_CHECKPOINT
        return path if path.is_file() else None

    @property
    def last_checkpoint(self) -> Path | None:
        path = self.path / LAST_CHECKPOINT
        return path if path.is_file() else None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def best_val_rmse(self) -> float | None:
        """The lowest validation RMSE in pixels over the finished epochs (None before any)."""
        values = [m["val_rmse"] for m in self.metrics if _is_number(m.get("val_rmse"))]
        return min(values) if values else None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """Return the last ``chars`` characters of ``train.log`` (empty if there is none)."""
        return _read_tail(self.path / LOG_FILE, chars)


def runs_dir(root: str | Path | None = None) -> Path:
    """Return the runs folder: ``root`` if given, else ``$FACEKP_RUNS_DIR``, else ``./runs``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR)


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Read every run folder under the runs folder, newest first (by folder name).

    A missing runs folder means no runs. Folders without any run file are left out.
    """
    folder = runs_dir(root)
    if not folder.is_dir():
        return []
    runs = []
    for child in sorted(folder.iterdir(), key=lambda p: p.name, reverse=True):
        if not child.is_dir():
            continue
        if not any((child / name).is_file() for name in (RUN_FILE, LAUNCH_FILE, METRICS_FILE)):
            continue
        runs.append(read_run(child))
    return runs


def read_run(run_dir: str | Path) -> RunInfo:
    """Read a run folder's status, configuration, metrics and progress.

    Files that are missing, unreadable or half written (the trainer may be writing them right
    now) count as empty, and a half-written metrics line is skipped, so a run in progress
    never makes this raise.
    """
    path = Path(run_dir)
    run = _read_json(path / RUN_FILE)
    launch = _read_json(path / LAUNCH_FILE)
    config = dict(run["config"]) if isinstance(run.get("config"), dict) else {}
    launch_settings = launch.get("settings")
    for key, value in (launch_settings if isinstance(launch_settings, dict) else {}).items():
        config.setdefault(key, value)

    pid = _as_int(run.get("pid")) or _as_int(launch.get("pid"))
    info = RunInfo(
        path=path,
        status=str(run.get("status") or "unknown"),
        config=config,
        pid=pid,
        error=run.get("error") or None,
        metrics=read_metrics(path),
        progress=read_progress(path),
    )
    _derive_status(info, has_run_file=bool(run), launch=launch)
    return info


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Return the epochs of ``metrics.jsonl`` in file order, skipping lines that are not JSON.

    The last line may be cut short while the trainer appends it; such a line is left out.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as error:
        log.warning("could not read %s: %s", path, error)
        return []

    metrics = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.debug("skipping line %d of %s: not valid JSON (still being written?)", number, path)
            continue
        if isinstance(record, dict):
            metrics.append(record)
    return metrics


def read_progress(run_dir: str | Path) -> dict[str, Any] | None:
    """Return ``progress.json`` as a dict, or None when it is missing or half written."""
    progress = _read_json(Path(run_dir) / PROGRESS_FILE)
    return progress or None


def time_left_seconds(progress: dict[str, Any] | None) -> float | None:
    """Estimate the seconds left in a run from its progress, assuming a steady speed.

    Returns None until at least one batch is done, because there is no speed to go on yet.
    """
    if not progress:
        return None
    try:
        epoch = int(progress["epoch"])
        epochs = int(progress["epochs"])
        batch = int(progress.get("batch") or 0)
        batches = int(progress.get("batches") or 0)
        elapsed = float(progress["elapsed_seconds"])
    except (KeyError, TypeError, ValueError):
        return None

    done = _fraction_done(epoch, epochs, batch, batches, progress.get("status"))
    if done is None or done <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (1.0 - done) / done)


def fraction_done(progress: dict[str, Any] | None) -> float:
    """Return the finished share of a run (0 to 1) from its progress; 0 when unknown."""
    if not progress:
        return 0.0
    try:
        done = _fraction_done(
            int(progress["epoch"]),
            int(progress["epochs"]),
            int(progress.get("batch") or 0),
            int(progress.get("batches") or 0),
            progress.get("status"),
        )
    except (KeyError, TypeError, ValueError):
        return 0.0
    return done if done is not None else 0.0


def new_run_name(model: str, now: float | None = None) -> str:
    """Return a folder name for a new run: ``YYYYmmdd-HHMMSS-<model>`` in local time.

    Only a registered model name is accepted, so the name never carries a path.
    """
    _check_model_name(model)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{model}"


def start_run(settings: TrainSettings, root: str | Path | None = None) -> RunInfo:
    """Start ``python -m facekp train`` for ``settings`` in a new run folder, in the background.

    The trainer runs as a separate process in its own session and writes its output to
    ``train.log``; it keeps running after the calling process ends. Returns the run as read
    right after the start (status ``starting`` until the trainer writes ``run.json``).
    Raises :class:`RunError` when the settings are invalid or the process cannot start.
    """
    settings = TrainSettings(**{**settings.__dict__, "data": Path(settings.data).resolve()})
    _check_settings(settings)
    folder = runs_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = _create_run_folder(folder, new_run_name(settings.model))

    args = [*settings.command_args(), "--out", str(run_dir.resolve())]
    settings_record = {
        "data": str(settings.data),
        "model": settings.model,
        "epochs": settings.epochs,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "augment": settings.augment,
        "val_fraction": settings.val_fraction,
        "seed": settings.seed,
    }
    _launch(run_dir, args, settings_record)
    return read_run(run_dir)


def stop_run(run_dir: str | Path) -> None:
    """Ask a run's trainer to save its checkpoint and exit with status ``stopped``.

    Creates ``RUN_DIR/stop`` and sends SIGTERM to the trainer if it is still alive. Returns
    at once; the trainer finishes its current step first. Stopping a run that has already
    ended does nothing.
    """
    info = read_run(run_dir)
    (info.path / STOP_FILE).touch()
    if not info.is_active or info.pid is None:
        log.info("run %s is not active (status %s); nothing to stop", info.name, info.status)
        return

    launch = _read_json(info.path / LAUNCH_FILE)
    create_time = launch.get("create_time") if info.pid == _as_int(launch.get("pid")) else None
    if not _is_alive(info.pid, create_time):
        return
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    except PermissionError as error:
        raise RunError(f"cannot stop run {info.name}: pid {info.pid}: {error}") from error
    log.info("sent SIGTERM to run %s (pid %d)", info.name, info.pid)


def resume_run(run_dir: str | Path) -> RunInfo:
    """Continue a stopped or failed run from its ``last.pt``, in the background.

    The trainer reads the run's settings from its ``run.json`` and continues to the epoch
    total it was started with (``python -m facekp train --out RUN_DIR --resume``).
    Raises :class:`RunError` when the run is still active or has no checkpoint to resume from.
    """
    info = read_run(run_dir)
    if info.is_active:
        raise RunError(f"run {info.name} is still {info.status}; stop it before resuming")
    if info.last_checkpoint is None:
        raise RunError(
            f"run {info.name} has no {LAST_CHECKPOINT} to resume from; start a new run instead"
        )

    (info.path / STOP_FILE).unlink(missing_ok=True)
    args = ["--out", str(info.path.resolve()), "--resume"]
    _launch(info.path, args, {"resume": True})
    return read_run(info.path)


def is_run_name(name: str) -> bool:
    """Tell whether ``name`` has the form that :func:`new_run_name` produces."""
    return bool(_RUN_NAME_PATTERN.match(name))


# -- launching -------------------------------------------------------------------------------


def _launch(run_dir: Path, args: list[str], settings_record: dict[str, Any]) -> None:
    command = [sys.executable, "-m", "facekp", "train", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    repo_root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(repo_root), env.get("PYTHONPATH", "")) if part
    )

    with open(run_dir / LOG_FILE, "ab") as log_file:
        log_file.write(f"$ {' '.join(command)}\n".encode())
        log_file.flush()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=str(repo_root),
            )
        except OSError as error:
            message = f"could not start the trainer for run {run_dir.name}: {error}"
            raise RunError(message) from error

    write_json_atomic(
        run_dir / LAUNCH_FILE,
        {
            "command": command,
            "pid": process.pid,
            "create_time": _create_time(process.pid),
            "started": time.time(),
            "settings": settings_record,
        },
    )
    # Reap the child when it exits so it does not linger as a zombie, which would look alive.
    threading.Thread(target=process.wait, name=f"reap-{run_dir.name}", daemon=True).start()
    log.info("started run %s (pid %d): %s", run_dir.name, process.pid, " ".join(command))


def _create_run_folder(folder: Path, name: str) -> Path:
    for attempt in range(1, 100):
        candidate = folder / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunError(f"could not create a new run folder named {name!r} under {folder}")


def _check_model_name(model: str) -> None:
    from facekp.models import MODELS

    if model not in MODELS:
        raise RunError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", model):
        raise RunError(f"model name {model!r} cannot be used in a run folder name")


def _check_settings(settings: TrainSettings) -> None:
    _check_model_name(settings.model)
    if not Path(settings.data).is_file():
        raise RunError(f"training data {settings.data} not found; choose an existing CSV file")
    if not 1 <= settings.epochs <= 100_000:
        raise RunError(f"epochs must be between 1 and 100000, got {settings.epochs}")
    if settings.lr is not None and not 0 < settings.lr < 10:
        raise RunError(f"learning rate must be above 0 and below 10, got {settings.lr}")
    if settings.batch_size is not None and not 1 <= settings.batch_size <= 100_000:
        raise RunError(f"batch size must be between 1 and 100000, got {settings.batch_size}")
    if settings.val_fraction is not None and not 0 <= settings.val_fraction < 1:
        raise RunError(f"validation fraction must be in [0, 1), got {settings.val_fraction}")


# -- status ----------------------------------------------------------------------------------


def _derive_status(info: RunInfo, has_run_file: bool, launch: dict[str, Any]) -> None:
    """Replace a status that the trainer can no longer update because its process is gone."""
    launch_pid = _as_int(launch.get("pid"))
    launched_at = _as_float(launch.get("started"))
    run_written_at = _mtime(info.path / RUN_FILE)

    # A resume starts a new process while run.json still contains the previous process's final
    # status, so until the new trainer rewrites run.json the launch record is the newer one.
    launch_is_newer = launched_at is not None and (
        run_written_at is None or run_written_at < launched_at
    )
    if launch_pid is not None and (not has_run_file or launch_is_newer):
        if _is_alive(launch_pid, launch.get("create_time")):
            info.status = "starting" if not has_run_file else "running"
            info.pid = launch_pid
            info.error = None
            return
        tail = info.log_tail()
        info.status = "failed"
        info.error = "the trainer exited before it recorded a status" + (
            f"; end of {LOG_FILE}:\n{tail}" if tail else ""
        )
        return

    if info.status != "running" or info.pid is None:
        return
    create_time = launch.get("create_time") if info.pid == launch_pid else None
    if _is_alive(info.pid, create_time):
        return

    tail = info.log_tail()
    if (info.path / STOP_FILE).is_file():
        info.status = "stopped"
        info.error = info.error or "the trainer exited after a stop request"
    else:
        info.status = "failed"
        info.error = info.error or (
            f"the training process (pid {info.pid}) is gone but never recorded an end, "
            "so it was probably killed" + (f"; end of {LOG_FILE}:\n{tail}" if tail else "")
        )


def _is_alive(pid: int, create_time: Any = None) -> bool:
    """Tell whether ``pid`` is a live, non-zombie process (the same one, if its start is known)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        expected = _as_float(create_time)
        if expected is not None and abs(process.create_time() - expected) > 1.0:
            return False  # The pid was reused by another process.
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return True


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _fraction_done(
    epoch: int, epochs: int, batch: int, batches: int, status: Any
) -> float | None:
    """Share of the run done. ``epoch`` counts from 1 and is the epoch under way."""
    if epochs <= 0:
        return None
    if status == "finished":
        return 1.0
    within = batch / batches if batches > 0 else 0.0
    done = (max(epoch, 1) - 1 + min(max(within, 0.0), 1.0)) / epochs
    return min(max(done, 0.0), 1.0)


# -- files -----------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    except OSError as error:
        log.warning("could not read %s: %s", path, error)
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        log.debug("%s is not valid JSON (still being written?)", path)
        return {}
    return value if isinstance(value, dict) else {}


def _read_tail(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - chars * 4))
            data = file.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")[-chars:].strip()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _as_float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value
