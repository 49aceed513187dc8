"""Time the photo pipeline stage by stage, and Grad-CAM per layer, on one CPU thread.

Two JPEGs are made from a real ytf68 test photo: a 640x480 one and a 12-megapixel
(4000x3000) one. Each has the photo enlarged onto a gray canvas, plus mild Gaussian noise
(sigma 3 gray levels) so that the JPEG data is about as dense as a camera's. Each stage is
timed separately (median of repeated runs), then the whole ``predict_photo`` call with
the detector searching copies of three sizes, and how far each size moves the keypoints.

    /work/venv/bin/python bench/photo.py [--checkpoint FILE] [--repeats N]

Results are printed as Markdown tables; the numbers in BENCHMARKS.md come from
this script.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facekp.checkpoint import KeypointModel, load_model  # noqa: E402
from facekp.crop import DEFAULT_FRAMING, crop_face  # noqa: E402
from facekp.detect import MAX_DETECTION_SIDE, default_detector, find_faces  # noqa: E402
from facekp.gradcam import grad_cam, keypoint_target, list_layers, saliency  # noqa: E402
from facekp.imageio import read_gray, read_rgb  # noqa: E402
from facekp.predict import predict_photo  # noqa: E402

DATA = Path(os.environ.get("FACEKP_TEST_DATA", REPO.parent / "shared" / "data"))
PHOTO = DATA / "ytf68" / "test" / "Adam_Sandler_01.jpg"

# (label, canvas width, canvas height, height of the enlarged photo on the canvas)
SIZES = [("640x480", 640, 480, 440), ("12 MP (4000x3000)", 4000, 3000, 2600)]

# Maximum side of the copy the detector searches, for the end-to-end timings. The default,
# facekp.detect.MAX_DETECTION_SIDE, is marked in the output.
DETECTION_SIDES = tuple(sorted({1024, 512, 320, MAX_DETECTION_SIDE}, reverse=True))


def make_jpeg(photo: Image.Image, width: int, height: int, photo_height: int) -> bytes:
    """Enlarge ``photo`` to ``photo_height`` rows, centre it on a gray canvas, add noise."""
    scale = photo_height / photo.height
    enlarged = photo.resize((round(photo.width * scale), photo_height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (width, height), (118, 118, 118))
    canvas.paste(enlarged, ((width - enlarged.width) // 2, (height - enlarged.height) // 2))

    rng = np.random.default_rng(0)
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0.0, 3.0, (height, width, 3))
    noisy = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def median_ms(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this thread for ``function()``, in ms.

    One warm-up call comes first. On a shared machine the CPU time is the steadier number,
    because the wall time also counts the time other processes held the core.
    """
    function()
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.thread_time()
        function()
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(wall), 1000.0 * statistics.median(cpu)


def time_pipeline(
    data: bytes, keypoint_model: KeypointModel, repeats: int
) -> dict[str, tuple[float, float]]:
    """Time each stage of one photo, then the whole pipeline, in milliseconds."""
    detector = default_detector()
    gray = read_gray(data).pixels
    detections = find_faces(gray, detector)
    if not detections:
        raise SystemExit("the benchmark photo has no detected face; did the detector change?")
    box = detections[0].box
    crops, face_crops = zip(*(crop_face(gray, d.box, DEFAULT_FRAMING) for d in detections))
    faces = np.stack(crops)
    keypoints = keypoint_model.predict(faces)

    def decode_draft() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (image.width // 4, image.height // 4))
            image.load()

    def map_back() -> None:
        for face_crop, points in zip(face_crops, keypoints):
            face_crop.to_photo(points)

    timings = {
        "decode to gray, full resolution": median_ms(lambda: read_gray(data), repeats),
        f"detect (find_faces, longest side {MAX_DETECTION_SIDE})": median_ms(
            lambda: find_faces(gray, detector), repeats
        ),
        "crop one face from the full-resolution photo": median_ms(
            lambda: crop_face(gray, box, DEFAULT_FRAMING), repeats
        ),
        f"predict {len(faces)} face(s)": median_ms(lambda: keypoint_model.predict(faces), repeats),
        "map keypoints back to the photo": median_ms(map_back, repeats),
    }
    for side in DETECTION_SIDES:
        default = " (default)" if side == MAX_DETECTION_SIDE else ""
        timings[f"end to end: predict_photo, detection side {side}{default}"] = median_ms(
            lambda side=side: predict_photo(data, keypoint_model, detector, detection_side=side),
            repeats,
        )
    timings["not in the pipeline: decode to RGB (for drawing)"] = median_ms(
        lambda: read_rgb(data), repeats
    )
    timings["not in the pipeline: JPEG draft decode at 1/4 size"] = median_ms(
        decode_draft, repeats
    )
    return timings


def detection_side_error(
    data: bytes, reference: np.ndarray, keypoint_model: KeypointModel
) -> dict[int, float]:
    """Mean distance from ``reference`` keypoints per detection side, in % of the face width."""
    errors = {}
    for side in DETECTION_SIDES:
        result = predict_photo(data, keypoint_model, detection_side=side)
        if not result.ok:
            errors[side] = float("nan")
            continue
        centre = reference.mean(axis=0)
        face = min(
            result.faces,
            key=lambda f: np.linalg.norm(np.array(f.box[:2]) + f.box[2] / 2 - centre),
        )
        distance = np.linalg.norm(face.keypoints - reference, axis=1).mean()
        errors[side] = 100.0 * distance / face.box[2]
    return errors


def time_gradcam(
    keypoint_model: KeypointModel, face: np.ndarray, repeats: int
) -> list[tuple[str, tuple[float, float]]]:
    """Time Grad-CAM on each listed layer and the saliency map, in milliseconds."""
    model = keypoint_model.model
    target = keypoint_target("nose_tip", "x", "+")
    timings = []
    for layer in list_layers(model):
        label = f"{layer.name} ({layer.kind}, {'x'.join(map(str, layer.shape))})"
        timings.append(
            (label, median_ms(lambda name=layer.name: grad_cam(model, face, name, target), repeats))
        )
    timings.append(
        ("saliency (input gradient)", median_ms(lambda: saliency(model, face, target), repeats))
    )
    return timings


def print_table(rows: list[tuple[str, tuple[float, float]]]) -> None:
    print("| step | wall ms | CPU ms |\n|---|---:|---:|")
    for label, (wall, cpu) in rows:
        print(f"| {label} | {wall:.1f} | {cpu:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="model to time (default: shipped model)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    keypoint_model = load_model(args.checkpoint)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model: {keypoint_model.name}; torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"Pillow {Image.__version__}; {os.cpu_count()} CPUs ({platform.machine()}), "
        f"load average {load:.1f}; 1 thread; median of {args.repeats} runs"
    )
    with Image.open(PHOTO) as photo:
        photo = photo.convert("RGB")
    small = predict_photo(photo_bytes(photo), keypoint_model).faces[0]

    face = small.crop
    for label, width, height, photo_height in SIZES:
        data = make_jpeg(photo, width, height, photo_height)
        faces = len(predict_photo(data, keypoint_model).faces)
        print(f"\n### {label} JPEG, {len(data) / 1e6:.2f} MB, {faces} face(s)\n")
        print_table(list(time_pipeline(data, keypoint_model, args.repeats).items()))

        # Where the small photo's keypoints land on this canvas, for the accuracy check.
        scale = photo_height / photo.height
        offset = np.array([(width - round(photo.width * scale)) // 2, (height - photo_height) // 2])
        reference = (small.keypoints + 0.5) * scale - 0.5 + offset
        errors = detection_side_error(data, reference, keypoint_model)
        print("\nDistance from the small photo's keypoints (scaled), % of the face box width:")
        print(", ".join(f"side {side}: {error:.2f}%" for side, error in errors.items()))

    print("\n### Grad-CAM per layer (target +x of nose_tip, one 96x96 face)\n")
    print_table(time_gradcam(keypoint_model, face, args.repeats))
    return 0


def photo_bytes(photo: Image.Image) -> bytes:
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
