"""Face crops of real photos: the affine map between photo and crop matches the pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facekp.crop import DEFAULT_FRAMING, Framing, crop_face, crop_square
from facekp.detect import find_faces

PHOTOS = ("Abdel_Aziz_Al-Hakim_01.jpg", "James_Wolfensohn_00.jpg")


@pytest.fixture(scope="module")
def photo(ytf68: Path) -> np.ndarray:
    gray = cv2.imread(str(ytf68 / "test" / PHOTOS[0]), cv2.IMREAD_GRAYSCALE)
    assert gray is not None
    return gray


@pytest.fixture(scope="module")
def face_box(photo: np.ndarray) -> tuple[float, float, float, float]:
    detections = find_faces(photo)
    assert detections, "the test photo should contain a detectable face"
    return detections[0].box


def spot_centroid(image: np.ndarray, box, point, framing: Framing, sigma: float) -> tuple:
    """Crop ``image`` with and without a Gaussian spot at ``point``; return the spot's
    centroid in the crop and where the crop's affine map puts ``point``."""
    base = (image // 2).astype(np.float64)
    rows, columns = np.mgrid[: image.shape[0], : image.shape[1]]
    spot = 120 * np.exp(-((columns - point[0]) ** 2 + (rows - point[1]) ** 2) / (2 * sigma**2))
    with_spot = np.clip(np.rint(base + spot), 0, 255).astype(np.uint8)

    plain_crop, face_crop = crop_face(base.astype(np.uint8), box, framing)
    spot_crop, _ = crop_face(with_spot, box, framing)
    difference = spot_crop.astype(np.float64) - plain_crop.astype(np.float64)
    crop_rows, crop_columns = np.mgrid[:96, :96]
    total = difference.sum()
    centroid = ((difference * crop_columns).sum() / total, (difference * crop_rows).sum() / total)
    return np.array(centroid), face_crop.to_crop(np.array(point))


@pytest.mark.parametrize("upscale", [1, 3, 8])
def test_crop_pixels_match_affine_map(photo: np.ndarray, face_box, upscale: int) -> None:
    image = cv2.resize(photo, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    box = tuple(v * upscale for v in face_box)
    left, top, side = crop_square(box, DEFAULT_FRAMING)
    point = (left + 0.37 * side, top + 0.61 * side)

    centroid, expected = spot_centroid(image, box, point, DEFAULT_FRAMING, sigma=side / 40)

    np.testing.assert_allclose(centroid, expected, atol=0.1)


def test_crop_pixels_match_partly_outside(photo: np.ndarray, face_box) -> None:
    x, y, w, h = face_box
    box = (-0.4 * w, -0.3 * h, w, h)
    left, top, side = crop_square(box, DEFAULT_FRAMING)
    point = (left + 0.7 * side, top + 0.75 * side)
    assert left < 0
    assert top < 0

    centroid, expected = spot_centroid(photo, box, point, DEFAULT_FRAMING, sigma=side / 40)

    np.testing.assert_allclose(centroid, expected, atol=0.1)


def test_crop_outside_photo_is_black(photo: np.ndarray, face_box) -> None:
    x, y, w, h = face_box
    box = (-0.5 * w, y, w, h)

    crop, face_crop = crop_face(photo, box)

    photo_left_edge = face_crop.to_crop(np.array([-0.5, 0.0]))[0]
    outside_columns = int(np.floor(photo_left_edge - 1))
    assert outside_columns > 10
    assert (crop[:, :outside_columns] == 0).all()
    assert crop[:, outside_columns + 3 :].mean() > 20


@pytest.mark.parametrize("upscale", [1, 25])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-0.6, -0.2), (0.7, 0.5)])
def test_crop_round_trip(photo: np.ndarray, face_box, upscale: int, shift) -> None:
    x, y, w, h = (v * upscale for v in face_box)
    box = (x + shift[0] * w, y + shift[1] * h, w, h)
    image = cv2.resize(photo, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_NEAREST)
    rng = np.random.default_rng(0)
    points_photo = rng.uniform([x - w, y - h], [x + 2 * w, y + 2 * h], size=(50, 2))

    crop, face_crop = crop_face(image, box)

    assert crop.shape == (96, 96)
    assert crop.dtype == np.uint8
    round_trip = face_crop.to_photo(face_crop.to_crop(points_photo))
    np.testing.assert_allclose(round_trip, points_photo, atol=1e-3)


def test_crop_corners_map_to_square(face_box) -> None:
    left, top, side = crop_square(face_box, DEFAULT_FRAMING)
    _, face_crop = crop_face(np.zeros((300, 300), np.uint8), face_box)

    # Crop pixel edges -0.5 and 95.5 are the square's edges; photo pixel centres are 0.5
    # inside photo edges, so the square's edge coordinate "left" is at photo x = left - 0.5.
    corners = face_crop.to_photo(np.array([[-0.5, -0.5], [95.5, 95.5]]))

    np.testing.assert_allclose(corners[0], [left - 0.5, top - 0.5], atol=1e-3)
    np.testing.assert_allclose(corners[1], [left + side - 0.5, top + side - 0.5], atol=1e-3)


def test_crop_keeps_nan(face_box) -> None:
    _, face_crop = crop_face(np.zeros((300, 300), np.uint8), face_box)

    mapped = face_crop.to_crop(np.array([[np.nan, np.nan], [10.0, 20.0]]))

    assert np.isnan(mapped[0]).all()
    assert np.isfinite(mapped[1]).all()


def test_crop_colour_photo(ytf68: Path, face_box) -> None:
    colour = cv2.imread(str(ytf68 / "test" / PHOTOS[0]), cv2.IMREAD_COLOR)

    crop, _ = crop_face(colour, face_box)

    assert crop.shape == (96, 96, 3)


def test_crop_rejects_empty_box(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="cannot crop"):
        crop_face(photo, (10.0, 10.0, 0.0, 0.0))
