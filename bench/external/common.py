"""Shared parts of the end-to-end benchmark runners: photo list, one-CPU pinning, timing, JSON.

Each runner (``run_dlib.py``, ``run_mediapipe.py``, ``run_facekp.py``) runs in its own
virtual environment, so this module uses only the standard library. A runner reads every
photo named in the labels CSV, finds faces with its tool's own detector, and writes one JSON
file of this form::

    {"tool": "dlib", "settings": {...}, "environment": {...}, "init_seconds": 0.4,
     "photos": [{"file": "A_01.jpg", "width": 200, "height": 180,
                 "decode_seconds": 0.001, "seconds": 0.05,
                 "decode_cpu_seconds": 0.001, "cpu_seconds": 0.05,
                 "faces": [{"box": [x, y, w, h], "score": 1.2,
                            "keypoints": [[x, y], ... 15 rows],
                            "alternatives": {"label": {"keypoint name": [x, y]}}}],
                 "error": null}]}

Coordinates are photo pixels with pixel centres at integers (pixel ``(0, 0)`` covers
``[-0.5, 0.5)``). Keypoints follow the Kaggle order of ``facekp.keypoints.KEYPOINT_NAMES``.
An empty ``faces`` list means the tool found no face; ``error`` is set when the photo could
not be processed at all. ``*_seconds`` are wall-clock times and ``*_cpu_seconds`` the CPU
time of the whole process over the same step, which other load on the machine disturbs less.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("bench.external")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "ytf68"

# Variables that cap the thread pools of OpenMP, OpenBLAS, MKL and numexpr.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

PROGRESS_EVERY = 100  # photos between progress lines on stderr


def limit_threads() -> None:
    """Set every thread-pool variable to 1. Call it before numpy or any tool is imported."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"


def parse_args(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """Parse the options that every runner takes, plus those that ``add_arguments`` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="ytf68 folder containing test/ and test_frames_keypoints.csv (default: %(default)s)",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "training"),
        help="which ytf68 split to run on (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--limit", type=int, default=None, help="run on the first N photos only (default: all)"
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="pin the process to this CPU number (default: the highest CPU it may run on)",
    )
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)


def pin_to_one_cpu(cpu: int | None) -> int:
    """Restrict this process to one CPU so that each tool is timed on a single core.

    The thread variables do not reach every pool (MediaPipe's graph and OpenCV start their
    own threads), so the CPU affinity is what keeps every tool on one core.

    Returns the CPU number used. Raises ``ValueError`` if ``cpu`` is not one the process may
    run on.
    """
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    if chosen not in allowed:
        raise ValueError(f"--cpu {cpu} is not one of the CPUs this process may use: {allowed}")
    os.sched_setaffinity(0, {chosen})
    return chosen


def split_paths(data_dir: Path, split: str) -> tuple[Path, Path]:
    """Return ``(image_dir, labels_csv)`` of a ytf68 split, checking that both exist."""
    image_dir = data_dir / split
    labels_csv = data_dir / f"{split}_frames_keypoints.csv"
    for path in (image_dir, labels_csv):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: pass --data-dir pointing at the ytf68 folder"
            )
    return image_dir, labels_csv


def read_photo_names(labels_csv: Path) -> list[str]:
    """Return the file names in the first column of a ytf68 labels CSV, in file order."""
    with open(labels_csv, newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)  # header: an empty name, then the coordinate column numbers
        names = [row[0] for row in rows if row and row[0]]
    if not names:
        raise ValueError(f"{labels_csv} lists no photos")
    return names


def prepare_run(args: argparse.Namespace) -> tuple[int, Path, list[str]] | None:
    """Pin the process and list the photos: return ``(cpu, image_dir, names)``.

    Returns None after logging the reason when the data folder, the labels CSV or the CPU
    is unusable, so the runner can exit with status 2 and a one-line message.
    """
    try:
        cpu = pin_to_one_cpu(args.cpu)
        image_dir, labels_csv = split_paths(args.data_dir, args.split)
        names = read_photo_names(labels_csv)[: args.limit]
    except (OSError, ValueError, csv.Error, UnicodeDecodeError) as error:
        log.error("%s", error)
        return None
    return cpu, image_dir, names


def environment_info(cpu: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _processor_name(),
        "cpu_pinned": cpu,
        "cpu_count": os.cpu_count(),
        # Timings are only as good as the machine was quiet: other work shares the CPUs.
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "threads": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def _processor_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_photos(
    tool: str,
    names: list[str],
    image_dir: Path,
    decode: Callable[[Path], Any],
    find_faces: Callable[[Any], list[dict[str, Any]]],
    header: dict[str, Any],
    output: Path,
) -> int:
    """Run ``find_faces(decode(path))`` on every photo, time it and write the JSON to ``output``.

    ``decode`` returns the image in whatever form the tool takes and must provide
    ``image.shape``; ``find_faces`` returns the face dicts described in the module docstring.
    A photo that raises is recorded with its error and logged, and the run goes on.
    Returns the number of photos that failed.
    """
    photos = []
    failures = 0
    started = time.perf_counter()
    for index, name in enumerate(names, start=1):
        record: dict[str, Any] = {"file": name, "faces": [], "error": None}
        try:
            tick, cpu_tick = time.perf_counter(), time.process_time()
            image = decode(image_dir / name)
            record["decode_seconds"] = time.perf_counter() - tick
            record["decode_cpu_seconds"] = time.process_time() - cpu_tick
            record["height"], record["width"] = (int(v) for v in image.shape[:2])

            tick, cpu_tick = time.perf_counter(), time.process_time()
            record["faces"] = find_faces(image)
            record["seconds"] = time.perf_counter() - tick
            record["cpu_seconds"] = time.process_time() - cpu_tick
        except Exception as error:  # noqa: BLE001 - one bad photo must not end a long run
            failures += 1
            record["error"] = f"{type(error).__name__}: {error}"
            log.error("%s: could not process %s: %s", tool, image_dir / name, record["error"])
        photos.append(record)

        if index % PROGRESS_EVERY == 0 or index == len(names):
            rate = index / (time.perf_counter() - started)
            log.info("%s: %d/%d photos (%.1f photos/s)", tool, index, len(names), rate)

    write_json(output, {**header, "tool": tool, "photos": photos})
    return failures


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` through a temporary file, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as handle:
        json.dump(document, handle)
    os.replace(partial, path)


def rounded(points: Any, digits: int = 3) -> list[list[float]]:
    """Convert an ``(N, 2)`` sequence of points to nested lists of floats for JSON."""
    return [[round(float(x), digits), round(float(y), digits)] for x, y in points]
