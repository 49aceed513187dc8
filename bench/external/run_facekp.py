"""Find the 15 Kaggle keypoints on ytf68 photos with facekp's photo pipeline.

Runs in the project environment::

    /work/venv/bin/python bench/external/run_facekp.py --output bench/out/external/facekp.json

``facekp.predict.predict_photo`` decodes the photo, finds faces with the Haar detector, cuts
each one to 96x96, runs the model and maps the keypoints back to the photo. The timed step
therefore includes JPEG decoding, which the other runners time separately; the decode step
here only reads the file's bytes. The whole-image fallback for small photos without a
detected face is off, so every face comes from the detector.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    REPO_ROOT,
    environment_info,
    limit_threads,
    log,
    parse_args,
    prepare_run,
    rounded,
    run_photos,
    setup_logging,
)

limit_threads()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
from facekp.checkpoint import load_model, shipped_model_path  # noqa: E402
from facekp.detect import default_detector  # noqa: E402
from facekp.errors import FacekpError  # noqa: E402
from facekp.predict import predict_photo  # noqa: E402


@dataclass(frozen=True)
class EncodedPhoto:
    """A photo file's name, its bytes and its ``(height, width)``, read from the file header."""

    name: str
    data: bytes
    shape: tuple[int, int]


def decode(path: Path) -> EncodedPhoto:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:  # Pillow reads the header, not the pixels
        width, height = image.size
    return EncodedPhoto(name=path.name, data=data, shape=(height, width))


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint to run (default: the shipped model facekp/assets/model.pt)",
    )


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], add_model_argument)
    setup_logging()
    prepared = prepare_run(args)
    if prepared is None:
        return 2
    cpu, image_dir, names = prepared
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    model_path = (args.model or shipped_model_path()).resolve()
    tick = time.perf_counter()
    try:
        keypoint_model = load_model(model_path)
    except FacekpError as error:
        log.error("facekp: %s", error)
        return 2
    detector = default_detector()
    init_seconds = time.perf_counter() - tick

    def find_faces(photo: EncodedPhoto) -> list[dict]:
        result = predict_photo(
            photo.data, keypoint_model, detector, name=photo.name, whole_image=False
        )
        # predict_photo reports "no face found" as an error; that is a detection miss here.
        if result.error is not None and not result.error.startswith("no face found"):
            raise RuntimeError(result.error)
        return [
            {
                "box": [float(v) for v in face.box],
                "score": face.score,
                "keypoints": rounded(face.keypoints),
                "alternatives": {},
            }
            for face in result.faces
        ]

    info = keypoint_model.info
    header = {
        "settings": {
            "detector": getattr(detector, "name", type(detector).__name__),
            "model": str(model_path),
            "model_name": keypoint_model.name,
            "model_metrics": info.get("metrics"),
            "model_training_data": (info.get("data") or {}).get("path"),
            "whole_image": False,
            "versions": {
                "torch": torch.__version__,
                "opencv": cv2.__version__,
                "numpy": np.__version__,
            },
        },
        "environment": environment_info(cpu),
        "init_seconds": init_seconds,
    }
    failures = run_photos("facekp", names, image_dir, decode, find_faces, header, args.output)
    log.info("facekp: wrote %s (%d photos, %d failed)", args.output, len(names), failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
