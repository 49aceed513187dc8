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
