"""Face detection on real photos, including photos far larger than the detector searches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facekp.convert import match_detection
from facekp.detect import (
    MAX_DETECTION_SIDE,
    MIN_EXTRA_FACE_SCORE,
    HaarFaceDetector,
    default_detector,
    drop_weak_extra_faces,
    find_faces,
)
from facekp.errors import ImageError
from facekp.landmarks import read_landmark_csv


@pytest.fixture(scope="module")
def labelled_photo(ytf68: Path) -> tuple[np.ndarray, np.ndarray]:
    """A ytf68 test photo in grayscale and its 68 landmarks ``(68, 2)`` in photo pixels."""
    landmarks = read_landmark_csv(ytf68 / "test_frames_keypoints.csv")
    index = landmarks.names.index("Abdel_Aziz_Al-Hakim_01.jpg")
    gray = cv2.imread(str(ytf68 / "test" / landmarks.names[index]), cv2.IMREAD_GRAYSCALE)
    return gray, landmarks.points[index]


def test_find_faces_labelled_face(labelled_photo) -> None:
    gray, points = labelled_photo

    detections = find_faces(gray)

    match = match_detection(detections, points)
    assert match is not None
    x, y, w, h = match.box
    # Haar boxes are square; scaling back from a downscaled search rounds each axis apart.
    assert w == pytest.approx(h, rel=0.01)
    assert w > np.ptp(points[:, 0]) * 0.8
    assert match.score >= 3


def test_find_faces_on_12_megapixel_photo(labelled_photo) -> None:
    gray, points = labelled_photo
    factor = 4000 / gray.shape[1]
    large = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    # Landmarks are pixel centres, whose edge coordinates scale by the factor.
    large_points = (points + 0.5) * factor - 0.5
    assert large.shape[0] * large.shape[1] > 11e6

    small_match = match_detection(find_faces(gray), points)
    large_match = match_detection(find_faces(large), large_points)

    assert large_match is not None
    expected = np.array(small_match.box) * factor
    found = np.array(large_match.box)
    # Detector boxes move in steps of the detection window, so allow 5% of the face width.
    assert np.abs(found - expected).max() < 0.05 * expected[2]


def test_find_faces_small_photo_unscaled(labelled_photo) -> None:
    gray, _ = labelled_photo
    assert max(gray.shape) > MAX_DETECTION_SIDE

    boxes = [d.box for d in find_faces(gray, max_side=max(gray.shape))]

    assert boxes == [d.box for d in default_detector().detect(gray)]
    assert all(float(v).is_integer() for box in boxes for v in box)


def test_find_faces_max_side_maps_boxes(labelled_photo) -> None:
    gray, points = labelled_photo
    double = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    side = max(gray.shape)

    reduced = match_detection(find_faces(double, max_side=side), (points + 0.5) * 2 - 0.5)
    direct = match_detection(find_faces(gray, max_side=side), points)

    assert reduced is not None
    np.testing.assert_allclose(reduced.box, np.array(direct.box) * 2, atol=2.0)


def test_find_faces_without_face() -> None:
    rng = np.random.default_rng(1)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (240, 320), dtype=np.uint8), (0, 0), 8)

    assert find_faces(smooth) == []
    assert find_faces(np.full((50, 50), 200, np.uint8)) == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64, 3), np.uint8),
        np.zeros((64, 64), np.float32),
        np.zeros((0, 64), np.uint8),
        [[0, 1], [2, 3]],
    ],
    ids=["colour", "float", "empty", "list"],
)
def test_find_faces_rejects_bad_image(image) -> None:
    with pytest.raises(ImageError):
        find_faces(image)


def test_default_detector_is_cached() -> None:
    assert default_detector() is default_detector()


def test_detector_missing_cascade() -> None:
    with pytest.raises(FileNotFoundError, match="could not be loaded"):
        HaarFaceDetector(cascade="no_such_cascade.xml")


def test_drop_weak_extra_faces(ytf68: Path) -> None:
    """Keep each photo's best face and other faces with enough score, on real ytf68 photos."""
    landmarks = read_landmark_csv(ytf68 / "test_frames_keypoints.csv")
    cases = {
        # name: (all boxes' scores, kept boxes' scores)
        "Hanan_Ashrawi_20.jpg": ([97.0, 4.0], [97.0]),
        "Mark_Leno_31.jpg": ([10.0, 8.0], [10.0, 8.0]),
        "Queen_Rania_30.jpg": ([6.0], [6.0]),
    }
    for name, (all_scores, kept_scores) in cases.items():
        gray = cv2.imread(str(ytf68 / "test" / name), cv2.IMREAD_GRAYSCALE)
        detections = find_faces(gray)

        kept = drop_weak_extra_faces(list(reversed(detections)), MIN_EXTRA_FACE_SCORE)

        assert [d.score for d in detections] == all_scores, name
        assert [d.score for d in kept] == kept_scores, name
        points = landmarks.points[landmarks.names.index(name)]
        assert match_detection(kept, points) is match_detection(detections, points), name


def test_drop_weak_extra_faces_empty() -> None:
    assert drop_weak_extra_faces([], MIN_EXTRA_FACE_SCORE) == []
