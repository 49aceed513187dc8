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


@pytest.fixture(scope="session", autouse=True)
def facekp_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Point the parsed-CSV cache at a folder of this test session, not the user's cache."""
    folder = tmp_path_factory.mktemp("facekp-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEKP_CACHE_DIR", str(folder))
        yield folder


# Share of rows in the Kaggle-like set that keep all 15 keypoints; the rest keep only
# facekp.keypoints.CORE_KEYPOINTS, as most rows of Kaggle's training.csv do.
KAGGLE_COMPLETE_SHARE = 0.3


@pytest.fixture(scope="session")
def kaggle_like_faces(real_faces):
    """``real_faces`` with Kaggle's missing-label pattern: 30% complete rows, 70% core only.

    Which rows stay complete is drawn with a fixed seed; the other rows get NaN for every
    keypoint outside ``CORE_KEYPOINTS``.
    """
    import numpy as np

    from facekp.data import KeypointSet
    from facekp.keypoints import CORE_KEYPOINTS, KEYPOINT_NAMES

    count = len(real_faces)
    rng = np.random.default_rng(7)
    complete = np.zeros(count, dtype=bool)
    complete[rng.choice(count, size=round(KAGGLE_COMPLETE_SHARE * count), replace=False)] = True
    non_core = [i for i, name in enumerate(KEYPOINT_NAMES) if name not in CORE_KEYPOINTS]
    keypoints = real_faces.keypoints.copy()
    keypoints[np.ix_(~complete, non_core)] = np.nan
    return KeypointSet(
        images=real_faces.images.copy(),
        keypoints=keypoints,
        names=list(real_faces.names),
        groups=list(real_faces.groups),
    )
