"""Augmentations move real faces and their keypoints together."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facekp.keypoints import KEYPOINT_NAMES
from facekp.transforms import (
    Augmentation,
    adjust_brightness_contrast,
    affine_matrix,
    flip_face,
    warp_face,
)

LEFT_EYE = KEYPOINT_NAMES.index("left_eye_center")
RIGHT_EYE = KEYPOINT_NAMES.index("right_eye_center")
NOSE = KEYPOINT_NAMES.index("nose_tip")


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear gray values of ``image`` at ``points`` ``(K, 2)``, as float."""
    values = [cv2.getRectSubPix(image.astype(np.float32), (1, 1), tuple(map(float, p)))[0, 0]
              for p in points]
    return np.array(values, dtype=np.float64)


def _complete_faces(real_faces) -> list[int]:
    return [i for i in range(len(real_faces)) if not np.isnan(real_faces.keypoints[i]).any()][:8]


def test_flip_twice_is_identity(real_faces) -> None:
    face, keypoints = real_faces.images[0], real_faces.keypoints[0]

    twice_face, twice_keypoints = flip_face(*flip_face(face, keypoints))

    np.testing.assert_array_equal(twice_face, face)
    np.testing.assert_allclose(twice_keypoints, keypoints, atol=1e-5)


def test_flipped_left_eye_stays_on_image_right(real_faces) -> None:
    for index in _complete_faces(real_faces):
        face, keypoints = real_faces.images[index], real_faces.keypoints[index]
        assert keypoints[LEFT_EYE, 0] > keypoints[RIGHT_EYE, 0]

        flipped_face, flipped = flip_face(face, keypoints)

        assert flipped[LEFT_EYE, 0] > flipped[RIGHT_EYE, 0]
        # The new left eye is the mirror image of the old right eye.
        assert flipped[LEFT_EYE, 0] == pytest.approx(95 - keypoints[RIGHT_EYE, 0], abs=1e-4)
        assert flipped[LEFT_EYE, 1] == pytest.approx(keypoints[RIGHT_EYE, 1], abs=1e-4)
        assert flipped[NOSE, 0] == pytest.approx(95 - keypoints[NOSE, 0], abs=1e-4)


def test_flipped_keypoints_see_same_pixels(real_faces) -> None:
    for index in _complete_faces(real_faces):
        face, keypoints = real_faces.images[index], real_faces.keypoints[index]
        flipped_face, flipped = flip_face(face, keypoints)

        before = _sample(face, keypoints)
        after = _sample(flipped_face, flipped[[KEYPOINT_NAMES.index(n) for n in _flip_names()]])

        np.testing.assert_allclose(after, before, atol=1e-3)


def _flip_names() -> list[str]:
    """For each keypoint, the name it carries after a flip."""
    names = []
    for name in KEYPOINT_NAMES:
        if "left" in name:
            names.append(name.replace("left", "right"))
        elif "right" in name:
            names.append(name.replace("right", "left"))
        else:
            names.append(name)
    return names


@pytest.mark.parametrize("degrees", [20.0, -25.0])
def test_rotated_keypoints_follow_image(real_faces, degrees: float) -> None:
    errors, wrong_errors = [], []
    for index in _complete_faces(real_faces):
        face, keypoints = real_faces.images[index], real_faces.keypoints[index]
        # Sample a ring of points around each keypoint, where the face has texture.
        ring = np.array([[dx, dy] for dx in (-3, 0, 3) for dy in (-3, 0, 3)], np.float32)
        points = (keypoints[:, None, :] + ring[None]).reshape(-1, 2)

        matrix = affine_matrix(degrees, 1.05, 2.0, -1.5)
        warped_face, moved = warp_face(face, points, matrix)
        wrong_matrix = affine_matrix(-degrees, 1.05, 2.0, -1.5)
        _, wrong = warp_face(face, points, wrong_matrix)

        before = _sample(face, points)
        errors.append(np.abs(_sample(warped_face, moved) - before).mean())
        wrong_errors.append(np.abs(_sample(warped_face, wrong) - before).mean())

    assert np.mean(errors) < 6.0
    assert np.mean(errors) < 0.5 * np.mean(wrong_errors)


def test_warp_keeps_missing_keypoints_missing(real_faces) -> None:
    keypoints = real_faces.keypoints[0].copy()
    keypoints[3] = np.nan

    _, moved = warp_face(real_faces.images[0], keypoints, affine_matrix(10, 1.0, 0, 0))

    assert np.isnan(moved[3]).all()
    assert np.isfinite(np.delete(moved, 3, axis=0)).all()


def test_brightness_contrast_stays_in_range(real_faces) -> None:
    face = real_faces.images[0].astype(np.float32) / 255

    brighter = adjust_brightness_contrast(face.copy(), brightness=0.3, contrast=1.5)

    assert brighter.min() >= 0.0
    assert brighter.max() <= 1.0
    assert brighter.mean() > face.mean()


def test_augmentation_output_and_determinism(real_faces) -> None:
    augmentation = Augmentation()
    face, keypoints = real_faces.images[0], real_faces.keypoints[0]

    first = augmentation.apply(face, keypoints, np.random.default_rng(7))
    second = augmentation.apply(face, keypoints, np.random.default_rng(7))

    assert first[0].dtype == np.float32
    assert first[0].shape == (96, 96)
    assert first[0].min() >= 0.0
    assert first[0].max() <= 1.0
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.allclose(first[1], keypoints)
