"""Compare facekp, dlib and MediaPipe end to end on ytf68 test photos, each with its own detector.

Each tool runs as a separate process, pinned to one CPU with one thread per library, and
writes a JSON of per-photo keypoints and times (see ``bench/external/common.py``). dlib and
MediaPipe run in their own virtual environments under ``bench/.venvs/`` (create them with
``bash bench/external/setup.sh``); facekp runs in the project environment. This script then
scores every tool against the labels and prints Markdown tables::

    /work/venv/bin/python bench/end_to_end.py              # run all three tools, then score
    /work/venv/bin/python bench/end_to_end.py --reuse      # score the JSON files already written
    /work/venv/bin/python bench/end_to_end.py --tools dlib mediapipe --limit 50

Scoring: the labelled face is found when a detection contains the centre of the labelled
landmarks' bounding box (``facekp.convert.match_detection``). The error of a face (NME) is the
mean over keypoints of the distance to the label, divided by the distance between the labelled
outer eye corners (iBUG points 36 and 45). It is reported over all 15 keypoints and also
without the four brow ends, because tools define brow ends differently.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from facekp.convert import match_detection  # noqa: E402
from facekp.detect import Detection  # noqa: E402
from facekp.errors import FacekpError  # noqa: E402
from facekp.keypoints import KEYPOINT_NAMES, ibug68_to_kaggle  # noqa: E402
from facekp.landmarks import load_landmarks  # noqa: E402

log = logging.getLogger("bench.end_to_end")

EXTERNAL_DIR = REPO_ROOT / "bench" / "external"
VENVS_DIR = REPO_ROOT / "bench" / ".venvs"
DEFAULT_OUT_DIR = REPO_ROOT / "bench" / "out" / "external"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "ytf68"

# Tool name -> (Python interpreter, runner script).
TOOLS: dict[str, tuple[Path, Path]] = {
    "facekp": (Path(sys.executable), EXTERNAL_DIR / "run_facekp.py"),
    "dlib": (VENVS_DIR / "dlib" / "bin" / "python", EXTERNAL_DIR / "run_dlib.py"),
    "mediapipe": (VENVS_DIR / "mediapipe" / "bin" / "python", EXTERNAL_DIR / "run_mediapipe.py"),
}

OUTER_CORNERS = (36, 45)  # iBUG indices of the outer eye corners, the normalising distance
BROW_KEYPOINTS = tuple(i for i, name in enumerate(KEYPOINT_NAMES) if "eyebrow" in name)
ALL_KEYPOINTS = tuple(range(len(KEYPOINT_NAMES)))
NO_BROW_KEYPOINTS = tuple(i for i in ALL_KEYPOINTS if i not in BROW_KEYPOINTS)
FAILURE_THRESHOLD = 0.10  # a face whose normalised error exceeds this counts as a failure
RUNNER_TIMEOUT_SECONDS = 1800
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class ToolScore:
    """Per-photo results of one tool, aligned with the label order.

    ``errors`` is ``(N, 15)`` normalised per-keypoint error, NaN where the labelled face was
    not found, and ``offsets`` ``(N, 15, 2)`` the normalised signed ``predicted - label``
    difference. ``eye_distance`` ``(N,)`` is the labelled outer-eye-corner distance in
    pixels. ``seconds`` is the wall-clock time of decoding plus finding the keypoints, per
    photo, and ``cpu_seconds`` the process's CPU time for the same work. ``failed`` marks
    photos that the tool could not process or that are missing from its JSON.
    ``alternatives`` maps a reading like ``"iris_centre"`` to an ``(N, 15)`` error array in
    which only that reading's keypoints are filled in.
    """

    tool: str
    document: dict
    found: np.ndarray
    any_face: np.ndarray
    failed: np.ndarray
    errors: np.ndarray
    offsets: np.ndarray
    eye_distance: np.ndarray
    seconds: np.ndarray
    cpu_seconds: np.ndarray
    decode_seconds: np.ndarray
    alternatives: dict[str, np.ndarray] = field(default_factory=dict)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    parser.add_argument(
        "--tools",
        nargs="+",
        choices=tuple(TOOLS),
        default=list(TOOLS),
        help="tools to run and score (default: all)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="score the JSON files already in --out-dir instead of running the tools again",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="ytf68 folder containing test/ and test_frames_keypoints.csv (default: %(default)s)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="folder for each tool's JSON and the summary (default: %(default)s)",
    )
    parser.add_argument(
        "--facekp-model",
        type=Path,
        default=None,
        help="facekp checkpoint to run (default: the shipped model facekp/assets/model.pt)",
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N photos only")
    parser.add_argument(
        "--label-shift",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("DX", "DY"),
        help="add DX, DY pixels to every label before scoring, to test a label origin "
        "convention; -1 -1 reads the labels as counting pixels from 1 (default: 0 0)",
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="CPU number to pin every tool to (default: the highest CPU this process may use)",
    )

    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    return args


def run_tool(tool: str, args: argparse.Namespace, output: Path) -> None:
    """Run one tool's runner script in its own environment; raise RuntimeError if it fails."""
    python, script = TOOLS[tool]
    if not python.exists():
        raise RuntimeError(
            f"{tool}: interpreter {python} not found; create it with bash bench/external/setup.sh"
        )
    command = [str(python), str(script), "--data-dir", str(args.data_dir), "--output", str(output)]
    if args.limit is not None:
        command += ["--limit", str(args.limit)]
    if args.cpu is not None:
        command += ["--cpu", str(args.cpu)]
    if tool == "facekp" and args.facekp_model is not None:
        command += ["--model", str(args.facekp_model)]

    environment = dict(os.environ)
    for name in THREAD_VARIABLES:
        environment[name] = "1"
    log.info("running %s", " ".join(command))
    completed = subprocess.run(
        command, env=environment, timeout=RUNNER_TIMEOUT_SECONDS, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{tool}: {script.name} exited with status {completed.returncode}")


def load_labels(data_dir: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return the test photo names, their ``(N, 68, 2)`` landmarks and ``(N, 15, 2)`` keypoints.

    Raises ``ValueError`` if a photo's labelled outer eye corners are under a pixel apart,
    because its normalised error would be undefined.
    """
    landmarks = load_landmarks(data_dir / "test_frames_keypoints.csv")
    corner_a, corner_b = OUTER_CORNERS
    points = landmarks.points
    eye_distance = np.linalg.norm(points[:, corner_a] - points[:, corner_b], axis=1)
    too_close = [name for name, distance in zip(landmarks.names, eye_distance) if distance < 1.0]
    if too_close:
        raise ValueError(f"outer eye corners less than 1 px apart in the labels of {too_close[:5]}")
    keypoints = ibug68_to_kaggle(landmarks.points).astype(np.float64)
    return landmarks.names, landmarks.points, keypoints


def score_tool(
    document: dict,
    names: list[str],
    landmarks: np.ndarray,
    keypoints: np.ndarray,
) -> ToolScore:
    """Match each photo's detections to the labelled face and compute normalised errors."""
    photos = {photo["file"]: photo for photo in document["photos"]}
    missing = sum(name not in photos for name in names)
    if missing:
        log.warning(
            "%s: %d of %d labelled photos are missing from its results; they count as errors",
            document["tool"],
            missing,
            len(names),
        )
    count = len(names)
    corner_a, corner_b = OUTER_CORNERS
    eye_distance = np.linalg.norm(landmarks[:, corner_a] - landmarks[:, corner_b], axis=1)

    found = np.zeros(count, dtype=bool)
    any_face = np.zeros(count, dtype=bool)
    failed = np.zeros(count, dtype=bool)
    errors = np.full((count, len(KEYPOINT_NAMES)), np.nan)
    offsets = np.full((count, len(KEYPOINT_NAMES), 2), np.nan)
    seconds = np.full(count, np.nan)
    cpu_seconds = np.full(count, np.nan)
    decode_seconds = np.full(count, np.nan)
    alternatives: dict[str, np.ndarray] = {}

    for row, name in enumerate(names):
        photo = photos.get(name)
        if photo is None or photo.get("error"):
            failed[row] = True
            continue
        # facekp decodes inside its timed step, so the sum is the comparable time.
        seconds[row] = photo["decode_seconds"] + photo["seconds"]
        cpu_seconds[row] = photo.get("decode_cpu_seconds", np.nan) + photo.get(
            "cpu_seconds", np.nan
        )
        decode_seconds[row] = photo["decode_seconds"]
        faces = photo["faces"]
        any_face[row] = bool(faces)

        detections = [
            Detection(box=tuple(face["box"]), score=face["score"] or 0.0) for face in faces
        ]
        match = match_detection(detections, landmarks[row])
        if match is None:
            continue
        face = faces[detections.index(match)]
        found[row] = True
        predicted = np.asarray(face["keypoints"], dtype=np.float64)
        offsets[row] = (predicted - keypoints[row]) / eye_distance[row]
        errors[row] = np.linalg.norm(offsets[row], axis=1)

        for label, table in face.get("alternatives", {}).items():
            target = alternatives.setdefault(label, np.full((count, len(KEYPOINT_NAMES)), np.nan))
            for keypoint, point in table.items():
                index = KEYPOINT_NAMES.index(keypoint)
                distance = np.linalg.norm(np.asarray(point) - keypoints[row, index])
                target[row, index] = distance / eye_distance[row]

    return ToolScore(
        tool=document["tool"],
        document=document,
        found=found,
        any_face=any_face,
        failed=failed,
        errors=errors,
        offsets=offsets,
        eye_distance=eye_distance,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        decode_seconds=decode_seconds,
        alternatives=alternatives,
    )


def face_error_stats(
    errors: np.ndarray, keypoint_indices: tuple[int, ...]
) -> tuple[float, float, float]:
    """Return mean, median and failure share of per-face errors over the given keypoints.

    ``errors`` is ``(faces, 15)`` with only found faces; a face's error is its mean over
    ``keypoint_indices``.
    """
    per_face = errors[:, keypoint_indices].mean(axis=1)
    if per_face.size == 0:
        return float("nan"), float("nan"), float("nan")
    return (
        float(per_face.mean()),
        float(np.median(per_face)),
        float((per_face > FAILURE_THRESHOLD).mean()),
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(scores: list[ToolScore]) -> str:
    """Build the main table: per tool, detection, error over its own found faces and time."""
    header = [
        "tool", "photos", "labelled face found", "any face", "errors or missing",
        "NME mean", "NME median", "NME > 0.10",
        "no-brow mean", "no-brow median", "no-brow > 0.10",
        "time median ms", "time p90 ms", "CPU time median ms", "decode median ms", "init s",
    ]
    rows = []
    for score in scores:
        found_errors = score.errors[score.found]
        times = score.seconds[~np.isnan(score.seconds)] * 1000
        cpu_times = score.cpu_seconds[~np.isnan(score.cpu_seconds)] * 1000
        decode = score.decode_seconds[~np.isnan(score.decode_seconds)] * 1000
        rows.append([
            score.tool,
            str(len(score.found)),
            f"{score.found.sum()} ({score.found.mean():.1%})",
            f"{score.any_face.sum()} ({score.any_face.mean():.1%})",
            str(int(score.failed.sum())),
            *error_cells(found_errors, ALL_KEYPOINTS),
            *error_cells(found_errors, NO_BROW_KEYPOINTS),
            f"{np.median(times):.1f}" if times.size else "-",
            f"{np.percentile(times, 90):.1f}" if times.size else "-",
            f"{np.median(cpu_times):.1f}" if cpu_times.size else "-",
            f"{np.median(decode):.2f}" if decode.size else "-",
            f"{score.document.get('init_seconds', float('nan')):.2f}",
        ])
    return markdown_table(header, rows)


def subset_table(scores: list[ToolScore], subset: np.ndarray) -> str:
    """Build a table of each tool's error over the ``subset`` photos where it found the face."""
    header = [
        "tool", "faces", "NME mean", "NME median", "NME > 0.10",
        "no-brow mean", "no-brow median", "no-brow > 0.10",
    ]
    rows = []
    for score in scores:
        chosen = subset & score.found
        errors = score.errors[chosen]
        rows.append([
            score.tool,
            str(int(chosen.sum())),
            *error_cells(errors, ALL_KEYPOINTS),
            *error_cells(errors, NO_BROW_KEYPOINTS),
        ])
    return markdown_table(header, rows)


def error_cells(errors: np.ndarray, keypoint_indices: tuple[int, ...]) -> list[str]:
    if len(errors) == 0:
        return ["-", "-", "-"]
    mean, median, share = face_error_stats(errors, keypoint_indices)
    return [f"{mean:.4f}", f"{median:.4f}", f"{share:.1%}"]


def per_keypoint_table(scores: list[ToolScore], common: np.ndarray) -> str:
    """Build a table of mean normalised error per keypoint on the ``common`` photos."""
    columns: list[tuple[str, np.ndarray]] = []
    for score in scores:
        columns.append((score.tool, score.errors[common]))
        for label, errors in sorted(score.alternatives.items()):
            columns.append((f"{score.tool} {label}", errors[common]))

    header = ["keypoint"] + [title for title, _ in columns]
    rows = []
    for index, name in enumerate(KEYPOINT_NAMES):
        cells = [name]
        for _, errors in columns:
            values = errors[:, index]
            cells.append("-" if np.isnan(values).all() else f"{np.nanmean(values):.4f}")
        rows.append(cells)
    return markdown_table(header, rows)


def offset_table(scores: list[ToolScore], common: np.ndarray) -> str:
    """Build a table of the mean signed ``predicted - label`` offset, without brow ends.

    A tool whose points sit systematically off the labels, for example by a different
    pixel-origin convention, shows a non-zero mean here.
    """
    header = ["tool", "mean dx (NME units)", "mean dy (NME units)", "mean dx px", "mean dy px"]
    rows = []
    for score in scores:
        offsets = score.offsets[common][:, NO_BROW_KEYPOINTS]
        pixels = offsets * score.eye_distance[common][:, None, None]
        mean = offsets.reshape(-1, 2).mean(axis=0) if offsets.size else np.full(2, np.nan)
        mean_px = pixels.reshape(-1, 2).mean(axis=0) if pixels.size else np.full(2, np.nan)
        rows.append([
            score.tool,
            f"{mean[0]:+.4f}",
            f"{mean[1]:+.4f}",
            f"{mean_px[0]:+.2f}",
            f"{mean_px[1]:+.2f}",
        ])
    return markdown_table(header, rows)


def describe_tool(score: ToolScore) -> str:
    document = score.document
    environment = document.get("environment", {})
    return (
        f"- {score.tool}: {json.dumps(document.get('settings', {}), sort_keys=True)}; "
        f"Python {environment.get('python')}, pinned to CPU {environment.get('cpu_pinned')}, "
        f"load average {environment.get('load_average')} at the start"
    )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    args = parse_args()
    try:
        names, landmarks, keypoints = load_labels(args.data_dir)
    except (FacekpError, OSError, ValueError) as error:
        log.error("cannot read the test labels: %s", error)
        return 2
    landmarks = landmarks + np.asarray(args.label_shift)
    keypoints = keypoints + np.asarray(args.label_shift)
    if args.limit is not None:
        names = names[: args.limit]
        landmarks, keypoints = landmarks[: args.limit], keypoints[: args.limit]
    args.out_dir.mkdir(parents=True, exist_ok=True)

    scores: list[ToolScore] = []
    problems = 0
    for tool in args.tools:
        output = args.out_dir / f"{tool}.json"
        try:
            if not args.reuse:
                run_tool(tool, args, output)
            document = json.loads(output.read_text())
            scores.append(score_tool(document, names, landmarks, keypoints))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            log.error("%s: no results, left out of the tables: %s", tool, error)
            problems += 1
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            log.error(
                "%s: %s is not a valid results file (%r); run the tool again", tool, output, error
            )
            problems += 1

    if not scores:
        log.error("no tool produced results")
        return 1

    common = np.logical_and.reduce([score.found for score in scores])
    shift = "" if not any(args.label_shift) else f", labels shifted by {tuple(args.label_shift)} px"
    report = "\n\n".join([
        f"## End to end on {len(names)} ytf68 test photos{shift}",
        summary_table(scores),
        f"## Photos where every tool found the labelled face ({int(common.sum())})",
        subset_table(scores, common),
        "## Mean normalised error per keypoint, photos where every tool found the face",
        per_keypoint_table(scores, common),
        "## Mean signed offset from the labels without brow ends, same photos",
        offset_table(scores, common),
        "## Settings",
        "\n".join(describe_tool(score) for score in scores),
    ])
    print(report)
    (args.out_dir / "summary.md").write_text(report + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
