"""Augmentations that move a face and its keypoints together.

Faces are ``(96, 96)`` arrays, keypoints ``(15, 2)`` float32 pixels of the face with NaN
for a missing coordinate. Pixel centres sit at integer coordinates (OpenCV's convention),
so the image centre is at ``(47.5, 47.5)`` and a horizontal flip maps ``x`` to ``95 - x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facekp.keypoints import FACE_SIZE, flip_keypoints

CENTRE = (FACE_SIZE - 1) / 2


def flip_face(face: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror a face left to right and its keypoints with it.

    Every left/right keypoint pair swaps names, so the subject's left eye is still called
    the left eye and still sits on the image's right. Nose tip and lip centres keep their
    names.
    """
    return np.ascontiguousarray(face[:, ::-1]), flip_keypoints(keypoints, width=face.shape[1])


def affine_matrix(
    rotation_degrees: float, scale: float, shift_x: float, shift_y: float
) -> np.ndarray:
    """Return the 2x3 matrix that rotates and scales about the face centre, then shifts.

    Positive ``rotation_degrees`` turn the picture counter-clockwise as seen on screen
    (OpenCV's convention for ``getRotationMatrix2D``); shifts are in pixels.
    """
    matrix = cv2.getRotationMatrix2D((CENTRE, CENTRE), rotation_degrees, scale)
    matrix[0, 2] += shift_x
    matrix[1, 2] += shift_y
    return matrix


def warp_face(
    face: np.ndarray, keypoints: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a 2x3 affine ``matrix`` to a face and its keypoints.

    Areas that come from outside the face are filled by mirroring its border, which looks
    more like a face crop than black corners. Keypoints may land outside the image; they
    stay labelled, because the loss is defined for any position. NaN stays NaN.
    """
    warped = cv2.warpAffine(
        face,
        matrix,
        (face.shape[1], face.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    moved = keypoints.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return warped, moved.astype(np.float32)


def adjust_brightness_contrast(face: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Scale gray values of a 0..1 float face about its mean by ``contrast``, add ``brightness``.

    The result is clipped to 0..1.
    """
    mean = float(face.mean())
    adjusted = (face - mean) * float(contrast) + (mean + float(brightness))
    return np.clip(adjusted, 0.0, 1.0, out=adjusted)


@dataclass(frozen=True)
class Augmentation:
    """Ranges for random training augmentation; each face draws its own values.

    ``rotation_degrees``, ``scale`` and ``shift`` bound a uniform draw in
    ``[-value, value]`` (``scale`` as a relative change, ``shift`` in pixels), ``brightness``
    is an offset in 0..1 gray units and ``contrast`` a relative factor change.
    """

    flip_probability: float = 0.5
    rotation_degrees: float = 15.0
    scale: float = 0.08
    shift: float = 4.0
    brightness: float = 0.15
    contrast: float = 0.3

    def apply(
        self, face: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one uint8 face ``(96, 96)``; returns a float32 face in 0..1 and its keypoints."""
        values = rng.uniform(-1.0, 1.0, size=6)
        if rng.random() < self.flip_probability:
            face, keypoints = flip_face(face, keypoints)

        matrix = affine_matrix(
            rotation_degrees=self.rotation_degrees * values[0],
            scale=1.0 + self.scale * values[1],
            shift_x=self.shift * values[2],
            shift_y=self.shift * values[3],
        )
        face, keypoints = warp_face(face, keypoints, matrix)

        face = face.astype(np.float32) / 255.0
        face = adjust_brightness_contrast(
            face,
            brightness=float(self.brightness * values[4]),
            contrast=float(1.0 + self.contrast * values[5]),
        )
        return face, keypoints


NO_AUGMENTATION = Augmentation(
    flip_probability=0.0, rotation_degrees=0.0, scale=0.0, shift=0.0, brightness=0.0, contrast=0.0
)
