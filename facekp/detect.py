"""Face detectors: every face in a grayscale image as a box with a score.

Boxes are ``(x, y, w, h)`` in OpenCV's integer-pixel convention: the box covers columns
``x .. x + w - 1`` and rows ``y .. y + h - 1``, so its edges are at ``x`` and ``x + w`` when
pixel ``i`` spans ``[i, i + 1)``. :func:`facekp.crop.crop_face` reads boxes the same way.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facekp.errors import ImageError

log = logging.getLogger(__name__)

# Images whose longest side exceeds this many pixels are searched on a copy downscaled to
# it, so faces narrower than 10% of a photo's longest side (the 24 px minimum window) are
# not found. In bench/detector_sweep.py (one core of a shared AMD EPYC) the search of a
# 640x480 photo took 16 ms of CPU time this way, 26 ms at 320 px and 81 ms at full size,
# and found as many labelled ytf68 faces. Most ytf68 photos are smaller than 240 px.
MAX_DETECTION_SIDE = 240

# A Haar box other than the best one of a photo needs at least this score (neighbouring raw
# detections) to count as a face, because the cascade's false boxes are backed by few windows.
# It was measured with default_detector and the overlap rule of facekp.predict on the 770
# ytf68 test photos, which have one labelled face each. Labelled faces scored 5 to 150. Of
# the 29 other boxes, 19 scored 4 to 7, and most of those were ties, necks and clothing,
# with a few small or blurred real faces. The only labelled face that was not its photo's
# best scored 8, so all 766 found labelled faces are kept. On the 3462 training photos the
# rule would drop 6 of the 3444 found labelled faces, so conversion, which has the labels,
# does not apply it.
MIN_EXTRA_FACE_SCORE = 8.0


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
    (``detectMultiScale2``), so a box backed by more windows scores higher. ``min_size`` is
    the smallest face side searched, in pixels of the image passed to :meth:`detect`.
    ``min_extra_score`` is the score that faces other than a photo's best one need in
    :func:`drop_weak_extra_faces`; :meth:`detect` itself returns every box.
    """

    def __init__(
        self,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int = 24,
        min_extra_score: float = MIN_EXTRA_FACE_SCORE,
    ) -> None:
        path = Path(cv2.data.haarcascades) / cascade
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FileNotFoundError(f"Haar cascade file {path} could not be loaded")
        # NOTE: one classifier object is not documented as safe for concurrent calls, and a
        # cached detector is shared by every thread of a web app, so calls are serialised.
        self._lock = threading.Lock()
        self.name = f"haar:{cascade}"
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.min_extra_score = min_extra_score

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """Find faces in a ``(H, W)`` uint8 image; return them best first (most neighbours)."""
        with self._lock:
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


@functools.lru_cache(maxsize=1)
def default_detector() -> HaarFaceDetector:
    """Return the shared detector that conversion and the photo pipeline both use.

    Converted training faces are framed from this detector's boxes, so photos must use it
    too. In ``bench/detector_sweep.py`` these settings found 766 of the 770 labelled ytf68
    test faces, in about 16 ms of CPU time per 640x480 photo through :func:`find_faces`.
    """
    return HaarFaceDetector(
        cascade="haarcascade_frontalface_default.xml",
        scale_factor=1.1,
        min_neighbors=3,
        min_size=24,
        min_extra_score=MIN_EXTRA_FACE_SCORE,
    )


def find_faces(
    gray: np.ndarray,
    detector: FaceDetector | None = None,
    max_side: int = MAX_DETECTION_SIDE,
) -> list[Detection]:
    """Find faces in a ``(H, W)`` uint8 grayscale photo, best first, boxes in its own pixels.

    A photo whose longest side exceeds ``max_side`` is searched on an area-averaged copy
    scaled down to ``max_side``, and the boxes are scaled back to full resolution (then no
    longer whole numbers). ``detector`` defaults to :func:`default_detector`.
    """
    _check_gray(gray)
    detector = detector or default_detector()

    height, width = gray.shape
    if max(height, width) <= max_side:
        return detector.detect(gray)

    factor = max_side / max(height, width)
    small_w, small_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(gray, (small_w, small_h), interpolation=cv2.INTER_AREA)
    log.debug("searching a %dx%d photo at %dx%d", width, height, small_w, small_h)

    # INTER_AREA maps pixel edges linearly (edge u = sx * edge x), and boxes are given by
    # their edges, so scaling each box coordinate by the inverse factor is exact.
    sx, sy = small_w / width, small_h / height
    return [
        Detection(box=(x / sx, y / sy, w / sx, h / sy), score=found.score)
        for found in detector.detect(small)
        for x, y, w, h in [found.box]
    ]


def drop_weak_extra_faces(detections: list[Detection], min_score: float) -> list[Detection]:
    """Keep the best detection and every other one that scores at least ``min_score``.

    Returns the kept detections best first. The best one is kept whatever its score, so a
    photo with one faint face still gives that face.
    """
    ranked = sorted(detections, key=lambda d: d.score, reverse=True)
    return ranked[:1] + [detection for detection in ranked[1:] if detection.score >= min_score]


def _check_gray(gray: np.ndarray) -> None:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
        shape = getattr(gray, "shape", None)
        dtype = getattr(gray, "dtype", type(gray).__name__)
        raise ImageError(
            f"face detection needs a (height, width) uint8 grayscale image, got shape {shape} "
            f"of {dtype}; convert colour photos with cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)"
        )
    if min(gray.shape) < 1:
        raise ImageError(f"the image is empty ({gray.shape[1]}x{gray.shape[0]} pixels)")
