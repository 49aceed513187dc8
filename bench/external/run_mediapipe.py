"""Find the 15 Kaggle keypoints on ytf68 photos with MediaPipe FaceMesh (478 points with irises).

Runs in ``bench/.venvs/mediapipe`` (see ``setup.sh``)::

    bench/.venvs/mediapipe/bin/python bench/external/run_mediapipe.py \
        --output bench/out/external/mediapipe.json

FaceMesh (the legacy ``mediapipe.solutions`` API of mediapipe 0.10.21, whose wheel ships the
model files) runs its own BlazeFace detector, then the mesh model on each face. The mesh
indices below pick the points that match the iBUG 300-W definitions behind the ytf68 labels.
``bench/external/draw_mapping.py`` draws them on photos, so the choice can be checked by eye.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from common import (
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
os.environ.setdefault("GLOG_minloglevel", "2")  # keep MediaPipe's C++ info lines off stderr

import cv2  # noqa: E402
import mediapipe  # noqa: E402
import numpy as np  # noqa: E402
from mediapipe.python.solutions import face_mesh  # noqa: E402

MAX_FACES = 4
MIN_DETECTION_CONFIDENCE = 0.5  # FaceMesh's default

# Mesh indices averaged for each Kaggle keypoint, in facekp.keypoints.KEYPOINT_NAMES order.
# "Left" is the subject's left, on the image's right. An eye centre is the mean of six eye
# contour points placed like iBUG's 36-41 (corners plus two points on each lid), because the
# ytf68 eye centre is the mean of those six iBUG points. Brow ends are on the brow's upper edge,
# where iBUG 300-W places points 17-26; the lower-edge points go to the alternatives.
MESH_TO_KAGGLE: dict[str, tuple[int, ...]] = {
    "left_eye_center": (362, 385, 387, 263, 373, 380),
    "right_eye_center": (33, 160, 158, 133, 153, 144),
    "left_eye_inner_corner": (362,),
    "left_eye_outer_corner": (263,),
    "right_eye_inner_corner": (133,),
    "right_eye_outer_corner": (33,),
    "left_eyebrow_inner_end": (336,),
    "left_eyebrow_outer_end": (300,),
    "right_eyebrow_inner_end": (107,),
    "right_eyebrow_outer_end": (70,),
    "nose_tip": (1,),
    "mouth_left_corner": (291,),
    "mouth_right_corner": (61,),
    "mouth_center_top_lip": (0,),
    "mouth_center_bottom_lip": (17,),
}

# Other readings of some keypoints, reported per keypoint next to the main mapping:
# the iris centres (468 and 473 exist only with refine_landmarks) and the brow ends on the
# brow's lower edge.
ALTERNATIVES: dict[str, dict[str, tuple[int, ...]]] = {
    "iris_centre": {"left_eye_center": (473,), "right_eye_center": (468,)},
    "brow_lower_edge": {
        "left_eyebrow_inner_end": (285,),
        "left_eyebrow_outer_end": (276,),
        "right_eyebrow_inner_end": (55,),
        "right_eyebrow_outer_end": (46,),
    },
}


def decode(path: Path) -> np.ndarray:
    """Read a photo as an ``(H, W, 3)`` uint8 RGB array."""
    if not path.is_file():
        raise FileNotFoundError(f"photo {path} not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"OpenCV could not decode {path}: not an image, or a damaged file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def mesh_to_pixels(landmarks, width: int, height: int) -> np.ndarray:
    """Convert FaceMesh's normalised landmarks to ``(478, 2)`` pixel-centre coordinates.

    FaceMesh scales x by the image width and y by the height with 0 at the image's top-left
    edge, so half a pixel is subtracted to put pixel centres at integers.
    """
    # NOTE: a mirror test on 40 ytf68 photos put FaceMesh's x about 0.25 px right of the
    # pixel-centre position before this shift and about 0.25 px left after it.
    normalised = np.array([[point.x, point.y] for point in landmarks.landmark], dtype=np.float64)
    return normalised * [width, height] - 0.5


def pick_keypoints(mesh: np.ndarray, table: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {name: mesh[list(indices)].mean(axis=0) for name, indices in table.items()}


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    setup_logging()
    prepared = prepare_run(args)
    if prepared is None:
        return 2
    cpu, image_dir, names = prepared

    tick = time.perf_counter()
    mesh_model = face_mesh.FaceMesh(
        static_image_mode=True,
        max_num_faces=MAX_FACES,
        refine_landmarks=True,
        min_detection_confidence=MIN_DETECTION_CONFIDENCE,
    )
    init_seconds = time.perf_counter() - tick

    def find_faces(rgb: np.ndarray) -> list[dict]:
        height, width = rgb.shape[:2]
        result = mesh_model.process(rgb)
        faces = []
        for landmarks in result.multi_face_landmarks or []:
            mesh = mesh_to_pixels(landmarks, width, height)
            low, high = mesh.min(axis=0), mesh.max(axis=0)
            main_points = pick_keypoints(mesh, MESH_TO_KAGGLE)
            alternatives = {}
            for label, table in ALTERNATIVES.items():
                picked = pick_keypoints(mesh, table)
                alternatives[label] = {name: rounded([point])[0] for name, point in picked.items()}
            faces.append(
                {
                    # FaceMesh reports no box or score: the box is the mesh's bounding box.
                    "box": [float(v) for v in (low[0], low[1], *(high - low))],
                    "score": None,
                    "keypoints": rounded(main_points.values()),
                    "alternatives": alternatives,
                }
            )
        return faces

    header = {
        "settings": {
            "detector": "FaceMesh's BlazeFace short-range detector",
            "max_num_faces": MAX_FACES,
            "refine_landmarks": True,
            "min_detection_confidence": MIN_DETECTION_CONFIDENCE,
            "mesh_to_kaggle": MESH_TO_KAGGLE,
            "versions": {"mediapipe": mediapipe.__version__, "numpy": np.__version__},
        },
        "environment": environment_info(cpu),
        "init_seconds": init_seconds,
    }
    try:
        failures = run_photos(
            "mediapipe", names, image_dir, decode, find_faces, header, args.output
        )
    finally:
        mesh_model.close()
    log.info("mediapipe: wrote %s (%d photos, %d failed)", args.output, len(names), failures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
