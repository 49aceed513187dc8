"""Shared fixtures: the read-only real data that sits beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEKP_TEST_DATA", REPO.parent / "shared" / "data"))
YTF68 = DATA / "ytf68"
KAGGLE_FKD = DATA / "kaggle-fkd"


@pytest.fixture(scope="session")
def ytf68() -> Path:
    if not (YTF68 / "test_frames_keypoints.csv").is_file():
        pytest.fail(f"the ytf68 test data is missing under {YTF68}; set FACEKP_TEST_DATA")
    return YTF68


@pytest.fixture(scope="session")
def kaggle_fkd() -> Path:
    if not (KAGGLE_FKD / "IdLookupTable.csv").is_file():
        pytest.fail(f"the Kaggle lookup files are missing under {KAGGLE_FKD}; set FACEKP_TEST_DATA")
    return KAGGLE_FKD


# Every 16th row of the 770 ytf68 test photos: about 48 faces of many different people.
REAL_FACES_STEP = 16


@pytest.fixture(scope="session")
def real_faces(ytf68: Path):
    """About 48 real ytf68 test faces converted with the default detector and framing.

    A ``facekp.data.KeypointSet`` with 96x96 uint8 images, ``(N, 15, 2)`` crop-pixel
    keypoints, image file names and person groups. Converted afresh from the photos,
    so a change in conversion shows up here.
    """
    from facekp.convert import convert_landmarks
    from facekp.landmarks import read_landmark_csv

    landmarks = read_landmark_csv(ytf68 / "test_frames_keypoints.csv")
    rows = list(range(0, len(landmarks), REAL_FACES_STEP))
    conversion = convert_landmarks(landmarks.subset(rows), ytf68 / "test")
    return conversion.faces
