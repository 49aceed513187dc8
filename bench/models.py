"""Compare trained keypoint models on a labelled test CSV: accuracy, speed and size.

Each ``NAME=PATH`` is a run folder with ``best.pt`` and ``metrics.jsonl``, or a checkpoint
file. For each, this prints RMSE in pixels of the 96x96 face, overall and per keypoint, and
the training time recorded in the run. It also prints inference time per face at batch 1
and batch 256 on one thread (median of repeated timings), parameter count and file size. The mean-face row
uses the first model's stored training mean. Example::

    python bench/models.py --test data/ytf68-test.csv \\
        notebook=runs/sezannet-notebook masked=runs/sezannet-masked shipped=facekp/assets/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from facekp.checkpoint import KeypointModel, load_model  # noqa: E402
from facekp.data import load_training_csv  # noqa: E402
from facekp.evaluate import evaluate, keypoint_errors  # noqa: E402
from facekp.keypoints import KEYPOINT_NAMES  # noqa: E402

SHORT_NAMES = {
    "left_eye_center": "LEc", "right_eye_center": "REc",
    "left_eye_inner_corner": "LEi", "left_eye_outer_corner": "LEo",
    "right_eye_inner_corner": "REi", "right_eye_outer_corner": "REo",
    "left_eyebrow_inner_end": "LBi", "left_eyebrow_outer_end": "LBo",
    "right_eyebrow_inner_end": "RBi", "right_eyebrow_outer_end": "RBo",
    "nose_tip": "Nose", "mouth_left_corner": "ML", "mouth_right_corner": "MR",
    "mouth_center_top_lip": "MT", "mouth_center_bottom_lip": "MB",
}


def _checkpoint_and_run(path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        return path / "best.pt", path
    return path, None


def _training_seconds(run_dir: Path | None, keypoint_model: KeypointModel) -> float | None:
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        if lines:
            return float(json.loads(lines[-1])["elapsed_seconds"])
    seconds = keypoint_model.info.get("metrics", {}).get("training_seconds")
    return None if seconds is None else float(seconds)


def _inference_ms(keypoint_model: KeypointModel, faces: np.ndarray, batch: int) -> float:
    """Median milliseconds per face of ``predict`` on ``batch`` faces, one thread."""
    batch_faces = np.resize(faces, (batch, 96, 96))
    repeats = 50 if batch == 1 else 5
    for _ in range(3):
        keypoint_model.predict(batch_faces)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        keypoint_model.predict(batch_faces)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / batch * 1000


def _format(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", required=True, help="labelled test CSV")
    parser.add_argument("models", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    test_set = load_training_csv(args.test)
    rows = []
    mean_row = None
    for item in args.models:
        name, _, raw_path = item.partition("=")
        checkpoint, run_dir = _checkpoint_and_run(Path(raw_path))
        keypoint_model = load_model(checkpoint)
        result = evaluate(keypoint_model, test_set)
        if mean_row is None:
            mean = np.broadcast_to(keypoint_model.mean_keypoints, test_set.keypoints.shape)
            overall, per_keypoint, _ = keypoint_errors(mean, test_set.keypoints)
            mean_row = {"name": "mean face", "rmse": overall, "per_keypoint": per_keypoint}
        rows.append({
            "name": name,
            "model": keypoint_model.name,
            "rmse": result.rmse,
            "per_keypoint": result.per_keypoint,
            "training_seconds": _training_seconds(run_dir, keypoint_model),
            "ms_batch1": _inference_ms(keypoint_model, test_set.images, 1),
            "ms_batch256": _inference_ms(keypoint_model, test_set.images, 256),
            "parameters": sum(p.numel() for p in keypoint_model.model.parameters()),
            "megabytes": os.path.getsize(checkpoint) / 1e6,
            "command": keypoint_model.info.get("command", ""),
        })

    print(f"test data: {args.test}, {len(test_set)} faces; inference on 1 thread")
    print()
    print("| model | arch | RMSE px | train min | ms/face b1 | ms/face b256 | params | MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print(f"| mean face | - | {_format(mean_row['rmse'])} | - | - | - | - | - |")
    for row in rows:
        minutes = None if row["training_seconds"] is None else row["training_seconds"] / 60
        print(f"| {row['name']} | {row['model']} | {_format(row['rmse'])} | {_format(minutes, 1)} "
              f"| {_format(row['ms_batch1'])} | {_format(row['ms_batch256'])} "
              f"| {row['parameters']:,} | {_format(row['megabytes'], 1)} |")
    print()
    header = " | ".join(SHORT_NAMES[k] for k in KEYPOINT_NAMES)
    print(f"| model | {header} |")
    print("|---|" + "---:|" * len(KEYPOINT_NAMES))
    for row in [mean_row, *rows]:
        values = " | ".join(_format(row["per_keypoint"][k]) for k in KEYPOINT_NAMES)
        print(f"| {row['name']} | {values} |")
    print()
    for row in rows:
        print(f"- {row['name']}: `{row['command']}`")
    if args.json:
        Path(args.json).write_text(json.dumps({"mean_face": mean_row, "models": rows}, indent=1))


if __name__ == "__main__":
    main()
