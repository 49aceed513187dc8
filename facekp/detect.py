"""Face detectors: every face in a grayscale image as a box with a score."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` is ``(x, y, w, h)`` in pixels of the image searched, ``score`` higher is surer."""

    box: tuple[float, float, float, float]
    score: float


class FaceDetector(Protocol):
    """Anything that finds faces in a ``(H, W)`` uint8 grayscale image, best first."""

    name: str

    def detect(self, gray: np.ndarray) -> list[Detection]: ...


class HaarFaceDetector:
    """OpenCV's Viola-Jones cascade detector, with the cascade files that opencv-python ships.

    The score is the number of neighbouring raw detections merged into the box
    (``detectMultiScale2``), so a box backed by more windows scores higher.
    """

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int = 24,
    ) -> None:
        path = Path(cv2.data.haarcascades) / cascade
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FileNotFoundError(f"Haar cascade file {path} could not be loaded")
        self.name = f"haar:{cascade}"
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, gray: np.ndarray) -> list[Detection]:
        boxes, neighbours = self._classifier.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        found = [
            Detection(box=tuple(float(v) for v in box), score=float(n))
            for box, n in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(neighbours).reshape(-1))
        ]
        return sorted(found, key=lambda d: d.score, reverse=True)
