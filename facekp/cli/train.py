"""``python -m facekp train``: train a keypoint model into a run folder."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from facekp.errors import FacekpError

log = logging.getLogger(__name__)

# Environment for fast training, applied by restarting the process once (both settings are
# read only at process start). glibc malloc: serve tensors up to 32 MiB (glibc's maximum mmap
# threshold on 64-bit) from the heap and keep freed memory, so each step reuses pages rather
# than mapping fresh zeroed ones. OpenMP: let idle worker threads sleep instead of spinning,
# which otherwise makes a step several times slower when other processes share the cores.
# bench/train_speed.py measures both.
TRAINING_ENVIRONMENT = {
    "GLIBC_TUNABLES": (
        "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
    ),
    "OMP_WAIT_POLICY": "PASSIVE",
}
GLIBC_TUNABLES = TRAINING_ENVIRONMENT["GLIBC_TUNABLES"]
NO_REEXEC_VARIABLE = "FACEKP_NO_REEXEC"

# Settings a resumed run must keep; each option defaults to None so that only the ones the
# user typed are compared with the stored run.
_CONFIG_OPTIONS = (
    "data", "model", "epochs", "lr", "batch_size", "augment", "val_fraction", "val_data",
    "seed", "forward_fill", "optimizer", "weight_decay", "schedule", "loss", "skip_bad_rows",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from facekp.models import MODELS  # light: torch is imported by facekp.models anyway

    parser = subparsers.add_parser(
        "train",
        help="train a keypoint model on a Kaggle-format CSV",
        description=(
            "Train a keypoint model. The run folder receives run.json, progress.json, "
            "metrics.jsonl, best.pt and last.pt. Create RUN_DIR/stop, press Ctrl-C or send "
            "SIGTERM to stop after the current batch, and continue later with --resume."
        ),
    )
    parser.add_argument("--data", help="training CSV in Kaggle training.csv format")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create")
    parser.add_argument(
        "--model", choices=sorted(MODELS), help="architecture (default heatmapnet-lite)"
    )
    parser.add_argument("--epochs", type=int, help="passes over the training data (default 30)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 0.002)")
    parser.add_argument("--batch-size", type=int, help="faces per optimizer step (default 64)")
    parser.add_argument(
        "--augment", action=argparse.BooleanOptionalAction, default=None,
        help="random flip, rotation, scale, shift, brightness and contrast (default on)",
    )
    parser.add_argument(
        "--val-fraction", type=float,
        help="fraction of people held out for validation when --val-data is not given "
        "(default 0.1; 0 trains on everything)",
    )
    parser.add_argument("--val-data", help="separate validation CSV in the same format")
    parser.add_argument("--seed", type=int, help="seed for weights, split, order, augmentation")
    parser.add_argument(
        "--forward-fill", action="store_true", default=None,
        help="fill missing labels from the row above (the original notebook's way) instead "
        "of masking them out of the loss; for comparisons only",
    )
    parser.add_argument("--optimizer", choices=("adamw", "adam"), help="default adamw")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    parser.add_argument(
        "--schedule", choices=("onecycle", "constant"),
        help="learning-rate schedule (default onecycle: warm up, then anneal to near 0)",
    )
    parser.add_argument("--loss", choices=("l1", "mse"), help="default l1")
    parser.add_argument(
        "--skip-bad-rows", action="store_true", default=None,
        help="leave out invalid rows of --data and --val-data instead of stopping at the "
        "first one; the skipped count is printed and stored in run.json",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads for torch (default: torch's choice, usually one per core); does "
        "not change the result",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the stopped run in RUN_DIR with its stored settings",
    )
    parser.set_defaults(run=run)


def _restart_with_training_environment() -> None:
    """Re-run ``python -m facekp`` once with :data:`TRAINING_ENVIRONMENT` added, if it helps.

    Only when this process was started as ``python -m facekp`` on Linux, some variable of
    :data:`TRAINING_ENVIRONMENT` is unset (values the user set are kept), and
    ``FACEKP_NO_REEXEC`` is unset; otherwise returns. The glibc setting is added only on glibc.
    """
    main_file = Path(__file__).resolve().parents[1] / "__main__.py"
    expected = dict(TRAINING_ENVIRONMENT)
    if platform.libc_ver()[0] != "glibc":
        expected.pop("GLIBC_TUNABLES")
    missing = {name: value for name, value in expected.items() if name not in os.environ}
    if (
        not missing
        or os.environ.get(NO_REEXEC_VARIABLE)
        or sys.platform != "linux"
        or not sys.argv
        or Path(sys.argv[0]).resolve() != main_file
    ):
        return
    environment = dict(os.environ, **missing, **{NO_REEXEC_VARIABLE: "1"})
    log.debug("restarting with %s", missing)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "facekp", *sys.argv[1:]], environment)


def _command_line(args: argparse.Namespace, given: dict[str, Any]) -> str:
    """Return the ``python -m facekp train`` command that repeats this run."""
    parts = ["python", "-m", "facekp", "train"]
    for name, value in given.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            parts += [flag, str(value)]
    parts += ["--out", str(args.out)] + (["--resume"] if args.resume else [])
    return " ".join(shlex.quote(part) for part in parts)


def run(args: argparse.Namespace) -> int:
    _restart_with_training_environment()

    from tqdm import tqdm

    from facekp.train import TrainConfig, check_run_dir, prepare_resume, train

    given: dict[str, Any] = {
        name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name) is not None
    }
    command = _command_line(args, given)
    if args.resume:
        config = prepare_resume(args.out, {**given, "command": command})
    else:
        check_run_dir(Path(args.out), resume=False)
        if "data" not in given:
            raise FacekpError("--data is required for a new run (or pass --resume)")
        config = TrainConfig(out=args.out, command=command, **given)

    # Created at the first progress record, when training starts, so that an error in the
    # settings or the data is not preceded by an empty progress bar.
    bars: list[tqdm] = []

    def show(progress: dict[str, Any]) -> None:
        total = progress["epochs"] * progress["batches"]
        done = (progress["epoch"] - 1) * progress["batches"] + progress["batch"]
        if not bars:
            bars.append(tqdm(total=total, initial=done, unit="batch", file=sys.stderr,
                             dynamic_ncols=True, leave=False))
        bar = bars[0]
        bar.total = total
        bar.n = done
        bar.set_description(f"epoch {progress['epoch']}/{progress['epochs']}", refresh=False)
        bar.refresh()

    if args.threads is not None:
        if args.threads < 1:
            raise FacekpError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)

    # train() handles SIGINT and SIGTERM while it runs and then restores the handlers found
    # here. Ignoring the signals outside it keeps a late SIGTERM (after the run has recorded
    # its status) from killing the process before it reports and exits with status 0.
    # NOTE: a signal in the instant between this line and train() installing its handlers
    # is ignored rather than stopping the run.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    try:
        result = train(config, resume=args.resume, on_progress=show)
    finally:
        for bar in bars:
            bar.close()

    best = "n/a" if result.best_val_rmse is None else f"{result.best_val_rmse:.3f} px"
    print(f"status: {result.status}")
    print(f"epochs done: {result.epochs_done}/{config.epochs}")
    print(f"best validation RMSE: {best}")
    if config.skip_bad_rows:
        print(f"invalid rows skipped: {result.skipped_rows}")
    print(f"checkpoints: {result.run_dir / 'best.pt'} {result.run_dir / 'last.pt'}")
    if result.status == "stopped":
        run_dir = shlex.quote(str(result.run_dir))
        print(f"continue with: python -m facekp train --out {run_dir} --resume")
    return 0
