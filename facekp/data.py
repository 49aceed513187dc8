"""Keypoint data sets in Kaggle's ``training.csv`` format: load, validate, write, split."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facekp.keypoints import COORDINATE_COLUMNS, FACE_SIZE, NUM_KEYPOINTS

log = logging.getLogger(__name__)

IMAGE_COLUMN = "Image"
NUM_PIXELS = FACE_SIZE * FACE_SIZE


@dataclass
class KeypointSet:
    """Faces and their keypoints.

    ``images`` is ``(N, 96, 96)`` uint8; ``keypoints`` is ``(N, 15, 2)`` float32 pixels of the
    96x96 face with NaN where a coordinate is missing; ``names`` identifies each row (a file
    name for converted sets, the row number otherwise); ``groups`` names the person where known,
    for splits that keep a person's faces together.
    """

    images: np.ndarray
    keypoints: np.ndarray
    names: list[str] = field(default_factory=list)
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)


def load_training_csv(path: str | Path) -> KeypointSet:
    """Load a Kaggle-format ``training.csv``. Hardened validation lives here too."""
    frame = pd.read_csv(path)
    keypoints = frame[list(COORDINATE_COLUMNS)].to_numpy(np.float32).reshape(-1, NUM_KEYPOINTS, 2)
    images = np.stack(
        [np.array(s.split(), dtype=np.uint8).reshape(FACE_SIZE, FACE_SIZE) for s in frame[IMAGE_COLUMN]]
    )
    return KeypointSet(images=images, keypoints=keypoints, names=[str(i) for i in range(len(frame))])
