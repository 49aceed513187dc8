"""``python -m facekp train``: train a keypoint model into a run folder."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from facekp.errors import FacekpError

# Settings a resumed run must keep; each option defaults to None so that only the ones the
# user typed are compared with the stored run.
_CONFIG_OPTIONS = (
    "data", "model", "epochs", "lr", "batch_size", "augment", "val_fraction", "val_data",
    "seed", "forward_fill", "optimizer", "weight_decay", "schedule", "loss",
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
    parser.add_argument("--model", choices=sorted(MODELS), help="architecture (default heatmapnet)")
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
        "--resume", action="store_true",
        help="continue the stopped run in RUN_DIR with its stored settings",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from facekp.train import TrainConfig, prepare_resume, train

    given: dict[str, Any] = {
        name: getattr(args, name) for name in _CONFIG_OPTIONS if getattr(args, name) is not None
    }
    command = "python -m facekp " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.resume:
        config = prepare_resume(args.out, {**given, "command": command})
    else:
        if "data" not in given:
            raise FacekpError("--data is required for a new run (or pass --resume)")
        config = TrainConfig(out=args.out, command=command, **given)

    bar = tqdm(total=None, unit="batch", file=sys.stderr, dynamic_ncols=True, leave=False)

    def show(progress: dict[str, Any]) -> None:
        bar.total = progress["epochs"] * progress["batches"]
        bar.n = (progress["epoch"] - 1) * progress["batches"] + progress["batch"]
        bar.set_description(f"epoch {progress['epoch']}/{progress['epochs']}")
        bar.refresh()

    try:
        result = train(config, resume=args.resume, on_progress=show)
    finally:
        bar.close()

    best = "n/a" if result.best_val_rmse is None else f"{result.best_val_rmse:.3f} px"
    print(f"status: {result.status}")
    print(f"epochs done: {result.epochs_done}/{config.epochs}")
    print(f"best validation RMSE: {best}")
    print(f"checkpoints: {result.run_dir / 'best.pt'} {result.run_dir / 'last.pt'}")
    if result.status == "stopped":
        print(f"continue with: python -m facekp train --out {shlex.quote(str(result.run_dir))} --resume")
    return 0
