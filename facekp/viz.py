"""Drawings as RGB uint8 arrays: keypoints, face boxes and Grad-CAM overlays.

Every function takes a gray ``(H, W)`` or RGB ``(H, W, 3)`` uint8 image, leaves it
unchanged and returns a new ``(H', W', 3)`` uint8 RGB array. Keypoints are ``(15, 2)`` (or
``(..., 15, 2)``) ``x, y`` pixels with pixel centres at integers; NaN points are skipped.
Colours follow the original notebook: labels (true keypoints) red, predictions blue.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facekp.keypoints import NUM_KEYPOINTS
from facekp.predict import PhotoResult

TRUE_COLOR = (255, 0, 0)
PREDICTED_COLOR = (0, 0, 255)
BOX_COLOR = (0, 200, 0)

# cv2 drawing functions take fixed-point coordinates with this many fractional bits, so
# markers land on sub-pixel positions.
_SHIFT = 4


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Return an RGB copy ``(H, W, 3)`` uint8 of a gray or RGB uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise ValueError(f"expected an image of shape (H, W) or (H, W, 3), got {image.shape}")


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an image by an integer ``factor`` with bilinear interpolation, as RGB.

    Use it before drawing on a 96x96 face, so markers and labels stay legible; scale the
    keypoints with :func:`enlarge_points`.
    """
    rgb = to_rgb(image)
    if factor == 1:
        return rgb
    height, width = rgb.shape[:2]
    return cv2.resize(rgb, (width * factor, height * factor), interpolation=cv2.INTER_LINEAR)


def enlarge_points(points: np.ndarray, factor: int) -> np.ndarray:
    """Map points from an image to the same image enlarged ``factor`` times.

    With pixel centres at integers, ``x`` becomes ``(x + 0.5) * factor - 0.5``.
    """
    return (np.asarray(points, dtype=np.float32) + 0.5) * factor - 0.5


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    color: tuple[int, int, int] = PREDICTED_COLOR,
    labels: bool = False,
    radius: float | None = None,
) -> np.ndarray:
    """Draw keypoints ``(..., 15, 2)`` as filled dots, optionally labelled with their index.

    ``radius`` is in pixels; by default it grows with the image (1 px at 96x96).
    """
    canvas = to_rgb(image)
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    radius = radius if radius is not None else _default_radius(canvas)
    scale = 1 << _SHIFT
    for index, (x, y) in enumerate(points):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre = (int(round(x * scale)), int(round(y * scale)))
        cv2.circle(canvas, centre, int(round(radius * scale)), color, -1, cv2.LINE_AA, _SHIFT)
        if labels:
            keypoint = index % NUM_KEYPOINTS
            position = (int(round(x + radius + 1)), int(round(y - radius - 1)))
            _put_text(canvas, str(keypoint), position, color)
    return canvas


def draw_comparison(
    image: np.ndarray, true_keypoints: np.ndarray, predicted: np.ndarray
) -> np.ndarray:
    """Draw labelled keypoints in red and predicted ones in blue on one image."""
    canvas = draw_keypoints(image, true_keypoints, TRUE_COLOR)
    return draw_keypoints(canvas, predicted, PREDICTED_COLOR)


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    color: tuple[int, int, int] = BOX_COLOR,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw ``(x, y, w, h)`` boxes (edges at ``x`` and ``x + w``), with optional text labels."""
    canvas = to_rgb(image)
    thickness = max(1, int(round(_default_radius(canvas) / 2)))
    scale = 1 << _SHIFT
    for index, (x, y, w, h) in enumerate(boxes):
        # The box's edge lines run through the centres of its outermost pixels.
        top_left = (int(round(x * scale)), int(round(y * scale)))
        bottom_right = (int(round((x + w - 1) * scale)), int(round((y + h - 1) * scale)))
        cv2.rectangle(canvas, top_left, bottom_right, color, thickness, cv2.LINE_AA, _SHIFT)
        if labels is not None:
            _put_text(canvas, labels[index], (int(x), max(int(y) - 4, 10)), color)
    return canvas


def draw_photo_result(image: np.ndarray, result: PhotoResult, labels: bool = False) -> np.ndarray:
    """Draw every face of a :class:`facekp.predict.PhotoResult`: box, index and keypoints.

    ``image`` is the upright photo the result came from (``facekp.imageio.read_rgb``). A
    failed result has no faces, so the photo comes back unchanged.
    """
    canvas = to_rgb(image)
    if result.width is not None and canvas.shape[:2] != (result.height, result.width):
        raise ValueError(
            f"the image is {canvas.shape[1]}x{canvas.shape[0]} but the result is for a "
            f"{result.width}x{result.height} photo; draw on the photo the result came from"
        )
    boxes = [face.box for face in result.faces]
    canvas = draw_boxes(canvas, boxes, labels=[str(i) for i in range(len(boxes))])
    for face in result.faces:
        # Dots scale with the face, about 1.5 px on a 96 px face.
        radius = max(1.0, face.box[2] / 64.0)
        canvas = draw_keypoints(canvas, face.keypoints, PREDICTED_COLOR, labels, radius)
    return canvas


def colorize_heatmap(heatmap: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Turn a ``(H, W)`` map in 0..1 into RGB ``(H, W, 3)`` with an OpenCV colormap."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"expected a (H, W) heatmap, got shape {heatmap.shape}")
    levels = np.rint(np.clip(np.nan_to_num(heatmap), 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.5,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """Blend a colorized 0..1 heatmap over an image: ``alpha`` heatmap, ``1 - alpha`` image.

    The heatmap is resized bilinearly to the image if their sizes differ.
    """
    canvas = to_rgb(image)
    height, width = canvas.shape[:2]
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != (height, width):
        heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    colored = colorize_heatmap(heatmap, colormap)
    return cv2.addWeighted(colored, alpha, canvas, 1.0 - alpha, 0.0)


def _default_radius(canvas: np.ndarray) -> float:
    return max(1.0, max(canvas.shape[:2]) / 96.0)


def _put_text(
    canvas: np.ndarray, text: str, origin: tuple[int, int], color: tuple[int, int, int]
) -> None:
    font_scale = max(0.3, max(canvas.shape[:2]) / 800.0)
    thickness = max(1, int(round(font_scale * 1.5)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, text, origin, font, font_scale, color, thickness, cv2.LINE_AA)
