"""Keypoint data sets in Kaggle's ``training.csv`` format: load, validate, write, split, summarise.

A training CSV has a header line, then one face per line: the 30 coordinate columns of
:data:`facekp.keypoints.COORDINATE_COLUMNS` (an empty cell is a missing coordinate), then
``Image``, 9216 space-separated gray values 0-255 of a 96x96 face in row-major order.
Files that facekp converts from labelled photos add a ``Name`` column after ``Image`` with the
source image's file name. Columns are found by their header name, so their order is free, but
any other column is rejected so that a misspelt keypoint column is not silently dropped.

Keypoint coordinates are pixels of the 96x96 face with pixel centres at integers, so the image
covers -0.5..95.5. Coordinates up to :data:`KEYPOINT_MARGIN` pixels beyond that are accepted,
because labels on the face's edge may be rounded outwards; anything further is rejected.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from facekp._csvio import (
    NUM_PIXELS,
    OpenedSource,
    RowValueError,
    Source,
    describe_invalid_bytes,
    format_coordinate,
    format_pixels,
    has_invalid_bytes,
    load_cached,
    open_source,
    parse_pixels,
    read_header,
    read_records,
    store_cached,
    write_atomically,
)
from facekp.errors import DataFormatError
from facekp.keypoints import (
    COORDINATE_COLUMNS,
    CORE_KEYPOINTS,
    FACE_SIZE,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
)

__all__ = [
    "IMAGE_COLUMN",
    "KEYPOINT_MARGIN",
    "NAME_COLUMN",
    "NUM_PIXELS",
    "DataSummary",
    "ImageSummary",
    "KeypointSet",
    "KeypointSummary",
    "LOW_CONTRAST_STD",
    "RowProblem",
    "load_training_csv",
    "person_from_filename",
    "split_indices",
    "summarize_images",
    "summarize_keypoint_set",
    "write_training_csv",
]

log = logging.getLogger(__name__)

IMAGE_COLUMN = "Image"
NAME_COLUMN = "Name"

# Tolerance in pixels for coordinates outside the 96x96 image (-0.5..95.5) that still load.
KEYPOINT_MARGIN = 1.0
_COORDINATE_LOW = -0.5 - KEYPOINT_MARGIN
_COORDINATE_HIGH = FACE_SIZE - 0.5 + KEYPOINT_MARGIN

# Problems listed in the warning that skip_bad_rows logs; all of them stay in skipped_rows.
_PROBLEMS_LOGGED = 5

_PERSON_PATTERN = re.compile(r"^(?P<person>.+)_\d+$")


@dataclass(frozen=True)
class RowProblem:
    """The reason one data row of a CSV file was rejected.

    ``row`` counts data rows from 1, after the header and without blank lines. ``line`` is the
    1-based line of the file. ``column`` names the bad cell, or is None for the whole row.
    """

    row: int
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"row {self.row} (file line {self.line})"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"


@dataclass
class KeypointSet:
    """Faces and their keypoints.

    ``images`` is ``(N, 96, 96)`` uint8. ``keypoints`` is ``(N, 15, 2)`` float32 pixels of the
    96x96 face, with NaN where a coordinate is missing. ``names`` identifies each row: a file
    name for converted sets, otherwise the 1-based data row of the CSV. ``groups`` names the
    person where known, for splits that keep a person's faces together. ``skipped_rows`` lists
    the rows of the source file that a lenient load left out.
    """

    images: np.ndarray
    keypoints: np.ndarray
    names: list[str] = field(default_factory=list)
    groups: list[str] | None = None
    skipped_rows: tuple[RowProblem, ...] = ()

    def __post_init__(self) -> None:
        count = len(self.images)
        if self.images.ndim != 3:
            raise ValueError(f"images must be (N, H, W), got shape {self.images.shape}")
        if self.keypoints.shape != (count, NUM_KEYPOINTS, 2):
            raise ValueError(
                f"keypoints must be ({count}, {NUM_KEYPOINTS}, 2) to match the images, "
                f"got {self.keypoints.shape}"
            )
        if self.names and len(self.names) != count:
            raise ValueError(f"got {len(self.names)} names for {count} images")
        if self.groups is not None and len(self.groups) != count:
            raise ValueError(f"got {len(self.groups)} groups for {count} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labelled(self) -> np.ndarray:
        """``(N, 15)`` bool: whether each keypoint has both coordinates."""
        return ~np.isnan(self.keypoints).any(axis=2)

    @property
    def complete(self) -> np.ndarray:
        """``(N,)`` bool: whether a face has all 15 keypoints."""
        return self.labelled.all(axis=1)

    def subset(self, indices: Sequence[int] | np.ndarray) -> KeypointSet:
        """Return the faces at ``indices`` (integers or an ``(N,)`` bool mask) as a new set.

        Arrays are copied, so changing the subset leaves this set unchanged. ``skipped_rows``
        describes the source file, not the subset, and is not carried over.
        """
        selection = np.asarray(indices)
        if selection.dtype == bool:
            selection = np.flatnonzero(selection)
        selection = selection.astype(np.int64, copy=False)
        names = [self.names[i] for i in selection] if self.names else []
        groups = [self.groups[i] for i in selection] if self.groups is not None else None
        return KeypointSet(
            images=self.images[selection],
            keypoints=self.keypoints[selection],
            names=names,
            groups=groups,
        )


def person_from_filename(name: str) -> str:
    """Return the person in an image file name: the stem before its last ``_N`` suffix.

    ``Luis_Fonsi_21.jpg`` gives ``Luis_Fonsi``. A stem without such a suffix is returned whole,
    so each such file counts as a person of its own.
    """
    stem = Path(name).stem
    match = _PERSON_PATTERN.match(stem)
    return match.group("person") if match else stem


# ---------------------------------------------------------------------------------------------
# Loading


def load_training_csv(
    source: Source,
    *,
    skip_bad_rows: bool = False,
    use_cache: bool = True,
    name: str | None = None,
) -> KeypointSet:
    """Load a Kaggle-format ``training.csv`` from a path, bytes or a binary file object.

    Strict by default: the first bad row raises :class:`DataFormatError` naming the file, the
    data row (counted from 1 after the header) and the column, and the message adds the file
    line. With ``skip_bad_rows`` bad rows are left out, listed in ``skipped_rows`` of the
    result and counted in a logged warning; a file with no good row still raises. Errors about
    the whole file (empty, binary, wrong header) always raise.

    With a ``Name`` column, ``names`` are its values and ``groups`` the person of each name
    (:func:`person_from_filename`); otherwise ``names`` are the data row numbers and
    ``groups`` is None. ``name`` labels a byte source in messages.

    With ``use_cache`` the parsed arrays are cached on disk (see
    :func:`facekp._csvio.cache_dir`) under the file's absolute path, size and modification
    time, or the SHA-256 of a byte source, so a second load of an unchanged file skips
    parsing. A corrupt cache entry is deleted and the file is parsed again.
    """
    options = {"skip_bad_rows": bool(skip_bad_rows)}
    with open_source(source, name) as opened:
        keypoint_set = None
        if use_cache:
            cached = load_cached("training", opened.identity, options, _CACHE_DTYPES)
            if cached is not None:
                keypoint_set = _keypoint_set_from_arrays(cached, opened.label)
        if keypoint_set is None:
            keypoint_set = _parse_training_csv(opened, skip_bad_rows)
            if use_cache:
                arrays = _keypoint_set_to_arrays(keypoint_set)
                store_cached("training", opened.identity, options, arrays)

    if keypoint_set.skipped_rows:
        problems = keypoint_set.skipped_rows
        log.warning(
            "%s: skipped %d of %d rows; first problems: %s",
            opened.label,
            len(problems),
            len(keypoint_set) + len(problems),
            "; ".join(str(problem) for problem in problems[:_PROBLEMS_LOGGED]),
        )
    return keypoint_set


def _parse_training_csv(opened: OpenedSource, skip_bad_rows: bool) -> KeypointSet:
    records = read_records(opened.stream, opened.label)
    header = read_header(records, opened.label)
    columns = _training_columns(header, opened.label)

    images = _ImageBuffer(opened.size)
    keypoints: list[np.ndarray] = []
    names: list[str] = []
    problems: list[RowProblem] = []
    row = 0
    for row, (line, fields) in enumerate(records, start=1):
        try:
            row_keypoints, image, row_name = _parse_training_row(fields, header, columns, row)
        except RowValueError as error:
            if not skip_bad_rows:
                raise DataFormatError(
                    f"{error.message} (file line {line}); to load the other rows, skip "
                    "invalid rows with the skip-bad-rows option",
                    path=opened.label,
                    row=row,
                    column=error.column,
                ) from None
            problems.append(
                RowProblem(row=row, line=line, column=error.column, message=error.message)
            )
            continue
        images.append(image)
        keypoints.append(row_keypoints)
        names.append(row_name)

    if row == 0:
        raise DataFormatError("has a header but no data rows", path=opened.label)
    if not names:
        raise DataFormatError(
            f"all {len(problems)} data rows are invalid; the first: {problems[0]}",
            path=opened.label,
        )
    has_names = NAME_COLUMN in columns
    keypoint_set = KeypointSet(
        images=images.finish(),
        keypoints=np.stack(keypoints),
        names=names,
        groups=[person_from_filename(value) for value in names] if has_names else None,
        skipped_rows=tuple(problems),
    )
    log.debug("parsed %d faces from %s", len(keypoint_set), opened.label)
    return keypoint_set


class _ImageBuffer:
    """Collects ``(96, 96)`` uint8 images into one array without a final copy.

    Every valid row contains at least 9216 digits and 9215 separators, so a file of ``size``
    bytes has at most ``size // 18431`` rows. The buffer reserves that many images up front;
    pages never written are never touched, so they cost address space but no memory.
    """

    _MIN_ROW_BYTES = 2 * NUM_PIXELS - 1

    def __init__(self, size: int) -> None:
        capacity = max(1, size // self._MIN_ROW_BYTES + 1)
        self._array = np.empty((capacity, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
        self._count = 0

    def append(self, image: np.ndarray) -> None:
        if self._count == len(self._array):  # only if the size bound were wrong
            self._array = np.concatenate([self._array, np.empty_like(self._array)])
        self._array[self._count] = image
        self._count += 1

    def finish(self) -> np.ndarray:
        """Return the collected ``(N, 96, 96)`` images, shrinking the reservation in place."""
        self._array.resize((self._count, FACE_SIZE, FACE_SIZE), refcheck=False)
        return self._array


def _training_columns(header: list[str], label: str) -> dict[str, int]:
    """Map each known column name to its position, or raise naming the bad header cell."""
    if header and _looks_numeric(header[0]):
        raise DataFormatError(
            f"the first line starts with the value {header[0]!r}, not a column name; "
            "a training CSV needs a header line naming the 30 keypoint columns and Image",
            path=label,
        )

    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if name in seen:
            raise DataFormatError(
                "this column appears twice in the header; each column may appear once",
                path=label,
                row=None,
                column=name,
            )
        seen[name] = position

    if "ImageId" in seen and IMAGE_COLUMN in seen and not set(COORDINATE_COLUMNS) & set(seen):
        raise DataFormatError(
            "this is a Kaggle test.csv (ImageId, Image) without keypoints; training and "
            "evaluation need a training.csv with the 30 keypoint columns and Image",
            path=label,
        )

    known = (*COORDINATE_COLUMNS, IMAGE_COLUMN, NAME_COLUMN)
    if not set(known) & set(seen):
        # Quote nothing from such a file: it may be any text file the user pointed at.
        raise DataFormatError(
            "the header names none of the columns of a Kaggle training.csv, so this is not a "
            f"training CSV; it needs the 30 keypoint columns ({COORDINATE_COLUMNS[0]} ... "
            f"{COORDINATE_COLUMNS[-1]}) and Image",
            path=label,
        )
    for name in header:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if not name or name.startswith("Unnamed:"):
                hint = (
                    "; an unnamed column comes from a trailing comma or from a row index "
                    "(write the file with pandas' index=False)"
                )
            raise DataFormatError(
                "unexpected column in the header; a training CSV has the 30 keypoint columns "
                f"({COORDINATE_COLUMNS[0]} ... {COORDINATE_COLUMNS[-1]}), Image and "
                f"optionally Name{hint}",
                path=label,
                column=name,
            )

    missing = [name for name in (*COORDINATE_COLUMNS, IMAGE_COLUMN) if name not in seen]
    if missing:
        more = (
            f" (and {len(missing) - 1} more: {', '.join(missing[1:4])}...)"
            if len(missing) > 1
            else ""
        )
        raise DataFormatError(
            f"missing column in the header{more}; a training CSV needs the 30 keypoint "
            "columns of Kaggle's training.csv and Image",
            path=label,
            column=missing[0],
        )
    return seen


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_training_row(
    fields: list[str], header: list[str], columns: dict[str, int], row: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """Return ``(keypoints (15, 2) float32, image (96, 96) uint8, name)`` or raise RowValueError."""
    if len(fields) != len(header):
        raise RowValueError(
            f"has {len(fields)} fields; expected {len(header)}, one per header column "
            "(a cut-off line or a stray comma?)",
            None,
        )

    values = np.empty(len(COORDINATE_COLUMNS), dtype=np.float64)
    for index, column in enumerate(COORDINATE_COLUMNS):
        values[index] = _parse_coordinate(fields[columns[column]], column)
    _check_coordinates(values, [fields[columns[column]] for column in COORDINATE_COLUMNS])

    image = parse_pixels(fields[columns[IMAGE_COLUMN]], IMAGE_COLUMN)

    if NAME_COLUMN in columns:
        name = fields[columns[NAME_COLUMN]]
        if has_invalid_bytes(name):
            raise RowValueError(describe_invalid_bytes(name), NAME_COLUMN)
        name = name if name.strip() else str(row)
    else:
        name = str(row)
    return values.astype(np.float32).reshape(NUM_KEYPOINTS, 2), image, name


def _parse_coordinate(cell: str, column: str) -> float:
    text = cell.strip()
    if not text or text.lower() == "nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        problem = (
            describe_invalid_bytes(text)
            if has_invalid_bytes(text)
            else f"{text[:30]!r} is not a number"
        )
        raise RowValueError(
            f"{problem}; expected a pixel coordinate, or an empty cell for a missing keypoint",
            column,
        ) from None


def _check_coordinates(values: np.ndarray, cells: list[str]) -> None:
    present = ~np.isnan(values)
    outside = present & ~((values >= _COORDINATE_LOW) & (values <= _COORDINATE_HIGH))
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise RowValueError(
            f"{values[index]:g} is outside the 96x96 face; expected {_COORDINATE_LOW:g} to "
            f"{_COORDINATE_HIGH:g} (pixel centres 0..95)",
            COORDINATE_COLUMNS[index],
        )

    half_labelled = present[0::2] != present[1::2]
    if half_labelled.any():
        keypoint = int(np.flatnonzero(half_labelled)[0])
        x_column, y_column = COORDINATE_COLUMNS[2 * keypoint], COORDINATE_COLUMNS[2 * keypoint + 1]
        missing_index = 2 * keypoint if present[2 * keypoint + 1] else 2 * keypoint + 1
        missing = COORDINATE_COLUMNS[missing_index]
        filled = y_column if missing == x_column else x_column
        state = "is empty" if not cells[missing_index].strip() else "is NaN (not a number)"
        raise RowValueError(
            f"{state} but {filled} is set; a keypoint needs both coordinates or neither",
            missing,
        )


# ---------------------------------------------------------------------------------------------
# Cache entries: a KeypointSet as plain arrays


_CACHE_DTYPES = {
    "images": "u",
    "keypoints": "f",
    "names": "U",
    "groups": "U",
    "has_groups": "b",
    "skipped_rows": "U",
}


def _keypoint_set_to_arrays(keypoint_set: KeypointSet) -> dict[str, np.ndarray]:
    problems = [asdict(problem) for problem in keypoint_set.skipped_rows]
    return {
        "images": keypoint_set.images,
        "keypoints": keypoint_set.keypoints,
        "names": np.array(keypoint_set.names, dtype=str),
        "groups": np.array(keypoint_set.groups or [], dtype=str),
        "has_groups": np.array(keypoint_set.groups is not None),
        "skipped_rows": np.array(json.dumps(problems)),
    }


def _keypoint_set_from_arrays(arrays: dict[str, np.ndarray], label: str) -> KeypointSet | None:
    try:
        problems = tuple(RowProblem(**entry) for entry in json.loads(str(arrays["skipped_rows"])))
        return KeypointSet(
            images=arrays["images"],
            keypoints=arrays["keypoints"],
            names=arrays["names"].tolist(),
            groups=arrays["groups"].tolist() if bool(arrays["has_groups"]) else None,
            skipped_rows=problems,
        )
    except (ValueError, TypeError) as error:
        log.warning("ignoring a cache entry for %s that does not fit (%s)", label, error)
        return None


# ---------------------------------------------------------------------------------------------
# Writing


def write_training_csv(
    path: str | Path, keypoint_set: KeypointSet, *, include_names: bool = True
) -> Path:
    """Write ``keypoint_set`` as a Kaggle-format ``training.csv``, atomically.

    The columns are Kaggle's 30 coordinates, then ``Image``, then ``Name`` when
    ``include_names`` is true and the set has names. ``include_names=False`` writes exactly
    Kaggle's 31 columns, for tools that expect ``Image`` last. Missing coordinates are empty
    cells, and each coordinate is written with the fewest digits that read back as the same
    float32, so :func:`load_training_csv` returns the same arrays. Returns the written path.
    """
    with_names = include_names and bool(keypoint_set.names)
    header = [*COORDINATE_COLUMNS, IMAGE_COLUMN] + ([NAME_COLUMN] if with_names else [])

    def write(handle: TextIO) -> None:
        handle.write(",".join(header) + "\n")
        flat = keypoint_set.keypoints.reshape(len(keypoint_set), -1)
        for index in range(len(keypoint_set)):
            # Coordinates and pixels never need CSV quoting, and csv.writer would spend most
            # of the time scanning the long pixel string for characters to quote.
            cells = [format_coordinate(value) for value in flat[index]]
            cells.append(format_pixels(keypoint_set.images[index]))
            if with_names:
                cells.append(_quote_csv_field(keypoint_set.names[index]))
            handle.write(",".join(cells) + "\n")

    written = write_atomically(path, write)
    log.debug("wrote %d faces to %s", len(keypoint_set), written)
    return written


def _quote_csv_field(text: str) -> str:
    if any(character in text for character in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


# ---------------------------------------------------------------------------------------------
# Splits


def split_indices(
    keypoint_set: KeypointSet, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into ``(train_idx, val_idx)``, sorted ``int64`` arrays.

    ``fraction`` of the faces, rounded, go to validation. When ``groups`` is set, whole persons
    are assigned (persons in a seeded random order, added while that brings the validation size
    closer to the target), so no person appears in both parts and the size is approximate.
    Without groups the faces are shuffled individually. The same set, fraction and seed give
    the same split. Raises ValueError for a fraction outside 0..1 and DataFormatError when the
    set cannot be split into two non-empty parts.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be at least 0 and below 1, got {fraction}")
    count = len(keypoint_set)
    target = round(fraction * count)
    if fraction > 0 and target == 0:
        target = 1
    rng = np.random.default_rng(seed)

    if target == 0:
        return np.arange(count, dtype=np.int64), np.empty(0, dtype=np.int64)
    if count < 2:
        raise DataFormatError(f"cannot split {count} face(s) into training and validation parts")

    if keypoint_set.groups is None:
        order = rng.permutation(count)
        return np.sort(order[target:]).astype(np.int64), np.sort(order[:target]).astype(np.int64)

    groups = np.asarray(keypoint_set.groups, dtype=str)
    persons, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(persons) < 2:
        raise DataFormatError(
            f"all {count} faces belong to one person ({persons[0]!r}), so a split by person "
            "cannot give both parts faces; add faces of other people"
        )
    chosen = np.zeros(len(persons), dtype=bool)
    validation_size = 0
    for person in rng.permutation(len(persons)):
        if abs(validation_size + sizes[person] - target) < abs(validation_size - target):
            chosen[person] = True
            validation_size += sizes[person]
    if chosen.all():
        # Every person was needed to get close to the target; keep the largest for training.
        chosen[np.argmax(sizes)] = False
    if not chosen.any():
        chosen[np.argmin(sizes)] = True
    in_validation = chosen[inverse]
    return np.flatnonzero(~in_validation).astype(np.int64), np.flatnonzero(in_validation).astype(
        np.int64
    )


# ---------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class KeypointSummary:
    """Label count and coordinate range of one keypoint; the range is NaN when none is labelled."""

    name: str
    labelled: int
    x_min: float
    x_max: float
    y_min: float
    y_max: float


@dataclass(frozen=True)
class ImageSummary:
    """Gray-value statistics of a stack of images.

    Brightness figures are gray values 0-255 over all pixels of all images; ``contrast_median``
    is the median over images of each image's own standard deviation. ``constant_images``
    names images of a single gray value (blank), ``low_contrast_images`` those whose standard
    deviation is above 0 but below :data:`LOW_CONTRAST_STD`, and ``duplicate_images`` counts
    images identical to an earlier one.
    """

    count: int
    brightness_mean: float
    brightness_std: float
    contrast_median: float
    constant_images: tuple[str, ...]
    low_contrast_images: tuple[str, ...]
    duplicate_images: int


@dataclass(frozen=True)
class DataSummary:
    """Statistics of a :class:`KeypointSet`, for ``python -m facekp inspect`` and the app.

    ``complete_rows`` have all 15 keypoints, ``core_only_rows`` exactly the four of
    :data:`facekp.keypoints.CORE_KEYPOINTS` (the pattern of most rows of Kaggle's file),
    ``unlabelled_rows`` none. ``persons`` counts distinct groups, or is None without groups.
    """

    rows: int
    skipped_rows: int
    complete_rows: int
    core_only_rows: int
    unlabelled_rows: int
    persons: int | None
    keypoints: tuple[KeypointSummary, ...]
    images: ImageSummary

    def to_dict(self) -> dict[str, object]:
        """Return the summary as JSON-ready values, with None in place of NaN."""
        return _replace_nan(asdict(self))


# Images whose gray values have a standard deviation below this are reported as low-contrast.
# Real face crops have a standard deviation of 30-70; below 8 a face is hardly visible.
LOW_CONTRAST_STD = 8.0

_SUMMARY_CHUNK = 512


def summarize_keypoint_set(keypoint_set: KeypointSet) -> DataSummary:
    """Compute label counts, coordinate ranges and image statistics of ``keypoint_set``.

    Raises ValueError for an empty set, which has no statistics.
    """
    if len(keypoint_set) == 0:
        raise ValueError("cannot summarize an empty keypoint set")
    labelled = keypoint_set.labelled
    core = np.isin(np.array(KEYPOINT_NAMES), CORE_KEYPOINTS)
    core_only = labelled[:, core].all(axis=1) & ~labelled[:, ~core].any(axis=1)

    keypoint_summaries = []
    for index, name in enumerate(KEYPOINT_NAMES):
        points = keypoint_set.keypoints[labelled[:, index], index]
        if len(points):
            low, high = points.min(axis=0), points.max(axis=0)
        else:
            low = high = np.full(2, np.nan)
        keypoint_summaries.append(
            KeypointSummary(
                name=name,
                labelled=int(labelled[:, index].sum()),
                x_min=float(low[0]),
                x_max=float(high[0]),
                y_min=float(low[1]),
                y_max=float(high[1]),
            )
        )

    names = keypoint_set.names or [str(i + 1) for i in range(len(keypoint_set))]
    return DataSummary(
        rows=len(keypoint_set),
        skipped_rows=len(keypoint_set.skipped_rows),
        complete_rows=int(labelled.all(axis=1).sum()),
        core_only_rows=int(core_only.sum()),
        unlabelled_rows=int((~labelled.any(axis=1)).sum()),
        persons=len(set(keypoint_set.groups)) if keypoint_set.groups is not None else None,
        keypoints=tuple(keypoint_summaries),
        images=summarize_images(keypoint_set.images, names),
    )


def summarize_images(images: np.ndarray, names: Sequence[str]) -> ImageSummary:
    """Compute brightness, contrast, blank and duplicate counts of ``(N, H, W)`` uint8 images.

    ``names`` labels each image in the lists of blank and low-contrast images. Raises
    ValueError for an empty stack.
    """
    if len(images) == 0:
        raise ValueError("cannot summarize an empty stack of images")
    means, stds = _image_statistics(images)
    constant = np.flatnonzero(stds == 0)
    low_contrast = np.flatnonzero((stds > 0) & (stds < LOW_CONTRAST_STD))
    # The variance over all pixels is the mean within-image variance plus the variance of the
    # image means, because every image has the same number of pixels.
    variance = float((stds**2).mean() + means.var())
    digests = {hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images}
    return ImageSummary(
        count=len(images),
        brightness_mean=float(means.mean()),
        brightness_std=math.sqrt(variance),
        contrast_median=float(np.median(stds)),
        constant_images=tuple(str(names[i]) for i in constant),
        low_contrast_images=tuple(str(names[i]) for i in low_contrast),
        duplicate_images=len(images) - len(digests),
    )


def _image_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each image's mean and standard deviation, ``(N,)`` float64 each."""
    means = np.empty(len(images), dtype=np.float64)
    stds = np.empty(len(images), dtype=np.float64)
    pixels_per_image = int(np.prod(images.shape[1:]))
    for start in range(0, len(images), _SUMMARY_CHUNK):
        chunk = images[start : start + _SUMMARY_CHUNK].reshape(-1, pixels_per_image)
        chunk = chunk.astype(np.float64)
        means[start : start + len(chunk)] = chunk.mean(axis=1)
        stds[start : start + len(chunk)] = chunk.std(axis=1)
    return means, stds


def _replace_nan(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _replace_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_nan(item) for item in value]
    return value
