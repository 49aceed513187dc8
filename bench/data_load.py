"""Time and measure the memory of loading a Kaggle-size ``training.csv`` (7049 rows, ~230 MB).

The file is built from real faces: ytf68 test photos converted with facekp's detector and
framing, repeated to the row count of Kaggle's training.csv. Labels follow Kaggle's pattern:
2140 rows have all 15 keypoints and the rest only the four core keypoints. Each
measurement runs in a fresh Python process, so its peak resident memory is its own; the
report also gives the same process's peak right after the imports. Linux only (it reads
``/proc/self/status``).

    PYTHONPATH=. python bench/data_load.py [--rows 7049] [--faces 120] [--repeats 3]
        [--out bench/out/data_load]

Results print as a Markdown table. Measurements:

- ``parse``: :func:`facekp.data.load_training_csv` without the cache.
- ``parse + write cache``: the first load of a file with the cache on.
- ``cache hit``: a later load of the unchanged file.
- ``parse bytes``: the same file passed as bytes, as the app passes an upload.
- ``pandas baseline``: ``pandas.read_csv`` plus one ``str.split`` per image, the
  straightforward way to read the file.
- ``write``: :func:`facekp.data.write_training_csv` of the loaded set.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
YTF68 = REPO.parent / "shared" / "data" / "ytf68"

# Row count and complete-row count of Kaggle's training.csv.
KAGGLE_ROWS = 7049
KAGGLE_COMPLETE_ROWS = 2140

# Each measurement is a small program run in its own process. It prints
# "seconds peak_kib baseline_kib", where baseline is the peak after the imports (and, for
# "write", after loading the set to write). pandas is imported only where it is used,
# because facekp.data does not need it and it adds about 100 MiB.
_MEASURE = r"""
import sys, time
import numpy as np
from facekp.data import load_training_csv, write_training_csv

def peak_kib():
    # VmHWM starts afresh at exec, unlike getrusage's ru_maxrss, which keeps the peak of
    # the parent process that forked this one.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

case, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
if case == "pandas baseline":
    import pandas as pd
baseline = peak_kib()
if case == "write":
    faces = load_training_csv(path, use_cache=True)
    baseline = peak_kib()
start = time.perf_counter()
if case in ("parse", "parse + write cache", "cache hit"):
    faces = load_training_csv(path, use_cache=case != "parse")
elif case == "parse bytes":
    with open(path, "rb") as handle:
        content = handle.read()
    faces = load_training_csv(content, use_cache=False)
elif case == "pandas baseline":
    frame = pd.read_csv(path)
    images = np.stack([np.array(s.split(), dtype=np.uint8) for s in frame["Image"]])
    keypoints = frame.iloc[:, :30].to_numpy(np.float32)
elif case == "write":
    write_training_csv(out, faces, include_names=False)
seconds = time.perf_counter() - start
print(seconds, peak_kib(), baseline)
"""

CASES = ("parse", "parse + write cache", "cache hit", "parse bytes", "pandas baseline", "write")


def build_file(path: Path, rows: int, faces: int) -> None:
    """Convert ``faces`` ytf68 test photos and write them, repeated to ``rows``, to ``path``."""
    from facekp.convert import convert_landmarks
    from facekp.data import KeypointSet, write_training_csv
    from facekp.keypoints import CORE_KEYPOINTS, KEYPOINT_NAMES
    from facekp.landmarks import read_landmark_csv

    landmarks = read_landmark_csv(YTF68 / "test_frames_keypoints.csv")
    step = max(1, len(landmarks) // faces)
    converted = convert_landmarks(landmarks.subset(range(0, len(landmarks), step)), YTF68 / "test")
    print(f"converted {len(converted.faces)} real faces", file=sys.stderr)

    repeat = np.arange(rows) % len(converted.faces)
    keypoints = converted.faces.keypoints[repeat].copy()
    rng = np.random.default_rng(0)
    complete = np.zeros(rows, dtype=bool)
    complete[
        rng.choice(rows, size=round(rows * KAGGLE_COMPLETE_ROWS / KAGGLE_ROWS), replace=False)
    ] = True
    non_core = [i for i, name in enumerate(KEYPOINT_NAMES) if name not in CORE_KEYPOINTS]
    keypoints[np.ix_(~complete, non_core)] = np.nan
    faces_set = KeypointSet(images=converted.faces.images[repeat], keypoints=keypoints)
    write_training_csv(path, faces_set, include_names=False)


def measure(case: str, path: Path, out: Path, cache: Path) -> tuple[float, float, float]:
    """Run one case in a fresh process; return seconds, peak MiB and post-import MiB."""
    environment = dict(os.environ, FACEKP_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, case, str(path), str(out)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak, baseline = result.stdout.split()
    return float(seconds), int(peak) / 1024, int(baseline) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=KAGGLE_ROWS, help="rows in the file")
    parser.add_argument("--faces", type=int, default=120, help="real faces to convert and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "data_load")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "training.csv"
    build_file(path, args.rows, args.faces)
    size_mb = path.stat().st_size / 1e6

    rows = []
    for case in CASES:
        times, peaks, baselines = [], [], []
        for _ in range(args.repeats):
            # A fresh cache folder per run, so "parse + write cache" always misses and
            # "cache hit" always finds the entry that a first load left.
            with tempfile.TemporaryDirectory() as cache:
                if case == "cache hit":
                    measure("parse + write cache", path, args.out / "written.csv", Path(cache))
                seconds, peak, baseline = measure(case, path, args.out / "written.csv", Path(cache))
            times.append(seconds)
            peaks.append(peak)
            baselines.append(baseline)
        rows.append((case, statistics.median(times), min(times), max(peaks), max(baselines)))

    print(
        f"{args.rows} rows, {size_mb:.0f} MB, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()})"
    )
    print()
    print("| measurement | median s | best s | peak RSS MiB | peak RSS after imports MiB |")
    print("|---|---:|---:|---:|---:|")
    for case, median, best, peak, baseline in rows:
        print(f"| {case} | {median:.2f} | {best:.2f} | {peak:.0f} | {baseline:.0f} |")


if __name__ == "__main__":
    main()
