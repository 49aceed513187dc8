"""Square face crops resized to 96x96, with the exact affine mapping back to the photo.

Coordinates use the pixel-centre convention: pixel ``(i, j)`` covers ``[i - 0.5, i + 0.5)``
and its centre is at integer ``i``. Kaggle keypoints and OpenCV's ``warpAffine`` use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facekp.keypoints import FACE_SIZE


@dataclass(frozen=True)
class Framing:
    """Placement of the square crop relative to a detector box ``(x, y, w, h)``.

    The crop's side is ``scale * w`` and its centre is the box centre moved by
    ``shift_x * w`` to the right and ``shift_y * w`` down.
    """

    scale: float = 0.99
    shift_x: float = 0.0
    shift_y: float = 0.01


# The framing of every converted training face and of every photo the model sees. It was
# fitted with facekp.convert.fit_framing on the ytf68 training faces so that on average the
# outer eye corners are 50 px apart, the eye centres 38 px from the top, and their midpoint
# on the centre column x = 47.5, as in Kaggle's faces.
# NOTE: the fit holds for the boxes of facekp.detect.find_faces with default_detector().
# Another detector or search size frames faces differently and needs its own fit.
DEFAULT_FRAMING = Framing(scale=0.9457, shift_x=0.0148, shift_y=0.0056)


@dataclass(frozen=True)
class FaceCrop:
    """A 2x3 affine ``matrix`` that maps photo pixels to crop pixels, and its inverse."""

    matrix: np.ndarray

    @property
    def inverse(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points_photo: np.ndarray) -> np.ndarray:
        """Map points ``(..., 2)`` from photo pixels to crop pixels. NaN stays NaN."""
        return _apply_affine(self.matrix, points_photo)

    def to_photo(self, points_crop: np.ndarray) -> np.ndarray:
        """Map points ``(..., 2)`` from crop pixels back to photo pixels. NaN stays NaN."""
        return _apply_affine(self.inverse, points_crop)


def _apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    return mapped.astype(np.float32)


def crop_square(
    box: tuple[float, float, float, float], framing: Framing
) -> tuple[float, float, float]:
    """Return the crop square ``(left, top, side)`` in photo pixels for a detector box.

    ``box`` and the square are in edge coordinates (pixel ``i`` spans ``[i, i + 1)``), as
    OpenCV's detector boxes are, so the box centre is ``x + w / 2``.
    """
    x, y, w, h = box
    side = framing.scale * w
    centre_x = x + w / 2 + framing.shift_x * w
    centre_y = y + h / 2 + framing.shift_y * w
    return centre_x - side / 2, centre_y - side / 2, side


def crop_face(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    framing: Framing = DEFAULT_FRAMING,
    size: int = FACE_SIZE,
) -> tuple[np.ndarray, FaceCrop]:
    """Cut the framed square around ``box`` out of ``image`` and resize it to ``size`` x ``size``.

    ``image`` is ``(H, W)`` or ``(H, W, C)`` uint8. Parts of the square outside the photo
    are filled with black. Large reductions first shrink the region with area averaging,
    so the crop is not aliased; the returned :class:`FaceCrop` accounts for every step.
    """
    left, top, side = crop_square(box, framing)
    if not np.isfinite([left, top, side]).all() or side <= 0:
        raise ValueError(f"cannot crop: box {box} with {framing} gives a square of side {side}")
    height, width = image.shape[:2]

    # Step 1: the integer region that covers the square, padded where it leaves the photo.
    x0, y0 = int(np.floor(left)), int(np.floor(top))
    x1, y1 = int(np.ceil(left + side)) + 1, int(np.ceil(top + side)) + 1
    region = image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pad = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if region.size == 0:
        region = np.zeros((y1 - y0, x1 - x0) + image.shape[2:], dtype=image.dtype)
    elif any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_CONSTANT, value=0)
    to_region = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])

    # Step 2: area-average large reductions down to about twice the output size.
    scale = size / side
    to_small = np.eye(3)
    if scale < 0.5:
        small_w = max(1, round(region.shape[1] * scale * 2))
        small_h = max(1, round(region.shape[0] * scale * 2))
        sx, sy = small_w / region.shape[1], small_h / region.shape[0]
        region = cv2.resize(region, (small_w, small_h), interpolation=cv2.INTER_AREA)
        # INTER_AREA maps pixel edges to pixel edges: u + 0.5 = s * (x + 0.5).
        to_small = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])

    # Step 3: the exact remaining similarity transform onto the output grid.
    photo_to_crop = np.array(
        [[scale, 0.0, scale * (0.5 - left) - 0.5], [0.0, scale, scale * (0.5 - top) - 0.5]]
    )
    region_to_photo = np.linalg.inv(np.vstack([to_region, [0.0, 0.0, 1.0]]))
    small_to_region = np.linalg.inv(to_small)
    small_to_crop = photo_to_crop @ region_to_photo @ small_to_region
    crop = cv2.warpAffine(
        region, small_to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return crop, FaceCrop(matrix=photo_to_crop)
