"""``python -m facekp evaluate``: RMSE of a model on labelled faces beside the mean face."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint on a labelled CSV",
        description=(
            "Report the RMSE in pixels of the 96x96 face, overall and per keypoint, over "
            "labelled coordinates only, beside the mean-face baseline (the training mean "
            "stored in the checkpoint) on the same coordinates."
        ),
    )
    parser.add_argument("--data", required=True, help="CSV in Kaggle training.csv format")
    parser.add_argument(
        "--checkpoint", help="checkpoint file (default: the model shipped with facekp)"
    )
    parser.add_argument(
        "--skip-bad-rows", action="store_true",
        help="leave out invalid rows of --data instead of stopping at the first one; the "
        "skipped count is printed (skipped_rows in --json output)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    from facekp.checkpoint import load_model
    from facekp.data import load_training_csv
    from facekp.evaluate import evaluate

    keypoint_model = load_model(args.checkpoint)
    keypoint_set = load_training_csv(args.data, skip_bad_rows=args.skip_bad_rows)
    result = evaluate(keypoint_model, keypoint_set)
    skipped = len(keypoint_set.skipped_rows)

    if args.json:
        summary = result.to_dict()
        summary["checkpoint"] = str(keypoint_model.path)
        summary["model"] = keypoint_model.name
        summary["data"] = str(args.data)
        summary["skipped_rows"] = skipped
        print(json.dumps(summary))
        return 0

    print(f"model: {keypoint_model.name} ({keypoint_model.path})")
    print(f"data: {args.data}: {result.count} faces, {result.coordinates} labelled coordinates")
    if args.skip_bad_rows:
        print(f"invalid rows skipped: {skipped}")
    print(f"RMSE: {_format(result.rmse)} px (mean face: {_format(result.baseline_rmse)} px)")
    print()
    print(f"{'keypoint':<26} {'RMSE px':>8} {'mean face':>10} {'faces':>6}")
    for name, value in result.per_keypoint.items():
        baseline = result.per_keypoint_baseline[name]
        print(f"{name:<26} {_format(value):>8} {_format(baseline):>10} "
              f"{result.per_keypoint_count[name]:>6}")
    return 0
