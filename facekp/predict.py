"""Keypoints for every face in a photo: decode, detect, crop, predict, map back.

Coordinates in a :class:`FaceResult` are pixels of the upright photo (after its EXIF
orientation), with pixel centres at integers. Boxes are ``(x, y, w, h)`` with edges at
``x`` and ``x + w``, as the detector returns them.

Photos that are already a face crop. A Kaggle image is a 96x96 face with hardly any
background. The detector then finds nothing, or a box that fills most of the image and is
framed tighter than the crop (about 83 px on the 96x96 crops this package makes), so
cropping around it would enlarge the face. A photo counts as a face crop when both sides
are at most :data:`WHOLE_IMAGE_MAX_SIDE` pixels, its aspect ratio is at most
:data:`WHOLE_IMAGE_MAX_ASPECT`, and the detector finds no face or its best box is at least
:data:`WHOLE_IMAGE_MIN_FILL` of the shorter side. The whole photo is then resized to 96x96
as the face, with ``found_by == "whole image"`` and no score. ``whole_image=True`` forces
this for any photo and ``whole_image=False`` turns it off.

Faces come best first (highest detector score); of two detections that overlap by more
than :data:`MAX_BOX_OVERLAP` intersection over union, only the better one is kept. A
detector with a ``min_extra_score`` attribute (the Haar detector has one) also loses every
face but the best that scores below it, as :func:`facekp.detect.drop_weak_extra_faces` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from facekp.crop import DEFAULT_FRAMING, FaceCrop, Framing, crop_face
from facekp.detect import (
    MAX_DETECTION_SIDE,
    Detection,
    FaceDetector,
    default_detector,
    drop_weak_extra_faces,
    find_faces,
)
from facekp.errors import FacekpError
from facekp.imageio import ImageSource, read_gray, source_name
from facekp.keypoints import KEYPOINT_NAMES

log = logging.getLogger(__name__)

FOUND_BY_DETECTOR = "detector"
FOUND_BY_WHOLE_IMAGE = "whole image"

# Limits of the face-crop rule in the module docstring. 160 px covers the common crop sizes
# (96, 112, 128, 150). A larger or less square photo without a detected face gets the
# "no face found" error instead of keypoints on a guessed face.
WHOLE_IMAGE_MAX_SIDE = 160
WHOLE_IMAGE_MAX_ASPECT = 1.1
WHOLE_IMAGE_MIN_FILL = 0.75

# Two detections that overlap by more than this intersection over union are one face: the
# Haar cascade sometimes adds a second box on the forehead. Distinct faces in a photo
# rarely overlap at all.
MAX_BOX_OVERLAP = 0.3

# The whole image maps onto the 96x96 crop unchanged: no margin and no shift.
_WHOLE_IMAGE_FRAMING = Framing(scale=1.0, shift_x=0.0, shift_y=0.0)


class KeypointPredictor(Protocol):
    """A model that predicts keypoints ``(N, 15, 2)`` in crop pixels for faces ``(N, 96, 96)``.

    :class:`facekp.checkpoint.KeypointModel` is one.
    """

    name: str

    def predict(self, faces: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FaceResult:
    """One face in a photo and its keypoints.

    ``box`` is the face region ``(x, y, w, h)`` in photo pixels, and ``score`` the
    detector's score (``None`` for a whole-image face). ``keypoints`` is ``(15, 2)`` float32
    in photo pixels. ``keypoints_crop`` contains the same points in pixels of ``crop``, the
    ``(96, 96)`` uint8 face the model saw, and ``face_crop`` maps between the two.
    ``found_by`` is ``"detector"`` or ``"whole image"``.
    """

    box: tuple[float, float, float, float]
    score: float | None
    keypoints: np.ndarray
    keypoints_crop: np.ndarray
    crop: np.ndarray
    face_crop: FaceCrop
    found_by: str

    def to_json(self) -> dict[str, Any]:
        """Return the face as a JSON-ready dict: box, score, found_by and named keypoints."""
        return {
            "box": [_round(v) for v in self.box],
            "score": None if self.score is None else _round(self.score),
            "found_by": self.found_by,
            "keypoints": {
                name: [_round(x), _round(y)]
                for name, (x, y) in zip(KEYPOINT_NAMES, self.keypoints.tolist())
            },
        }


@dataclass(frozen=True)
class PhotoResult:
    """The outcome for one photo: its faces, or the error that stopped it.

    ``path`` is the file path, or the name given for in-memory data. ``width`` and
    ``height`` are the upright photo's size (``None`` when it could not be decoded).
    Exactly one of ``faces`` (non-empty) and ``error`` is set.
    """

    path: str
    width: int | None
    height: int | None
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict, with ``error`` in place of ``faces`` for a failed photo."""
        document: dict[str, Any] = {"path": self.path, "width": self.width, "height": self.height}
        if self.error is None:
            document["faces"] = [face.to_json() for face in self.faces]
        else:
            document["error"] = self.error
        return document


def results_to_json(results: Sequence[PhotoResult], model_name: str) -> dict[str, Any]:
    """Build the JSON document of ``python -m facekp predict --json`` for ``results``.

    Shape: ``{"model": NAME, "images": [{"path", "width", "height", "faces": [{"box": [x, y,
    w, h], "score", "found_by", "keypoints": {name: [x, y], ...}}]}]}``, with ``"error":
    MESSAGE`` in place of ``"faces"`` for a photo that failed. Coordinates are photo pixels
    rounded to 0.01. ``score`` is ``null`` for a face with ``"found_by": "whole image"``.
    """
    return {"model": model_name, "images": [result.to_json() for result in results]}


def predict_photo(
    source: ImageSource,
    keypoint_model: KeypointPredictor | None = None,
    detector: FaceDetector | None = None,
    name: str | None = None,
    *,
    whole_image: bool | None = None,
    detection_side: int = MAX_DETECTION_SIDE,
) -> PhotoResult:
    """Find every face in a photo and predict its keypoints in photo pixels.

    ``source`` is a path or the file's bytes; ``name`` labels the result (default: the path).
    ``keypoint_model`` defaults to the shipped model and ``detector`` to
    :func:`facekp.detect.default_detector`. ``whole_image`` picks how a face crop is
    recognised (see the module docstring). Photos longer than ``detection_side`` pixels are
    searched on a copy scaled down to that side: a smaller value is faster but misses
    smaller faces, since the detector needs faces of ``detector.min_size`` pixels in that
    copy. A photo that cannot be used (unreadable, too
    large or small, no face) gives a result with an ``error`` message instead of faces.
    Raises :class:`facekp.errors.CheckpointError` only if the default model cannot be loaded.
    """
    if detection_side < 1:
        raise ValueError(f"detection_side must be a positive pixel count, got {detection_side}")
    label = name if name is not None else source_name(source)
    if keypoint_model is None:
        keypoint_model = _load_default_model()
    try:
        result = _predict_one(
            source, label, keypoint_model, detector, whole_image, detection_side
        )
    except FacekpError as error:
        message = _without_prefix(str(error), source_name(source))
        result = PhotoResult(path=label, width=None, height=None, error=message)
    if result.error is not None:
        # Debug level only: the caller reports result.error, so INFO would repeat it.
        log.debug("%s: %s", label, result.error)
    return result


def predict_photos(
    sources: Iterable[ImageSource],
    keypoint_model: KeypointPredictor | None = None,
    detector: FaceDetector | None = None,
    names: Sequence[str] | None = None,
    *,
    whole_image: bool | None = None,
    detection_side: int = MAX_DETECTION_SIDE,
) -> list[PhotoResult]:
    """Run :func:`predict_photo` on each source with one model; a bad photo never stops the rest.

    ``names`` labels the results in order (default: the paths). Raises
    :class:`facekp.errors.CheckpointError` only if the default model cannot be loaded.
    """
    sources = list(sources)
    if names is not None and len(names) != len(sources):
        raise ValueError(f"got {len(names)} names for {len(sources)} photos")
    if keypoint_model is None:
        keypoint_model = _load_default_model()
    detector = detector or default_detector()
    return [
        predict_photo(
            source,
            keypoint_model,
            detector,
            name=None if names is None else names[index],
            whole_image=whole_image,
            detection_side=detection_side,
        )
        for index, source in enumerate(sources)
    ]


def _load_default_model() -> KeypointPredictor:
    from facekp.checkpoint import load_model

    return load_model()


def _predict_one(
    source: ImageSource,
    label: str,
    keypoint_model: KeypointPredictor,
    detector: FaceDetector | None,
    whole_image: bool | None,
    detection_side: int,
) -> PhotoResult:
    decoded = read_gray(source)
    gray = decoded.pixels
    height, width = gray.shape

    # Step 1: find the faces (on a downscaled copy for large photos), or take the whole image.
    detector = detector or default_detector()
    if whole_image:
        regions = [_whole_image_region(width, height)]
    else:
        detections = _drop_overlapping(find_faces(gray, detector, max_side=detection_side))
        min_extra_score = getattr(detector, "min_extra_score", None)
        if min_extra_score is not None:
            detections = drop_weak_extra_faces(detections, min_extra_score)
        regions = [(d.box, d.score, FOUND_BY_DETECTOR) for d in detections]
        if whole_image is None and _is_face_crop(width, height, detections):
            log.debug("%s: the %dx%d image is taken as one face crop", label, width, height)
            regions = [_whole_image_region(width, height)]
    if not regions:
        message = _no_face_message(detector, width, height, detection_side)
        return PhotoResult(path=label, width=width, height=height, error=message)

    # Step 2: cut each face from the full-resolution photo and predict in crop pixels.
    crops, face_crops = [], []
    for box, _, found_by in regions:
        if found_by == FOUND_BY_WHOLE_IMAGE:
            side = float(max(width, height))
            square = ((width - side) / 2, (height - side) / 2, side, side)
            crop, face_crop = crop_face(gray, square, _WHOLE_IMAGE_FRAMING)
        else:
            crop, face_crop = crop_face(gray, box, DEFAULT_FRAMING)
        crops.append(crop)
        face_crops.append(face_crop)
    keypoints_crop = np.asarray(keypoint_model.predict(np.stack(crops)), dtype=np.float32)

    # Step 3: map the keypoints back to photo pixels.
    faces = [
        FaceResult(
            box=tuple(float(v) for v in box),
            score=None if score is None else float(score),
            keypoints=face_crop.to_photo(points),
            keypoints_crop=points,
            crop=crop,
            face_crop=face_crop,
            found_by=found_by,
        )
        for (box, score, found_by), crop, face_crop, points in zip(
            regions, crops, face_crops, keypoints_crop
        )
    ]
    return PhotoResult(path=label, width=width, height=height, faces=faces)


def _drop_overlapping(detections: list[Detection]) -> list[Detection]:
    """Keep detections best first, dropping each that overlaps a kept one too much."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(_overlap(detection.box, other.box) <= MAX_BOX_OVERLAP for other in kept):
            kept.append(detection)
    return kept


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Return the intersection over union of two ``(x, y, w, h)`` boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    return intersection / (a[2] * a[3] + b[2] * b[3] - intersection)


def _whole_image_region(width: int, height: int) -> tuple[tuple[float, ...], None, str]:
    return (0.0, 0.0, float(width), float(height)), None, FOUND_BY_WHOLE_IMAGE


def _is_face_crop(width: int, height: int, detections: list[Detection]) -> bool:
    """Apply the face-crop rule of the module docstring to a photo and its detections."""
    aspect = max(width, height) / min(width, height)
    if max(width, height) > WHOLE_IMAGE_MAX_SIDE or aspect > WHOLE_IMAGE_MAX_ASPECT:
        return False
    if not detections:
        return True
    return detections[0].box[2] >= WHOLE_IMAGE_MIN_FILL * min(width, height)


def _no_face_message(detector: FaceDetector, width: int, height: int, detection_side: int) -> str:
    """Say that no face was found and how large a face must be in this photo."""
    min_size = getattr(detector, "min_size", None)
    if min_size is None:
        return "no face found: try a frontal, well-lit photo with the face clearly visible"
    downscale = max(1.0, max(width, height) / detection_side)
    min_face = int(np.ceil(min_size * downscale))
    return (
        "no face found: try a frontal, well-lit photo where the face is at least "
        f"{min_face} px wide"
    )


def _without_prefix(message: str, source: str) -> str:
    """Drop a leading ``"<source>: "`` from a message, since the result names the photo."""
    prefix = f"{source}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _round(value: float) -> float | None:
    """Round to 0.01 for JSON; NaN and infinity become ``None`` (JSON has no NaN)."""
    value = float(value)
    return round(value, 2) if np.isfinite(value) else None
