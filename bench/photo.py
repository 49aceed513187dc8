"""Time the photo pipeline stage by stage, and Grad-CAM per layer, on one CPU thread.

Two JPEGs are made from a real ytf68 test photo: a 640x480 one and a 12-megapixel
(4000x3000) one, each with the photo enlarged onto a gray canvas and mild Gaussian noise
(sigma 3 gray levels) so the JPEG data is about as dense as a camera's. Each stage is
timed separately (median of repeated runs), then the whole ``predict_photo`` call.

    /work/venv/bin/python bench/photo.py [--checkpoint FILE] [--repeats N]

Results are printed as Markdown tables; the numbers in bench/RESULTS-photo.md come from
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

from facekp.checkpoint import load_model  # noqa: E402
from facekp.crop import DEFAULT_FRAMING, crop_face  # noqa: E402
from facekp.detect import default_detector, find_faces  # noqa: E402
from facekp.gradcam import grad_cam, keypoint_target, list_layers, saliency  # noqa: E402
from facekp.imageio import read_gray, read_rgb  # noqa: E402
from facekp.predict import predict_photo  # noqa: E402

DATA = Path(os.environ.get("FACEKP_TEST_DATA", REPO.parent / "shared" / "data"))
PHOTO = DATA / "ytf68" / "test" / "Adam_Sandler_01.jpg"

# (label, canvas width, canvas height, height of the enlarged photo on the canvas)
SIZES = [("640x480", 640, 480, 440), ("12 MP (4000x3000)", 4000, 3000, 2600)]


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


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def time_pipeline(data: bytes, keypoint_model: object, repeats: int) -> dict[str, float]:
    """Time each stage of one photo, then the whole pipeline, in milliseconds."""
    detector = default_detector()
    gray = read_gray(data).pixels
    detections = find_faces(gray, detector)
    if not detections:
        raise SystemExit("the benchmark photo has no detected face; the detector changed?")
    box = detections[0].box
    crops, face_crops = zip(*(crop_face(gray, d.box, DEFAULT_FRAMING) for d in detections))
    faces = np.stack(crops)
    keypoints = keypoint_model.predict(faces)

    def decode_draft() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (image.width // 4, image.height // 4))
            image.load()

    return {
        "faces": len(detections),
        "decode gray (full resolution)": median_ms(lambda: read_gray(data), repeats),
        "detect (find_faces, downscaled)": median_ms(lambda: find_faces(gray, detector), repeats),
        "crop (per face)": median_ms(lambda: crop_face(gray, box, DEFAULT_FRAMING), repeats),
        "predict (all faces)": median_ms(lambda: keypoint_model.predict(faces), repeats),
        "map back": median_ms(
            lambda: [c.to_photo(k) for c, k in zip(face_crops, keypoints)], repeats
        ),
        "end to end (predict_photo)": median_ms(
            lambda: predict_photo(data, keypoint_model, detector), repeats
        ),
        "for comparison: decode RGB (for drawing)": median_ms(lambda: read_rgb(data), repeats),
        "for comparison: JPEG draft decode at 1/4 size": median_ms(decode_draft, repeats),
    }


def time_gradcam(keypoint_model: object, face: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """Time Grad-CAM on each listed layer and the saliency map, in milliseconds."""
    model = keypoint_model.model
    target = keypoint_target("nose_tip", "x", "+")
    timings = [
        (f"{layer.name} ({layer.kind}, {'x'.join(map(str, layer.shape))})",
         median_ms(lambda name=layer.name: grad_cam(model, face, name, target), repeats))
        for layer in list_layers(model)
    ]
    timings.append(("saliency (input gradient)", median_ms(lambda: saliency(model, face, target), repeats)))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="model to time (default: shipped model)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    keypoint_model = load_model(args.checkpoint)

    print(f"model: {keypoint_model.name}; torch {torch.__version__}, OpenCV {cv2.__version__}, "
          f"Pillow {Image.__version__}; {platform.processor() or platform.machine()}; "
          f"1 thread; median of {args.repeats} runs")
    with Image.open(PHOTO) as photo:
        photo = photo.convert("RGB")

    face = None
    for label, width, height, photo_height in SIZES:
        data = make_jpeg(photo, width, height, photo_height)
        timings = time_pipeline(data, keypoint_model, args.repeats)
        print(f"\n### {label} JPEG, {len(data) / 1e6:.2f} MB, {timings.pop('faces')} face(s)\n")
        print("| stage | ms |\n|---|---:|")
        for stage, milliseconds in timings.items():
            print(f"| {stage} | {milliseconds:.1f} |")
        if face is None:
            result = predict_photo(data, keypoint_model)
            face = result.faces[0].crop

    print("\n### Grad-CAM per layer (target +x of nose_tip, one 96x96 face)\n")
    print("| layer | ms |\n|---|---:|")
    for layer, milliseconds in time_gradcam(keypoint_model, face, args.repeats):
        print(f"| {layer} | {milliseconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
