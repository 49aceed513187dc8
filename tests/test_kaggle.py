"""Kaggle's test.csv, IdLookupTable.csv and submissions: the real files and broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facekp import kaggle
from facekp.data import write_training_csv
from facekp.errors import DataFormatError
from facekp.kaggle import (
    IdLookup,
    check_submission,
    detect_csv_kind,
    load_id_lookup,
    load_submission,
    load_test_csv,
    write_test_csv,
)
from facekp.keypoints import COORDINATE_COLUMNS


@pytest.fixture(scope="module")
def lookup(kaggle_fkd: Path) -> IdLookup:
    return load_id_lookup(kaggle_fkd / "IdLookupTable.csv")


def lookup_lines(kaggle_fkd: Path, count: int) -> list[str]:
    return (kaggle_fkd / "IdLookupTable.csv").read_text().splitlines()[: count + 1]


# ---------------------------------------------------------------------------------------------
# The real IdLookupTable.csv and SampleSubmission.csv


def test_real_lookup_matches_pandas(kaggle_fkd, lookup):
    frame = pd.read_csv(kaggle_fkd / "IdLookupTable.csv")

    assert len(lookup) == len(frame)
    assert np.array_equal(lookup.row_ids, frame["RowId"].to_numpy())
    assert np.array_equal(lookup.image_ids, frame["ImageId"].to_numpy())
    assert lookup.feature_names == frame["FeatureName"].tolist()
    assert lookup.to_frame().equals(frame[["RowId", "ImageId", "FeatureName"]])


def test_real_lookup_shape(lookup):
    image_ids, per_image = np.unique(lookup.image_ids, return_counts=True)

    assert len(lookup) == 27124
    assert np.array_equal(image_ids, np.arange(1, 1784))
    assert (per_image == 8).sum() == 1190
    assert (per_image == 30).sum() == 556
    assert np.array_equal(lookup.row_ids, np.arange(1, len(lookup) + 1))


def test_lookup_indices(lookup):
    names = lookup.feature_names

    for m in (0, 1, 2, 100, len(lookup) - 1):
        keypoint, axis = lookup.keypoint_index[m], lookup.axis[m]
        assert COORDINATE_COLUMNS[2 * keypoint + axis] == names[m]


def test_real_sample_submission(kaggle_fkd, lookup):
    row_ids, locations = load_submission(kaggle_fkd / "SampleSubmission.csv")

    assert np.array_equal(row_ids, lookup.row_ids)
    assert np.array_equal(locations, np.zeros(len(lookup)))
    assert np.array_equal(check_submission(kaggle_fkd / "SampleSubmission.csv", lookup), locations)


def test_detect_kinds(tmp_path, kaggle_fkd, real_faces):
    training = write_training_csv(tmp_path / "training.csv", real_faces)
    test = write_test_csv(tmp_path / "test.csv", np.arange(1, 4), real_faces.images[:3])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")

    assert detect_csv_kind(training) == kaggle.TRAINING_KIND
    assert detect_csv_kind(test) == kaggle.TEST_KIND
    assert detect_csv_kind(kaggle_fkd / "IdLookupTable.csv") == kaggle.ID_LOOKUP_KIND
    assert detect_csv_kind(kaggle_fkd / "SampleSubmission.csv") == kaggle.SUBMISSION_KIND
    with pytest.raises(DataFormatError, match="matches no Kaggle"):
        detect_csv_kind(other)


# ---------------------------------------------------------------------------------------------
# Broken lookup tables and submissions


@pytest.mark.parametrize(
    ("line", "replacement", "column", "expected"),
    [
        (3, "3,1,left_eye_centre_x", "FeatureName", "'left_eye_centre_x' is not a keypoint"),
        (3, "2,1,right_eye_center_x", "RowId", "RowId 2 already appears in row 2"),
        (3, "3,1,left_eye_center_x", "FeatureName", "ImageId 1 requests left_eye_center_x twice"),
        (3, "3,x,right_eye_center_x", "ImageId", "'x' is not a positive whole number"),
        (3, "0,1,right_eye_center_x", "RowId", "'0' is not a positive whole number"),
        (3, "3,1", None, "has 2 fields"),
    ],
    ids=["feature", "row-id-twice", "feature-twice", "image-id", "row-id-zero", "short"],
)
def test_bad_lookup(tmp_path, kaggle_fkd, line, replacement, column, expected):
    lines = lookup_lines(kaggle_fkd, 10)
    lines[line] = replacement
    path = tmp_path / "IdLookupTable.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataFormatError) as caught:
        load_id_lookup(path)

    assert caught.value.path == str(path)
    assert caught.value.row == line
    assert caught.value.column == column
    assert expected in str(caught.value)
    assert f"file line {line + 1}" in str(caught.value)


def test_lookup_missing_column(tmp_path, kaggle_fkd):
    lines = lookup_lines(kaggle_fkd, 3)
    lines[0] = "RowId,ImageId,Feature,Location"
    path = tmp_path / "IdLookupTable.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataFormatError) as caught:
        load_id_lookup(path)

    assert caught.value.column == "Feature"
    assert "unexpected column" in str(caught.value)


def test_check_image_ids(lookup):
    shuffled = np.random.default_rng(0).permutation(np.arange(1, 1784))

    positions = lookup.check_image_ids(shuffled)

    assert np.array_equal(shuffled[positions], lookup.image_ids)
    with pytest.raises(DataFormatError, match="lacks|lack"):
        lookup.check_image_ids(shuffled[shuffled != 17])


def test_submission_missing_and_extra_rows(tmp_path, lookup):
    frame = pd.DataFrame({"RowId": lookup.row_ids, "Location": 40.0})
    missing = tmp_path / "missing.csv"
    frame.iloc[:-2].to_csv(missing, index=False)
    extra = tmp_path / "extra.csv"
    pd.concat([frame, pd.DataFrame({"RowId": [99999], "Location": [1.0]})]).to_csv(
        extra, index=False
    )

    with pytest.raises(DataFormatError, match="missing RowIds of the lookup table: 2 "):
        check_submission(missing, lookup)
    with pytest.raises(DataFormatError, match="RowIds not in the lookup table: 1 "):
        check_submission(extra, lookup)


def test_submission_order_follows_lookup(tmp_path, lookup):
    frame = pd.DataFrame({"RowId": lookup.row_ids, "Location": lookup.row_ids * 0.001})
    path = tmp_path / "shuffled.csv"
    frame.sample(frac=1.0, random_state=0).to_csv(path, index=False)

    locations = check_submission(path, lookup)

    np.testing.assert_allclose(locations, lookup.row_ids * 0.001)


@pytest.mark.parametrize("value", ["abc", "nan", "inf", ""])
def test_submission_bad_location(tmp_path, value):
    path = tmp_path / "submission.csv"
    path.write_text(f"RowId,Location\n1,30.5\n2,{value}\n3,31\n")

    with pytest.raises(DataFormatError) as caught:
        load_submission(path)

    assert caught.value.row == 2
    assert caught.value.column == "Location"
    assert "not a finite number" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# test.csv


def test_test_csv_round_trip(tmp_path, real_faces):
    image_ids = np.arange(len(real_faces), dtype=np.int64)[::-1] + 1
    path = write_test_csv(tmp_path / "test.csv", image_ids, real_faces.images)

    loaded_ids, images = load_test_csv(path, use_cache=False)

    assert np.array_equal(loaded_ids, image_ids)
    assert np.array_equal(images, real_faces.images)
    assert images.dtype == np.uint8


def test_test_csv_cache(tmp_path, monkeypatch, real_faces):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    path = write_test_csv(tmp_path / "test.csv", np.arange(1, 6), real_faces.images[:5])
    load_test_csv(path)

    monkeypatch.setattr(kaggle, "_parse_test_csv", lambda *args: pytest.fail("parsed again"))
    image_ids, images = load_test_csv(path)

    assert np.array_equal(image_ids, np.arange(1, 6))
    assert np.array_equal(images, real_faces.images[:5])


def test_test_csv_duplicate_id(tmp_path, real_faces):
    path = write_test_csv(tmp_path / "test.csv", np.array([1, 2, 3, 2]), real_faces.images[:4])

    with pytest.raises(DataFormatError) as caught:
        load_test_csv(path, use_cache=False)

    assert caught.value.row == 4
    assert caught.value.column == "ImageId"
    assert "already appears in row 2" in str(caught.value)


def test_test_csv_bad_pixels(tmp_path, real_faces):
    path = write_test_csv(tmp_path / "test.csv", np.arange(1, 4), real_faces.images[:3])
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + " 12"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataFormatError) as caught:
        load_test_csv(path, use_cache=False)

    assert caught.value.row == 2
    assert caught.value.column == "Image"
    assert "found 9217 pixel values" in str(caught.value)


def test_test_csv_wrong_header(tmp_path, real_faces):
    training = write_training_csv(tmp_path / "training.csv", real_faces)

    with pytest.raises(DataFormatError) as caught:
        load_test_csv(training, use_cache=False)

    assert caught.value.column == COORDINATE_COLUMNS[0]
    assert "unexpected column" in str(caught.value)
