"""Kaggle's test-time files: ``test.csv``, ``IdLookupTable.csv``, ``SampleSubmission.csv``.

``test.csv`` has ``ImageId,Image``: a positive integer id and 9216 space-separated gray values
of a 96x96 face. ``IdLookupTable.csv`` has ``RowId,ImageId,FeatureName,Location`` and requests
one coordinate (a name from :data:`facekp.keypoints.COORDINATE_COLUMNS`) of one test image per
row; Kaggle's own file leaves the Location field out of every row. A submission (and
``SampleSubmission.csv``) has ``RowId,Location``: the requested coordinate for each RowId.

All loaders are strict: the first bad row raises :class:`DataFormatError` naming the file, the
data row (counted from 1 after the header; the file line is in the message) and the column.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from facekp._csvio import (
    RowValueError,
    Source,
    describe_invalid_bytes,
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
from facekp.data import IMAGE_COLUMN
from facekp.errors import DataFormatError
from facekp.keypoints import COORDINATE_COLUMNS, FACE_SIZE

log = logging.getLogger(__name__)

IMAGE_ID_COLUMN = "ImageId"
ROW_ID_COLUMN = "RowId"
FEATURE_COLUMN = "FeatureName"
LOCATION_COLUMN = "Location"

TEST_COLUMNS = (IMAGE_ID_COLUMN, IMAGE_COLUMN)
ID_LOOKUP_COLUMNS = (ROW_ID_COLUMN, IMAGE_ID_COLUMN, FEATURE_COLUMN, LOCATION_COLUMN)
SUBMISSION_COLUMNS = (ROW_ID_COLUMN, LOCATION_COLUMN)

# The kinds of file that detect_csv_kind distinguishes.
TRAINING_KIND = "training"
TEST_KIND = "test"
ID_LOOKUP_KIND = "id_lookup"
SUBMISSION_KIND = "submission"

_COORDINATE_INDEX = {name: index for index, name in enumerate(COORDINATE_COLUMNS)}


# ---------------------------------------------------------------------------------------------
# Recognising a file by its header


def detect_csv_kind(source: Source, *, name: str | None = None) -> str:
    """Return which Kaggle file ``source`` is, judged by its header line.

    Returns :data:`TRAINING_KIND` (a header with any keypoint column, or Image without
    ImageId), :data:`TEST_KIND` (ImageId and Image), :data:`ID_LOOKUP_KIND` (RowId and
    FeatureName) or :data:`SUBMISSION_KIND` (RowId and Location). Raises
    :class:`DataFormatError` for an empty or binary file or a header that matches none.
    """
    with open_source(source, name) as opened:
        header = read_header(read_records(opened.stream, opened.label), opened.label)
    columns = set(header)
    if columns & set(COORDINATE_COLUMNS):
        return TRAINING_KIND
    if IMAGE_COLUMN in columns:
        return TEST_KIND if IMAGE_ID_COLUMN in columns else TRAINING_KIND
    if ROW_ID_COLUMN in columns and FEATURE_COLUMN in columns:
        return ID_LOOKUP_KIND
    if ROW_ID_COLUMN in columns and LOCATION_COLUMN in columns:
        return SUBMISSION_KIND
    header_excerpt = ", ".join(header[:6]) + (", ..." if len(header) > 6 else "")
    raise DataFormatError(
        f"the header ({header_excerpt}) matches no Kaggle facial keypoints file; expected "
        f"training.csv (keypoint columns and {IMAGE_COLUMN}), "
        f"test.csv ({', '.join(TEST_COLUMNS)}), "
        f"IdLookupTable.csv ({', '.join(ID_LOOKUP_COLUMNS)}) or a submission "
        f"({', '.join(SUBMISSION_COLUMNS)})",
        path=opened.label,
    )


def _column_positions(
    header: list[str], required: tuple[str, ...], optional: tuple[str, ...], label: str, what: str
) -> dict[str, int]:
    """Map each column to its position; raise naming a missing, repeated or unexpected column."""
    positions: dict[str, int] = {}
    for position, column in enumerate(header):
        if column in positions:
            raise DataFormatError(
                "this column appears twice in the header", path=label, column=column
            )
        if column not in required and column not in optional:
            raise DataFormatError(
                f"unexpected column in the header; {what} has the columns "
                f"{', '.join(required + optional)}",
                path=label,
                column=column,
            )
        positions[column] = position
    for column in required:
        if column not in positions:
            raise DataFormatError(
                f"missing column in the header; {what} has the columns "
                f"{', '.join(required + optional)}",
                path=label,
                column=column,
            )
    return positions


def _row_error(label: str, row: int, line: int, error: RowValueError) -> DataFormatError:
    return DataFormatError(
        f"{error.message} (file line {line})", path=label, row=row, column=error.column
    )


def _parse_new_row_id(cell: str, first_row_of: dict[int, int]) -> int:
    """Parse a RowId cell and raise :class:`RowValueError` if an earlier row has the same one."""
    row_id = _parse_positive_int(cell, ROW_ID_COLUMN)
    if row_id in first_row_of:
        raise RowValueError(
            f"RowId {row_id} already appears in row {first_row_of[row_id]}", ROW_ID_COLUMN
        )
    return row_id


def _parse_positive_int(cell: str, column: str) -> int:
    text = cell.strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        if has_invalid_bytes(text):
            raise RowValueError(describe_invalid_bytes(text), column)
        raise RowValueError(
            f"{text[:30]!r} is not a positive whole number; expected an id 1, 2, ...", column
        )
    return int(text)


# ---------------------------------------------------------------------------------------------
# test.csv


def load_test_csv(
    source: Source, *, use_cache: bool = True, name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load Kaggle's ``test.csv`` as ``(image_ids (N,) int64, images (N, 96, 96) uint8)``.

    Ids must be unique positive integers; rows keep the file's order. ``use_cache`` and
    ``name`` work as in :func:`facekp.data.load_training_csv`.
    """
    with open_source(source, name) as opened:
        if use_cache:
            cached = load_cached("test", opened.identity, {}, {"image_ids": "i", "images": "u"})
            if cached is not None and _test_arrays_fit(cached):
                return cached["image_ids"], cached["images"]
        image_ids, images = _parse_test_csv(opened.stream, opened.label)
        if use_cache:
            store_cached("test", opened.identity, {}, {"image_ids": image_ids, "images": images})
    return image_ids, images


def _test_arrays_fit(arrays: dict[str, np.ndarray]) -> bool:
    images, image_ids = arrays["images"], arrays["image_ids"]
    return images.shape[1:] == (FACE_SIZE, FACE_SIZE) and image_ids.shape == (len(images),)


def _parse_test_csv(stream, label: str) -> tuple[np.ndarray, np.ndarray]:
    records = read_records(stream, label)
    header = read_header(records, label)
    columns = _column_positions(header, TEST_COLUMNS, (), label, "a Kaggle test.csv")

    image_ids: list[int] = []
    images: list[np.ndarray] = []
    first_row_of: dict[int, int] = {}
    row = 0
    for row, (line, fields) in enumerate(records, start=1):
        try:
            if len(fields) != len(header):
                raise RowValueError(
                    f"has {len(fields)} fields; expected {len(header)}, one per header column", None
                )
            image_id = _parse_positive_int(fields[columns[IMAGE_ID_COLUMN]], IMAGE_ID_COLUMN)
            if image_id in first_row_of:
                raise RowValueError(
                    f"ImageId {image_id} already appears in row {first_row_of[image_id]}; "
                    "each image needs its own id",
                    IMAGE_ID_COLUMN,
                )
            image = parse_pixels(fields[columns[IMAGE_COLUMN]], IMAGE_COLUMN)
        except RowValueError as error:
            raise _row_error(label, row, line, error) from None
        first_row_of[image_id] = row
        image_ids.append(image_id)
        images.append(image)

    if row == 0:
        raise DataFormatError("has a header but no data rows", path=label)
    log.debug("parsed %d test images from %s", len(images), label)
    return np.array(image_ids, dtype=np.int64), np.stack(images)


def write_test_csv(path: str | Path, image_ids: np.ndarray, images: np.ndarray) -> Path:
    """Write ``(N,)`` ids and ``(N, 96, 96)`` uint8 images as a Kaggle ``test.csv``, atomically."""
    image_ids = np.asarray(image_ids)
    if len(image_ids) != len(images):
        raise ValueError(f"got {len(image_ids)} image ids for {len(images)} images")

    def write(handle: TextIO) -> None:
        handle.write(",".join(TEST_COLUMNS) + "\n")
        for image_id, image in zip(image_ids.tolist(), images, strict=True):
            handle.write(f"{int(image_id)},{format_pixels(image)}\n")

    return write_atomically(path, write)


# ---------------------------------------------------------------------------------------------
# IdLookupTable.csv


@dataclass(frozen=True)
class IdLookup:
    """The coordinates a submission must give, one per row of ``IdLookupTable.csv``.

    ``row_ids``, ``image_ids`` and ``coordinate_index`` are ``(M,)`` int64 arrays in file
    order. ``coordinate_index`` indexes :data:`facekp.keypoints.COORDINATE_COLUMNS`, so a
    prediction array ``(N, 15, 2)`` gives row ``m`` as
    ``predictions[n, keypoint_index[m], axis[m]]`` with ``n`` the position of ``image_ids[m]``.
    """

    row_ids: np.ndarray
    image_ids: np.ndarray
    coordinate_index: np.ndarray

    def __len__(self) -> int:
        return len(self.row_ids)

    @property
    def feature_names(self) -> list[str]:
        """The FeatureName of each row."""
        return [COORDINATE_COLUMNS[index] for index in self.coordinate_index.tolist()]

    @property
    def keypoint_index(self) -> np.ndarray:
        """``(M,)`` index into :data:`facekp.keypoints.KEYPOINT_NAMES` of each row."""
        return self.coordinate_index // 2

    @property
    def axis(self) -> np.ndarray:
        """``(M,)`` 0 where a row requests ``x``, 1 where it requests ``y``."""
        return self.coordinate_index % 2

    def to_frame(self) -> pd.DataFrame:
        """Return the table as a DataFrame with columns RowId, ImageId and FeatureName."""
        return pd.DataFrame(
            {
                ROW_ID_COLUMN: self.row_ids,
                IMAGE_ID_COLUMN: self.image_ids,
                FEATURE_COLUMN: self.feature_names,
            }
        )

    def check_image_ids(self, image_ids: np.ndarray) -> np.ndarray:
        """Return, for each row, the position of its ImageId in ``image_ids`` (``(M,)`` int64).

        Raises :class:`DataFormatError` listing ImageIds that the table requests but
        ``image_ids`` (for example those of a loaded test.csv) lacks.
        """
        available = np.asarray(image_ids, dtype=np.int64)
        order = np.argsort(available, kind="stable")
        sorted_ids = available[order]
        slots = np.clip(np.searchsorted(sorted_ids, self.image_ids), 0, max(len(sorted_ids) - 1, 0))
        found = (
            (sorted_ids[slots] == self.image_ids) if len(sorted_ids) else np.zeros(len(self), bool)
        )
        if not found.all():
            missing = np.unique(self.image_ids[~found])
            listed = ", ".join(str(value) for value in missing[:10].tolist())
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise DataFormatError(
                f"the lookup table requests {len(missing)} ImageIds that the test images lack "
                f"({listed}{more}); use the test.csv that belongs to this IdLookupTable.csv"
            )
        return order[slots].astype(np.int64)


def load_id_lookup(source: Source, *, name: str | None = None) -> IdLookup:
    """Load and validate Kaggle's ``IdLookupTable.csv``.

    RowIds must be unique positive integers, ImageIds positive integers, FeatureName one of
    the 30 coordinate columns, and no image may request the same coordinate twice. The
    Location column may be missing, empty or filled; its values are ignored.
    """
    with open_source(source, name) as opened:
        records = read_records(opened.stream, opened.label)
        header = read_header(records, opened.label)
        columns = _column_positions(
            header,
            ID_LOOKUP_COLUMNS[:3],
            (LOCATION_COLUMN,),
            opened.label,
            "Kaggle's IdLookupTable.csv",
        )
        row_ids, image_ids, coordinates = _parse_id_lookup_rows(
            records, header, columns, opened.label
        )
    return IdLookup(row_ids=row_ids, image_ids=image_ids, coordinate_index=coordinates)


def _parse_id_lookup_rows(
    records: Iterator[tuple[int, list[str]]], header: list[str], columns: dict[str, int], label: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    required = 1 + max(columns[column] for column in ID_LOOKUP_COLUMNS[:3])
    row_ids: list[int] = []
    image_ids: list[int] = []
    coordinates: list[int] = []
    first_row_of: dict[int, int] = {}
    requested: dict[tuple[int, int], int] = {}
    row = 0
    for row, (line, fields) in enumerate(records, start=1):
        try:
            # Kaggle's file leaves the empty Location field out, so rows may be one short.
            if not required <= len(fields) <= len(header):
                raise RowValueError(
                    f"has {len(fields)} fields; expected {len(header)}, one per header column",
                    None,
                )
            row_id = _parse_new_row_id(fields[columns[ROW_ID_COLUMN]], first_row_of)
            image_id = _parse_positive_int(fields[columns[IMAGE_ID_COLUMN]], IMAGE_ID_COLUMN)
            feature = fields[columns[FEATURE_COLUMN]].strip()
            if feature not in _COORDINATE_INDEX:
                raise RowValueError(
                    f"{feature[:40]!r} is not a keypoint coordinate; expected a column name of "
                    f"Kaggle's training.csv such as {COORDINATE_COLUMNS[0]!r}",
                    FEATURE_COLUMN,
                )
            coordinate = _COORDINATE_INDEX[feature]
            if (image_id, coordinate) in requested:
                raise RowValueError(
                    f"ImageId {image_id} requests {feature} twice (also in row "
                    f"{requested[(image_id, coordinate)]})",
                    FEATURE_COLUMN,
                )
        except RowValueError as error:
            raise _row_error(label, row, line, error) from None
        first_row_of[row_id] = row
        requested[(image_id, coordinate)] = row
        row_ids.append(row_id)
        image_ids.append(image_id)
        coordinates.append(coordinate)

    if row == 0:
        raise DataFormatError("has a header but no data rows", path=label)
    return (
        np.array(row_ids, dtype=np.int64),
        np.array(image_ids, dtype=np.int64),
        np.array(coordinates, dtype=np.int64),
    )


# ---------------------------------------------------------------------------------------------
# Submissions and SampleSubmission.csv


def load_submission(source: Source, *, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a submission or ``SampleSubmission.csv`` as ``(row_ids, locations)``.

    ``row_ids`` is ``(M,)`` int64, unique and positive; ``locations`` is ``(M,)`` float64 and
    finite. Rows keep the file's order.
    """
    with open_source(source, name) as opened:
        records = read_records(opened.stream, opened.label)
        header = read_header(records, opened.label)
        columns = _column_positions(
            header, SUBMISSION_COLUMNS, (), opened.label, "a Kaggle submission"
        )
        row_ids: list[int] = []
        locations: list[float] = []
        first_row_of: dict[int, int] = {}
        row = 0
        for row, (line, fields) in enumerate(records, start=1):
            try:
                if len(fields) != len(header):
                    raise RowValueError(
                        f"has {len(fields)} fields; expected {len(header)}, one per header column",
                        None,
                    )
                row_id = _parse_new_row_id(fields[columns[ROW_ID_COLUMN]], first_row_of)
                location = _parse_location(fields[columns[LOCATION_COLUMN]])
            except RowValueError as error:
                raise _row_error(opened.label, row, line, error) from None
            first_row_of[row_id] = row
            row_ids.append(row_id)
            locations.append(location)
        if row == 0:
            raise DataFormatError("has a header but no data rows", path=opened.label)
    return np.array(row_ids, dtype=np.int64), np.array(locations, dtype=np.float64)


def _parse_location(cell: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RowValueError(
            f"{text[:30]!r} is not a finite number; expected the predicted coordinate in pixels",
            LOCATION_COLUMN,
        )
    return value


def check_submission(source: Source, lookup: IdLookup, *, name: str | None = None) -> np.ndarray:
    """Load a submission and check that it covers exactly the rows of ``lookup``.

    Returns the ``(M,)`` float64 locations in the order of ``lookup.row_ids``. Raises
    :class:`DataFormatError` naming RowIds that are missing or not in the lookup table.
    """
    row_ids, locations = load_submission(source, name=name)
    if name is None and isinstance(source, (str, os.PathLike)):
        name = str(source)
    label = name or "submission"
    expected = lookup.row_ids
    missing = np.setdiff1d(expected, row_ids)
    extra = np.setdiff1d(row_ids, expected)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(f"missing RowIds of the lookup table: {_count_and_first(missing)}")
        if len(extra):
            parts.append(f"RowIds not in the lookup table: {_count_and_first(extra)}")
        raise DataFormatError(
            "; ".join(parts) + "; write one row per RowId of IdLookupTable.csv", path=label
        )
    order = np.argsort(row_ids)
    return locations[order[np.searchsorted(row_ids[order], expected)]]


def _count_and_first(row_ids: np.ndarray) -> str:
    return f"{len(row_ids)} (the first is {row_ids[0]})"


__all__ = [
    "FEATURE_COLUMN",
    "ID_LOOKUP_COLUMNS",
    "ID_LOOKUP_KIND",
    "IMAGE_ID_COLUMN",
    "LOCATION_COLUMN",
    "ROW_ID_COLUMN",
    "SUBMISSION_COLUMNS",
    "SUBMISSION_KIND",
    "TEST_COLUMNS",
    "TEST_KIND",
    "TRAINING_KIND",
    "IdLookup",
    "check_submission",
    "detect_csv_kind",
    "load_id_lookup",
    "load_submission",
    "load_test_csv",
    "write_test_csv",
]
