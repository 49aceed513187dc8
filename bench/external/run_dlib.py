"""Find the 15 Kaggle keypoints on ytf68 photos with dlib: HOG face detector + 68-point predictor.

Runs in ``bench/.venvs/dlib`` (see ``setup.sh``)::

    bench/.venvs/dlib/bin/python bench/external/run_dlib.py --output bench/out/external/dlib.json

The predictor is ``shape_predictor_68_face_landmarks.dat`` from the face-recognition-models
package, trained on iBUG 300-W, so its 68 points map to the Kaggle keypoints with the same
table as the ytf68 labels (``facekp.keypoints.IBUG68_TO_KAGGLE``).
"""

from __future__ import annotations

import sys
import time
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

import dlib  # noqa: E402
import face_recognition_models  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

# facekp.keypoints needs only numpy, so the mapping is shared with the project, not copied.
sys.path.insert(0, str(REPO_ROOT))
from facekp.keypoints import ibug68_to_kaggle  # noqa: E402

# dlib's python_examples/face_landmark_detection.py upsamples once, which lets the detector find
# smaller faces. ytf68 photos can be as small as 72 pixels a side.
UPSAMPLE = 1


def decode(path: Path) -> np.ndarray:
    """Read a photo as an ``(H, W, 3)`` uint8 RGB array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    setup_logging()
    prepared = prepare_run(args)
    if prepared is None:
        return 2
    cpu, image_dir, names = prepared

    tick = time.perf_counter()
    model_path = face_recognition_models.pose_predictor_model_location()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(model_path)
    init_seconds = time.perf_counter() - tick

    def find_faces(rgb: np.ndarray) -> list[dict]:
        rects, scores, _ = detector.run(rgb, UPSAMPLE, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            shape = predictor(rgb, rect)
            # NOTE: dlib's Python API returns the 68 points rounded to whole pixels.
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            box = [rect.left(), rect.top(), rect.width(), rect.height()]
            faces.append(
                {
                    "box": [float(v) for v in box],
                    "score": float(score),
                    "keypoints": rounded(ibug68_to_kaggle(points)),
                    "alternatives": {},
                }
            )
        return faces

    header = {
        "settings": {
            "detector": "dlib.get_frontal_face_detector (HOG + linear SVM)",
            "upsample": UPSAMPLE,
            "predictor": Path(model_path).name,
            "versions": {"dlib": dlib.__version__, "numpy": np.__version__},
        },
        "environment": environment_info(cpu),
        "init_seconds": init_seconds,
    }
    failures = run_photos("dlib", names, image_dir, decode, find_faces, header, args.output)
    log.info("dlib: wrote %s (%d photos, %d failed)", args.output, len(names), failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
