"""Convert photos with 68-point landmarks into 96x96 Kaggle-format faces.

Each photo is searched with the same detector and cropped with the same framing as the
photo pipeline uses, so converted training faces are framed exactly like the faces the
model later sees. The labelled face is the detection that contains the landmarks' centre
and overlaps their bounding box best; photos without one are skipped and counted by reason.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facekp.crop import DEFAULT_FRAMING, Framing, crop_face
from facekp.data import IMAGE_COLUMN, KeypointSet
from facekp.detect import Detection, FaceDetector, default_detector, find_faces
from facekp.errors import DataFormatError
from facekp.keypoints import COORDINATE_COLUMNS, FACE_SIZE, ibug68_to_kaggle
from facekp.landmarks import IMAGE_SUFFIXES, LandmarkSet

log = logging.getLogger(__name__)

# Column of converted files that holds each face's source image file name.
NAME_COLUMN = "Name"

# Reasons for skipping a photo, as counted in Conversion.skipped.
SKIP_IMAGE_MISSING = "image missing"
SKIP_UNREADABLE = "unreadable image"
SKIP_NO_FACE = "no face found"
SKIP_FACE_ELSEWHERE = "face found elsewhere"
SKIP_OUTSIDE_CROP = "keypoints outside crop"
SKIP_REASONS = (
    SKIP_IMAGE_MISSING,
    SKIP_UNREADABLE,
    SKIP_NO_FACE,
    SKIP_FACE_ELSEWHERE,
    SKIP_OUTSIDE_CROP,
)

# Keypoints must lie on the 96x96 crop: pixel centres 0..95, pixel edges -0.5..95.5.
_CROP_LOW, _CROP_HIGH = -0.5, FACE_SIZE - 0.5

_PERSON_PATTERN = re.compile(r"^(?P<person>.+)_\d+$")


@dataclass
class Conversion:
    """The outcome of :func:`convert_landmarks`.

    ``faces`` holds the converted faces with image file names and person groups;
    ``boxes`` is ``(N, 4)`` float64, the chosen detector box ``(x, y, w, h)`` of each face in
    photo pixels; ``skipped`` maps each reason in :data:`SKIP_REASONS` to the skipped names.
    """

    faces: KeypointSet
    boxes: np.ndarray
    skipped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(len(names) for names in self.skipped.values())


def person_of(name: str) -> str:
    """Return the person in an image file name: the stem before its last ``_N`` suffix.

    ``Luis_Fonsi_21.jpg`` gives ``Luis_Fonsi``; a stem without such a suffix is returned whole.
    """
    stem = Path(name).stem
    match = _PERSON_PATTERN.match(stem)
    return match.group("person") if match else stem


def convert_landmarks(
    landmarks: LandmarkSet,
    images_dir: str | Path,
    *,
    detector: FaceDetector | None = None,
    framing: Framing = DEFAULT_FRAMING,
    progress: bool = False,
) -> Conversion:
    """Detect, match and crop the labelled face of every photo in ``landmarks``.

    Photos are read from ``images_dir`` as grayscale. Keypoints are the 15 Kaggle keypoints
    mapped from the 68 landmarks, in pixels of the 96x96 crop. ``progress`` shows a progress
    bar on stderr.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataFormatError(
            "image folder not found; pass the folder that holds the labelled photos",
            path=str(images_dir),
        )
    detector = detector or default_detector()

    images, keypoints, names, boxes = [], [], [], []
    skipped: dict[str, list[str]] = {reason: [] for reason in SKIP_REASONS}
    rows = zip(landmarks.names, landmarks.points)
    for name, points in tqdm(rows, total=len(landmarks), disable=not progress, unit="photo"):
        outcome = _convert_one(images_dir, name, points, detector, framing)
        if isinstance(outcome, str):
            skipped[outcome].append(name)
            log.debug("skipped %s: %s", name, outcome)
            continue
        image_name, crop, crop_keypoints, box = outcome
        images.append(crop)
        keypoints.append(crop_keypoints)
        names.append(image_name)
        boxes.append(box)

    faces = KeypointSet(
        images=np.asarray(images, dtype=np.uint8).reshape(-1, FACE_SIZE, FACE_SIZE),
        keypoints=np.asarray(keypoints, dtype=np.float32).reshape(-1, 15, 2),
        names=names,
        groups=[person_of(name) for name in names],
    )
    conversion = Conversion(
        faces=faces,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        skipped={reason: found for reason, found in skipped.items() if found},
    )
    log.info(
        "converted %d of %d photos, skipped %d", len(faces), len(landmarks), conversion.num_skipped
    )
    return conversion


def _convert_one(
    images_dir: Path,
    name: str,
    points: np.ndarray,
    detector: FaceDetector,
    framing: Framing,
) -> tuple[str, np.ndarray, np.ndarray, tuple[float, ...]] | str:
    """Return ``(image name, crop, keypoints, box)`` for one photo, or the reason to skip it."""
    path = resolve_image(images_dir, name)
    if path is None:
        return SKIP_IMAGE_MISSING
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        return SKIP_UNREADABLE

    detections = find_faces(gray, detector)
    if not detections:
        return SKIP_NO_FACE
    match = match_detection(detections, points)
    if match is None:
        return SKIP_FACE_ELSEWHERE

    crop, face_crop = crop_face(gray, match.box, framing)
    keypoints = face_crop.to_crop(ibug68_to_kaggle(points))
    if keypoints.min() < _CROP_LOW or keypoints.max() > _CROP_HIGH:
        return SKIP_OUTSIDE_CROP
    return path.name, crop, keypoints, match.box


def resolve_image(images_dir: Path, name: str) -> Path | None:
    """Return the image file for ``name`` in ``images_dir``, or None when there is none.

    A name without an image suffix (a ``.pts`` stem) matches ``name`` plus any of
    :data:`facekp.landmarks.IMAGE_SUFFIXES`, in lower or upper case.
    """
    path = images_dir / name
    if path.is_file():
        return path
    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
        return None
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            path = images_dir / f"{name}{candidate}"
            if path.is_file():
                return path
    return None


def match_detection(detections: list[Detection], points: np.ndarray) -> Detection | None:
    """Pick the detection of the labelled face: it contains the centre of the landmarks'
    bounding box, and among those it overlaps that bounding box most (intersection over
    union). ``points`` is ``(K, 2)`` photo pixels; return None when no detection qualifies.
    """
    low, high = points.min(axis=0), points.max(axis=0)
    # Landmarks are pixel centres; detector boxes are edges, hence the half-pixel shifts.
    label_box = (low[0] + 0.5, low[1] + 0.5, high[0] - low[0], high[1] - low[1])
    centre_x, centre_y = (low + high) / 2 + 0.5

    best, best_overlap = None, -1.0
    for detection in detections:
        x, y, w, h = detection.box
        if not (x <= centre_x <= x + w and y <= centre_y <= y + h):
            continue
        overlap = _intersection_over_union(detection.box, label_box)
        if overlap > best_overlap:
            best, best_overlap = detection, overlap
    return best


def _intersection_over_union(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0


def write_converted_csv(faces: KeypointSet, path: str | Path) -> Path:
    """Write ``faces`` as a Kaggle ``training.csv`` with a trailing ``Name`` column, atomically.

    The columns are the 30 keypoint coordinates, ``Image`` (9216 space-separated gray
    values) and ``Name`` (the source image file name). The file is written to a temporary
    file in the same folder and renamed into place, so a failed write never leaves half a
    file. Missing coordinates are written as empty cells. Returns the written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise DataFormatError("is a folder; pass the path of the CSV file to write", path=str(path))

    header = ",".join((*COORDINATE_COLUMNS, IMAGE_COLUMN, NAME_COLUMN))
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(header + "\n")
            for image, keypoints, name in zip(faces.images, faces.keypoints, _names(faces)):
                handle.write(_csv_row(image, keypoints, name))
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates the file readable by its owner only; give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _names(faces: KeypointSet) -> list[str]:
    return faces.names if len(faces.names) == len(faces) else [str(i) for i in range(len(faces))]


def _csv_row(image: np.ndarray, keypoints: np.ndarray, name: str) -> str:
    coordinates = ",".join("" if np.isnan(v) else f"{v:.4f}" for v in keypoints.reshape(-1))
    pixels = " ".join(map(str, image.reshape(-1).tolist()))
    # Quote the name only when CSV needs it.
    if any(character in name for character in ',"\n\r'):
        name = '"' + name.replace('"', '""') + '"'
    return f"{coordinates},{pixels},{name}\n"
