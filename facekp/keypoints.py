"""The 15 Kaggle facial keypoints, their left/right pairs and the iBUG 68-point mapping.

"Left" and "right" are the subject's, as in the Kaggle data: the subject's left eye
sits on the image's right. Keypoint arrays are ``(..., 15, 2)`` float arrays of
``x, y`` pixels, with NaN for a missing coordinate.
"""

from __future__ import annotations

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "left_eye_center",
    "right_eye_center",
    "left_eye_inner_corner",
    "left_eye_outer_corner",
    "right_eye_inner_corner",
    "right_eye_outer_corner",
    "left_eyebrow_inner_end",
    "left_eyebrow_outer_end",
    "right_eyebrow_inner_end",
    "right_eyebrow_outer_end",
    "nose_tip",
    "mouth_left_corner",
    "mouth_right_corner",
    "mouth_center_top_lip",
    "mouth_center_bottom_lip",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Kaggle's 30 coordinate columns in file order: x then y of each keypoint.
COORDINATE_COLUMNS: tuple[str, ...] = tuple(
    f"{name}_{axis}" for name in KEYPOINT_NAMES for axis in ("x", "y")
)

# The four keypoints that most rows of Kaggle's training.csv keep when the rest are missing.
CORE_KEYPOINTS: tuple[str, ...] = (
    "left_eye_center",
    "right_eye_center",
    "nose_tip",
    "mouth_center_bottom_lip",
)

FACE_SIZE = 96  # Kaggle faces are 96x96 grayscale.

# Pairs of keypoint indices that swap under a horizontal flip of the image.
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (KEYPOINT_NAMES.index(left), KEYPOINT_NAMES.index(left.replace("left", "right", 1)))
    for left in KEYPOINT_NAMES
    if left.startswith("left") or left.startswith("mouth_left")
)


def _flip_permutation() -> tuple[int, ...]:
    order = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        order[a], order[b] = b, a
    return tuple(order)


# FLIP_PERMUTATION[i] is the keypoint that index i takes its coordinates from after a flip.
FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation()

# iBUG 300-W 68-point indices behind each Kaggle keypoint. Point 36 is the outer corner
# of the eye on the image's left, which is the subject's right eye; an eye centre is the
# mean of that eye's six points.
IBUG68_TO_KAGGLE: dict[str, tuple[int, ...]] = {
    "left_eye_center": (42, 43, 44, 45, 46, 47),
    "right_eye_center": (36, 37, 38, 39, 40, 41),
    "left_eye_inner_corner": (42,),
    "left_eye_outer_corner": (45,),
    "right_eye_inner_corner": (39,),
    "right_eye_outer_corner": (36,),
    "left_eyebrow_inner_end": (22,),
    "left_eyebrow_outer_end": (26,),
    "right_eyebrow_inner_end": (21,),
    "right_eyebrow_outer_end": (17,),
    "nose_tip": (30,),
    "mouth_left_corner": (54,),
    "mouth_right_corner": (48,),
    "mouth_center_top_lip": (51,),
    "mouth_center_bottom_lip": (57,),
}


def ibug68_to_kaggle(points: np.ndarray) -> np.ndarray:
    """Map iBUG 68-point landmarks ``(..., 68, 2)`` to the 15 Kaggle keypoints ``(..., 15, 2)``."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"expected landmarks of shape (..., 68, 2), got {points.shape}")
    columns = [points[..., list(IBUG68_TO_KAGGLE[name]), :].mean(axis=-2) for name in KEYPOINT_NAMES]
    return np.stack(columns, axis=-2).astype(np.float32)


def flip_keypoints(keypoints: np.ndarray, width: float = FACE_SIZE) -> np.ndarray:
    """Mirror keypoints ``(..., 15, 2)`` across the vertical axis of an image ``width`` pixels wide.

    Pixel centres sit at integer coordinates, so ``x`` maps to ``width - 1 - x``, and each
    left/right pair swaps names so the subject's left eye stays the left eye.
    """
    flipped = np.array(keypoints, dtype=np.float32, copy=True)
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped[..., list(FLIP_PERMUTATION), :]


def normalize_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """Scale 96x96 pixel keypoints to -1..1 by ``(v - 48) / 48``, as the notebook model expects."""
    half = FACE_SIZE / 2
    return (np.asarray(keypoints, dtype=np.float32) - half) / half


def denormalize_keypoints(keypoints_norm: np.ndarray) -> np.ndarray:
    """Invert :func:`normalize_keypoints`."""
    half = FACE_SIZE / 2
    return np.asarray(keypoints_norm, dtype=np.float32) * half + half
