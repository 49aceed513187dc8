"""Convert photos with 68-point landmarks into 96x96 Kaggle-format faces.

Each photo is searched with the same detector and cropped with the same framing as the
photo pipeline uses, so converted training faces are framed exactly like the faces the
model later sees. The labelled face is the detection that contains the landmarks' centre
and overlaps their bounding box best; photos without one are skipped and counted by reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facekp.crop import DEFAULT_FRAMING, Framing, crop_face
from facekp.data import KeypointSet, person_from_filename
from facekp.detect import Detection, FaceDetector, default_detector, find_faces
from facekp.errors import DataFormatError
from facekp.keypoints import FACE_SIZE, KEYPOINT_NAMES, NUM_KEYPOINTS, ibug68_to_kaggle
from facekp.landmarks import IMAGE_SUFFIXES, LandmarkSet

log = logging.getLogger(__name__)

# Reasons for skipping a photo, as counted in Conversion.skipped.
SKIP_IMAGE_MISSING = "image missing"
SKIP_UNREADABLE = "unreadable image"
SKIP_LANDMARKS_OUTSIDE = "landmarks outside the image"
SKIP_NO_FACE = "no face found"
SKIP_FACE_ELSEWHERE = "face found elsewhere"
SKIP_OUTSIDE_CROP = "keypoints outside crop"
SKIP_REASONS = (
    SKIP_IMAGE_MISSING,
    SKIP_UNREADABLE,
    SKIP_LANDMARKS_OUTSIDE,
    SKIP_NO_FACE,
    SKIP_FACE_ELSEWHERE,
    SKIP_OUTSIDE_CROP,
)

# Keypoints must lie on the 96x96 crop: pixel centres 0..95, pixel edges -0.5..95.5.
_CROP_LOW, _CROP_HIGH = -0.5, FACE_SIZE - 0.5


@dataclass
class Conversion:
    """The outcome of :func:`convert_landmarks`.

    ``faces`` contains the converted faces with image file names and person groups.
    ``boxes`` is ``(N, 4)`` float64, the chosen detector box ``(x, y, w, h)`` of each face in
    photo pixels. ``skipped`` maps each reason in :data:`SKIP_REASONS` to the skipped names,
    and ``partial`` lists the kept faces whose keypoints outside the crop were set missing.
    """

    faces: KeypointSet
    boxes: np.ndarray
    skipped: dict[str, list[str]] = field(default_factory=dict)
    partial: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(len(names) for names in self.skipped.values())


def convert_landmarks(
    landmarks: LandmarkSet,
    images_dir: str | Path,
    *,
    detector: FaceDetector | None = None,
    framing: Framing = DEFAULT_FRAMING,
    keep_partial: bool = False,
    progress: bool = False,
) -> Conversion:
    """Detect, match and crop the labelled face of every photo in ``landmarks``.

    Photos are read from ``images_dir`` as grayscale. Keypoints are the 15 Kaggle keypoints
    mapped from the 68 landmarks, in pixels of the 96x96 crop. A face with keypoints outside
    the crop is skipped, unless ``keep_partial`` is true: then those keypoints are NaN
    (missing, as in Kaggle's data) and the face is kept. ``progress`` shows a progress bar on
    stderr.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataFormatError(
            "image folder not found; pass the folder that contains the labelled photos",
            path=str(images_dir),
        )
    detector = detector or default_detector()

    images, keypoints, names, boxes, partial = [], [], [], [], []
    skipped: dict[str, list[str]] = {reason: [] for reason in SKIP_REASONS}
    rows = zip(landmarks.names, landmarks.points)
    for name, points in tqdm(rows, total=len(landmarks), disable=not progress, unit="photo"):
        try:
            face = _convert_one(images_dir, name, points, detector, framing, keep_partial)
        except _Skipped as skip:
            skipped[skip.reason].append(name)
            log.debug("skipped %s: %s", name, skip.reason)
            continue
        images.append(face.crop)
        keypoints.append(face.keypoints)
        names.append(face.image_name)
        boxes.append(face.box)
        if np.isnan(face.keypoints).any():
            partial.append(face.image_name)

    faces = KeypointSet(
        images=np.asarray(images, dtype=np.uint8).reshape(-1, FACE_SIZE, FACE_SIZE),
        keypoints=np.asarray(keypoints, dtype=np.float32).reshape(-1, NUM_KEYPOINTS, 2),
        names=names,
        groups=[person_from_filename(name) for name in names],
    )
    conversion = Conversion(
        faces=faces,
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        skipped={reason: found for reason, found in skipped.items() if found},
        partial=partial,
    )
    log.info(
        "converted %d of %d photos (%d with keypoints outside the crop left missing), skipped %d",
        len(faces),
        len(landmarks),
        len(partial),
        conversion.num_skipped,
    )
    return conversion


class _Skipped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Face:
    image_name: str
    crop: np.ndarray
    keypoints: np.ndarray
    box: tuple[float, float, float, float]


def _convert_one(
    images_dir: Path,
    name: str,
    points: np.ndarray,
    detector: FaceDetector,
    framing: Framing,
    keep_partial: bool,
) -> _Face:
    """Convert one photo; raise :class:`_Skipped` with one of :data:`SKIP_REASONS` if it fails."""
    path = resolve_image(images_dir, name)
    if path is None:
        raise _Skipped(SKIP_IMAGE_MISSING)
    try:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        gray = None
    if gray is None or gray.size == 0:
        raise _Skipped(SKIP_UNREADABLE)

    # A detector box lies inside the image, so it can never contain a landmark centre outside
    # it: such landmarks belong to another image or another pixel origin, not another face.
    if not _centre_inside(points, gray.shape):
        raise _Skipped(SKIP_LANDMARKS_OUTSIDE)

    detections = find_faces(gray, detector)
    if not detections:
        raise _Skipped(SKIP_NO_FACE)
    match = match_detection(detections, points)
    if match is None:
        raise _Skipped(SKIP_FACE_ELSEWHERE)

    crop, face_crop = crop_face(gray, match.box, framing)
    keypoints = face_crop.to_crop(ibug68_to_kaggle(points))
    outside = ((keypoints < _CROP_LOW) | (keypoints > _CROP_HIGH)).any(axis=1)
    if outside.any() and not keep_partial:
        raise _Skipped(SKIP_OUTSIDE_CROP)
    keypoints[outside] = np.nan
    return _Face(image_name=path.name, crop=crop, keypoints=keypoints, box=match.box)


def _centre_inside(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Return whether the centre of the landmarks' bounding box lies on the image.

    ``points`` is ``(K, 2)`` in photo pixels with pixel centres at integers, so the image
    spans ``-0.5 .. width - 0.5`` and ``-0.5 .. height - 0.5``. Single landmarks may lie
    outside, as a chin below the bottom edge does in a few ytf68 training photos.
    """
    height, width = shape[:2]
    centre_x, centre_y = (points.min(axis=0) + points.max(axis=0)) / 2
    return bool(-0.5 <= centre_x <= width - 0.5 and -0.5 <= centre_y <= height - 0.5)


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


def fit_framing(
    keypoints: np.ndarray,
    framing: Framing,
    *,
    outer_eye_distance: float = 50.0,
    eye_y: float = 38.0,
    eye_x: float = (FACE_SIZE - 1) / 2,
) -> Framing:
    """Fit a framing that puts the mean face where Kaggle's faces sit.

    ``keypoints`` is ``(N, 15, 2)`` in pixels of crops made with ``framing``. The returned
    framing makes, on average over these faces, the outer eye corners ``outer_eye_distance``
    px apart, the eye centres' mean ``y`` equal to ``eye_y`` and their midpoint's ``x`` equal
    to ``eye_x``, all in crop pixels. Crop coordinates are affine in the framing, so the fit
    is exact for the same detector boxes. Faces that newly fall outside the crop shift the
    means slightly, so refit once on the new crops.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    centre = FACE_SIZE / 2 - 0.5
    names = list(KEYPOINT_NAMES)
    eyes = keypoints[:, [names.index("left_eye_center"), names.index("right_eye_center")]]
    corners = keypoints[:, [names.index("left_eye_outer_corner"), names.index("right_eye_outer_corner")]]

    # In units of the detector box width: crop u = centre + size * (a - shift) / scale, where
    # a is the point's offset from the box centre, so a = (u - centre) * scale / size + shift.
    distance = np.linalg.norm(corners[:, 0] - corners[:, 1], axis=-1) * framing.scale / FACE_SIZE
    offset_x = (eyes[..., 0].mean(axis=1) - centre) * framing.scale / FACE_SIZE + framing.shift_x
    offset_y = (eyes[..., 1].mean(axis=1) - centre) * framing.scale / FACE_SIZE + framing.shift_y

    scale = float(np.nanmean(distance)) * FACE_SIZE / outer_eye_distance
    shift_x = float(np.nanmean(offset_x)) - (eye_x - centre) * scale / FACE_SIZE
    shift_y = float(np.nanmean(offset_y)) - (eye_y - centre) * scale / FACE_SIZE
    return Framing(scale=round(scale, 4), shift_x=round(shift_x, 4), shift_y=round(shift_y, 4))
