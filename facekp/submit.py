"""Kaggle submissions: predict the test faces and fill in each row of ``IdLookupTable.csv``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TextIO

import numpy as np

from facekp._csvio import write_atomically
from facekp.checkpoint import KeypointModel
from facekp.errors import DataFormatError, FacekpError
from facekp.kaggle import LOCATION_COLUMN, ROW_ID_COLUMN, IdLookup
from facekp.keypoints import FACE_SIZE

log = logging.getLogger(__name__)

# Predictions are clipped to the first and last pixel centres of the 96x96 face.
LOCATION_MIN = 0.0
LOCATION_MAX = float(FACE_SIZE - 1)


def submission_locations(
    keypoint_model: KeypointModel,
    image_ids: np.ndarray,
    images: np.ndarray,
    lookup: IdLookup,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict the faces and return ``(row_ids, locations)`` sorted by RowId.

    ``image_ids`` is ``(N,)`` and ``images`` ``(N, 96, 96)`` uint8, as from
    :func:`facekp.kaggle.load_test_csv`. Only faces that the lookup table requests are
    predicted. Locations are pixels of the face, clipped to 0..95. Raises
    :class:`DataFormatError` when the table asks for an ImageId that ``image_ids`` lacks.
    """
    if len(lookup) == 0:
        raise DataFormatError("the lookup table has no rows, so there is nothing to submit")
    positions = lookup.check_image_ids(image_ids)
    needed, row_face = np.unique(positions, return_inverse=True)
    log.info("predicting %d test faces for %d lookup rows", len(needed), len(lookup))
    predictions = keypoint_model.predict(images[needed])  # (F, 15, 2)

    locations = predictions[row_face, lookup.keypoint_index, lookup.axis].astype(np.float64)
    locations = np.clip(locations, LOCATION_MIN, LOCATION_MAX)
    order = np.argsort(lookup.row_ids, kind="stable")
    return lookup.row_ids[order], locations[order]


def write_submission(path: str | Path, row_ids: np.ndarray, locations: np.ndarray) -> Path:
    """Write ``RowId,Location`` rows to ``path`` atomically, 4 decimals per location."""
    if len(row_ids) != len(locations):
        raise ValueError(f"got {len(row_ids)} RowIds for {len(locations)} locations")

    def write(handle: TextIO) -> None:
        handle.write(f"{ROW_ID_COLUMN},{LOCATION_COLUMN}\n")
        for row_id, location in zip(row_ids.tolist(), locations.tolist(), strict=True):
            handle.write(f"{int(row_id)},{location:.4f}\n")

    return write_atomically(path, write)


def check_output_path(out: str | Path, inputs: dict[str, str | Path]) -> None:
    """Raise :class:`FacekpError` when ``out`` is the same file as one of ``inputs``.

    ``inputs`` maps a label for messages (such as ``"--test"``) to a path that is read before
    ``out`` is written. Existing files are compared with ``os.path.samefile``, which also
    catches links and other spellings of one path; otherwise the resolved paths are compared.
    """
    for label, path in inputs.items():
        if _same_file(Path(out), Path(path)):
            raise FacekpError(
                f"the output {out} is the same file as the input {label} {path}, which writing "
                "would overwrite; choose another output file, such as submission.csv"
            )


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist yet
        return first.resolve() == second.resolve()
