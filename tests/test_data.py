"""Kaggle-format training files: loading, validation, caching, writing and splits, on real faces."""

from __future__ import annotations

import csv
import io
import logging
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekp import data
from facekp.data import (
    KeypointSet,
    load_training_csv,
    person_from_filename,
    split_indices,
    summarize_keypoint_set,
    write_training_csv,
)
from facekp.errors import DataFormatError
from facekp.keypoints import COORDINATE_COLUMNS, CORE_KEYPOINTS, KEYPOINT_NAMES


def kaggle_rows(faces: KeypointSet, with_names: bool = False) -> list[list[str]]:
    """Format ``faces`` the way Kaggle's file does, independently of facekp's writer."""
    header = [*COORDINATE_COLUMNS, "Image"] + (["Name"] if with_names else [])
    rows = [header]
    for index in range(len(faces)):
        cells = ["" if np.isnan(v) else f"{v:.10f}" for v in faces.keypoints[index].reshape(-1)]
        cells.append(" ".join(str(v) for v in faces.images[index].reshape(-1).tolist()))
        if with_names:
            cells.append(faces.names[index])
        rows.append(cells)
    return rows


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return path


def assert_same_faces(loaded: KeypointSet, expected: KeypointSet, atol: float = 0.0) -> None:
    assert np.array_equal(loaded.images, expected.images)
    assert loaded.images.dtype == np.uint8
    assert loaded.keypoints.dtype == np.float32
    assert np.array_equal(np.isnan(loaded.keypoints), np.isnan(expected.keypoints))
    np.testing.assert_allclose(loaded.keypoints, expected.keypoints, atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Loading good files


def test_load_kaggle_pattern(tmp_path, kaggle_like_faces):
    path = write_rows(tmp_path / "training.csv", kaggle_rows(kaggle_like_faces))

    loaded = load_training_csv(path, use_cache=False)

    assert len(loaded) == len(kaggle_like_faces)
    assert_same_faces(loaded, kaggle_like_faces, atol=1e-5)
    assert loaded.names == [str(row) for row in range(1, len(loaded) + 1)]
    assert loaded.groups is None
    assert loaded.skipped_rows == ()


def test_load_label_counts(tmp_path, kaggle_like_faces):
    path = write_rows(tmp_path / "training.csv", kaggle_rows(kaggle_like_faces))

    labelled = load_training_csv(path, use_cache=False).labelled

    complete = int(np.round(0.3 * len(kaggle_like_faces)))
    for index, name in enumerate(KEYPOINT_NAMES):
        expected = len(kaggle_like_faces) if name in CORE_KEYPOINTS else complete
        assert labelled[:, index].sum() == expected, name
    assert labelled.all(axis=1).sum() == complete


def test_load_name_column_gives_groups(tmp_path, real_faces):
    path = write_rows(tmp_path / "named.csv", kaggle_rows(real_faces, with_names=True))

    loaded = load_training_csv(path, use_cache=False)

    assert loaded.names == real_faces.names
    assert loaded.groups == [person_from_filename(name) for name in real_faces.names]
    assert loaded.groups == real_faces.groups


def test_load_columns_in_any_order(tmp_path, real_faces):
    rows = kaggle_rows(real_faces)
    order = [len(rows[0]) - 1, *range(len(rows[0]) - 1)][::-1]
    path = write_rows(tmp_path / "reordered.csv", [[row[i] for i in order] for row in rows])

    assert_same_faces(load_training_csv(path, use_cache=False), real_faces, atol=1e-5)


def test_load_bytes_and_file_object(tmp_path, kaggle_like_faces):
    path = write_rows(tmp_path / "training.csv", kaggle_rows(kaggle_like_faces))
    content = path.read_bytes()

    from_bytes = load_training_csv(content, use_cache=False, name="upload.csv")
    from_file = load_training_csv(io.BytesIO(content), use_cache=False)

    assert_same_faces(from_bytes, kaggle_like_faces, atol=1e-5)
    assert_same_faces(from_file, kaggle_like_faces, atol=1e-5)


def test_loaded_set_pickles(tmp_path, kaggle_like_faces):
    path = write_rows(tmp_path / "bad.csv", corrupt_rows(kaggle_rows(kaggle_like_faces)))
    loaded = load_training_csv(path, skip_bad_rows=True, use_cache=False)

    restored = pickle.loads(pickle.dumps(loaded))

    assert_same_faces(restored, loaded)
    assert restored.names == loaded.names
    assert restored.skipped_rows == loaded.skipped_rows


def test_load_crlf_and_bom(tmp_path, real_faces):
    text = "\r\n".join(",".join(row) for row in kaggle_rows(real_faces)) + "\r\n"
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    assert_same_faces(load_training_csv(path, use_cache=False), real_faces, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Writing


def test_write_round_trip_exact(tmp_path, kaggle_like_faces):
    path = write_training_csv(tmp_path / "out.csv", kaggle_like_faces)

    loaded = load_training_csv(path, use_cache=False)

    assert_same_faces(loaded, kaggle_like_faces)
    assert loaded.names == kaggle_like_faces.names
    assert loaded.groups == kaggle_like_faces.groups


def test_write_kaggle_columns(tmp_path, real_faces):
    named = write_training_csv(tmp_path / "named.csv", real_faces)
    plain = write_training_csv(tmp_path / "plain.csv", real_faces, include_names=False)

    with named.open(newline="") as handle:
        named_header = next(csv.reader(handle))
    with plain.open(newline="") as handle:
        plain_header = next(csv.reader(handle))

    assert named_header == [*COORDINATE_COLUMNS, "Image", "Name"]
    assert plain_header == [*COORDINATE_COLUMNS, "Image"]


def test_write_names_needing_quotes(tmp_path, real_faces):
    faces = real_faces.subset(range(3))
    faces.names[0] = 'Smith, "Jo"_3.jpg'
    faces.names[1] = " leading space_1.jpg"

    loaded = load_training_csv(write_training_csv(tmp_path / "quoted.csv", faces), use_cache=False)

    assert loaded.names == faces.names


def test_write_failure_keeps_old_file(tmp_path, real_faces):
    path = write_training_csv(tmp_path / "keep.csv", real_faces)
    before = path.read_bytes()
    broken = KeypointSet(
        images=real_faces.images,
        keypoints=real_faces.keypoints,
        names=[None] * len(real_faces),  # not text: writing fails part-way
    )

    with pytest.raises(TypeError):
        write_training_csv(path, broken)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv"]


# ---------------------------------------------------------------------------------------------
# Bad files: every message names the file and, where it applies, the row and column


@pytest.fixture()
def good_rows(real_faces) -> list[list[str]]:
    return kaggle_rows(real_faces.subset(range(6)))


def expect_error(path: Path, row: int | None = None, column: str | None = None) -> DataFormatError:
    with pytest.raises(DataFormatError) as caught:
        load_training_csv(path, use_cache=False)
    error = caught.value
    message = str(error)
    assert error.path == str(path)
    assert str(path) in message
    assert error.row == row
    assert error.column == column
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert repr(column) in message
    return error


def test_missing_column(tmp_path, good_rows):
    drop = good_rows[0].index("nose_tip_y")
    path = write_rows(tmp_path / "bad.csv", [row[:drop] + row[drop + 1 :] for row in good_rows])

    error = expect_error(path, column="nose_tip_y")

    assert "missing column" in str(error)


def test_missing_image_column(tmp_path, good_rows):
    path = write_rows(tmp_path / "bad.csv", [row[:-1] for row in good_rows])

    expect_error(path, column="Image")


def test_misspelt_column(tmp_path, good_rows):
    good_rows[0][0] = "left_eye_centre_x"
    path = write_rows(tmp_path / "bad.csv", good_rows)

    error = expect_error(path, column="left_eye_centre_x")

    assert "unexpected column" in str(error)
    assert "did you mean 'left_eye_center_x'" in str(error)


def test_index_column_from_pandas(tmp_path, good_rows):
    rows = [[""] + good_rows[0]] + [[str(i)] + row for i, row in enumerate(good_rows[1:])]
    path = write_rows(tmp_path / "bad.csv", rows)

    error = expect_error(path, column="")

    assert "index=False" in str(error)


def test_repeated_column(tmp_path, good_rows):
    rows = [row + [row[0]] for row in good_rows]
    path = write_rows(tmp_path / "bad.csv", rows)

    error = expect_error(path, column="left_eye_center_x")

    assert "twice" in str(error)


def test_no_header_line(tmp_path, good_rows):
    path = write_rows(tmp_path / "bad.csv", good_rows[1:])

    error = expect_error(path)

    assert "header" in str(error)


def test_test_csv_given_as_training(tmp_path, real_faces):
    rows = [["ImageId", "Image"]] + [
        [str(i + 1), " ".join(map(str, image.reshape(-1).tolist()))]
        for i, image in enumerate(real_faces.images[:3])
    ]
    path = write_rows(tmp_path / "test.csv", rows)

    error = expect_error(path)

    assert "Kaggle test.csv (ImageId, Image) without keypoints" in str(error)
    assert "need a training.csv with the 30 keypoint columns" in str(error)
    assert "load_test_csv" not in str(error)


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (lambda values: values[:-1], "found 9215 pixel values; expected 9216"),
        (lambda values: values + ["7"], "found 9217 pixel values; expected 9216"),
        (lambda values: values[:100] + ["abc"] + values[101:], "pixel value 101 is 'abc'"),
        (lambda values: values[:5] + ["256"] + values[6:], "pixel value 6 is '256'"),
        (lambda values: values[:5] + ["-1"] + values[6:], "pixel value 6 is '-1'"),
        (lambda values: values[:5] + ["3.5"] + values[6:], "pixel value 6 is '3.5'"),
        (lambda values: [], "found 0 pixel values"),
    ],
    ids=["short", "long", "word", "above-255", "negative", "fraction", "empty"],
)
def test_bad_pixel_string(tmp_path, good_rows, pixels, expected):
    good_rows[4][-1] = " ".join(pixels(good_rows[4][-1].split()))
    path = write_rows(tmp_path / "bad.csv", good_rows)

    error = expect_error(path, row=4, column="Image")

    assert expected in str(error)
    assert "file line 5" in str(error)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("nose_tip_x", "abc", "'abc' is not a number"),
        ("nose_tip_y", "12,5", "has 32 fields"),
        ("left_eye_center_x", "120.5", "120.5 is outside the 96x96 face"),
        ("mouth_center_bottom_lip_y", "-3", "-3 is outside the 96x96 face"),
        ("right_eye_center_y", "inf", "inf is outside the 96x96 face"),
    ],
    ids=["word", "comma", "too-large", "negative", "infinite"],
)
def test_bad_coordinate(tmp_path, good_rows, column, value, expected):
    good_rows[2][good_rows[0].index(column)] = value
    text = "\n".join(",".join(row) for row in good_rows) + "\n"  # unquoted, as Kaggle writes
    path = tmp_path / "bad.csv"
    path.write_text(text)

    with pytest.raises(DataFormatError) as caught:
        load_training_csv(path, use_cache=False)

    assert caught.value.row == 2
    assert caught.value.column == (None if value == "12,5" else column)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_coordinate_tolerance_at_edge(tmp_path, good_rows):
    good_rows[1][0] = str(95.5 + data.KEYPOINT_MARGIN)
    good_rows[2][1] = str(-0.5 - data.KEYPOINT_MARGIN)
    path = write_rows(tmp_path / "edge.csv", good_rows)

    loaded = load_training_csv(path, use_cache=False)

    assert loaded.keypoints[0, 0, 0] == pytest.approx(95.5 + data.KEYPOINT_MARGIN)
    assert loaded.keypoints[1, 0, 1] == pytest.approx(-0.5 - data.KEYPOINT_MARGIN)


def test_keypoint_with_one_coordinate(tmp_path, good_rows):
    good_rows[3][good_rows[0].index("nose_tip_y")] = ""
    path = write_rows(tmp_path / "bad.csv", good_rows)

    error = expect_error(path, row=3, column="nose_tip_y")

    assert "is empty but nose_tip_x is set" in str(error)


def test_keypoint_with_nan_coordinate(tmp_path, good_rows):
    good_rows[3][good_rows[0].index("nose_tip_x")] = "nan"
    path = write_rows(tmp_path / "bad.csv", good_rows)

    error = expect_error(path, row=3, column="nose_tip_x")

    assert "is NaN (not a number) but nose_tip_y is set" in str(error)
    assert "is empty" not in str(error)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    assert "empty" in str(expect_error(path))


def test_blank_lines_only(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n\n\n")

    assert "blank lines" in str(expect_error(path))


def test_header_without_rows(tmp_path, good_rows):
    path = write_rows(tmp_path / "header.csv", good_rows[:1])

    assert "no data rows" in str(expect_error(path))


def test_png_renamed_to_csv(tmp_path, real_faces):
    ok, encoded = cv2.imencode(".png", real_faces.images[0])
    path = tmp_path / "face.csv"
    path.write_bytes(encoded.tobytes())

    assert "PNG image" in str(expect_error(path))


def test_zip_renamed_to_csv(tmp_path, good_rows):
    inner = write_rows(tmp_path / "training.csv", good_rows)
    path = tmp_path / "training.zip.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(inner, "training.csv")

    assert "ZIP archive" in str(expect_error(path))


def test_utf16_file(tmp_path, good_rows):
    path = tmp_path / "utf16.csv"
    path.write_text("\n".join(",".join(row) for row in good_rows[:3]), encoding="utf-16")

    assert "UTF-16" in str(expect_error(path))


def test_latin1_name(tmp_path, real_faces):
    rows = kaggle_rows(real_faces.subset(range(4)), with_names=True)
    rows[2][-1] = "Jos\xe9_Mar\xeda_01.jpg"
    path = tmp_path / "latin1.csv"
    path.write_bytes("\n".join(",".join(row) for row in rows).encode("latin-1"))

    error = expect_error(path, row=2, column="Name")

    assert "byte 0xe9 is not valid UTF-8" in str(error)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"

    assert "not found" in str(expect_error(path))


def test_unclosed_quote(tmp_path, good_rows):
    text = "\n".join(",".join(row) for row in good_rows)
    lines = text.split("\n")
    lines[3] = '"' + lines[3]
    path = tmp_path / "quote.csv"
    path.write_text("\n".join(lines) + "\n")

    error = expect_error(path)

    assert "starts on line 4" in str(error)


# ---------------------------------------------------------------------------------------------
# Skipping bad rows


def corrupt_rows(rows: list[list[str]]) -> list[list[str]]:
    """Break data rows 2, 5 and 9 in three different ways."""
    rows[2][rows[0].index("nose_tip_x")] = "n/a"
    rows[5][-1] = rows[5][-1].rsplit(" ", 10)[0]
    rows[9] = rows[9][:20]
    return rows


def test_strict_stops_at_first_bad_row(tmp_path, kaggle_like_faces):
    path = write_rows(tmp_path / "bad.csv", corrupt_rows(kaggle_rows(kaggle_like_faces)))

    error = expect_error(path, row=2, column="nose_tip_x")

    assert "skip invalid rows with the skip-bad-rows option" in str(error)
    assert "skip_bad_rows /" not in str(error)


def test_skip_bad_rows(tmp_path, kaggle_like_faces, caplog):
    path = write_rows(tmp_path / "bad.csv", corrupt_rows(kaggle_rows(kaggle_like_faces)))

    with caplog.at_level(logging.WARNING, logger="facekp.data"):
        loaded = load_training_csv(path, skip_bad_rows=True, use_cache=False)

    good = [i for i in range(len(kaggle_like_faces)) if i + 1 not in (2, 5, 9)]
    assert len(loaded) == len(kaggle_like_faces) - 3
    assert_same_faces(loaded, kaggle_like_faces.subset(good), atol=1e-5)
    assert [problem.row for problem in loaded.skipped_rows] == [2, 5, 9]
    assert [problem.line for problem in loaded.skipped_rows] == [3, 6, 10]
    assert [problem.column for problem in loaded.skipped_rows] == ["nose_tip_x", "Image", None]
    assert loaded.names[:3] == ["1", "3", "4"]
    assert f"skipped 3 of {len(kaggle_like_faces)} rows" in caplog.text
    assert "row 2 (file line 3), column 'nose_tip_x'" in caplog.text


def test_skip_bad_rows_all_bad(tmp_path, good_rows):
    rows = [good_rows[0]] + [row[:-1] + ["1 2 3"] for row in good_rows[1:]]
    path = write_rows(tmp_path / "bad.csv", rows)

    with pytest.raises(DataFormatError, match="all 6 data rows are invalid"):
        load_training_csv(path, skip_bad_rows=True, use_cache=False)


def test_skip_bad_rows_keeps_header_errors(tmp_path, good_rows):
    good_rows[0][3] = "whatever"
    path = write_rows(tmp_path / "bad.csv", good_rows)

    with pytest.raises(DataFormatError, match="unexpected column"):
        load_training_csv(path, skip_bad_rows=True, use_cache=False)


def test_skip_row_with_invalid_bytes(tmp_path, real_faces):
    rows = kaggle_rows(real_faces.subset(range(5)), with_names=True)
    content = "\n".join(",".join(row) for row in rows).encode("utf-8")
    broken = content.replace(rows[3][-1].encode(), b"Jos\xe9_01.jpg")
    path = tmp_path / "mixed.csv"
    path.write_bytes(broken)

    loaded = load_training_csv(path, skip_bad_rows=True, use_cache=False)

    assert loaded.names == [rows[i][-1] for i in (1, 2, 4, 5)]
    assert [problem.row for problem in loaded.skipped_rows] == [3]
    assert loaded.skipped_rows[0].column == "Name"


# ---------------------------------------------------------------------------------------------
# Cache


def cache_entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("training-*.npz"))


def test_cache_hit_returns_same_arrays(tmp_path, monkeypatch, kaggle_like_faces):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    path = write_training_csv(tmp_path / "training.csv", kaggle_like_faces)
    first = load_training_csv(path)

    def fail(*args, **kwargs):
        raise AssertionError("parsed again despite an unchanged file and a cache entry")

    monkeypatch.setattr(data, "_parse_training_csv", fail)
    second = load_training_csv(path)

    assert len(cache_entries(tmp_path / "cache")) == 1
    assert_same_faces(second, first)
    assert second.names == first.names
    assert second.groups == first.groups


def test_cache_keeps_skipped_rows(tmp_path, monkeypatch, kaggle_like_faces, caplog):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    path = write_rows(tmp_path / "bad.csv", corrupt_rows(kaggle_rows(kaggle_like_faces)))
    first = load_training_csv(path, skip_bad_rows=True)

    with caplog.at_level(logging.WARNING, logger="facekp.data"):
        second = load_training_csv(path, skip_bad_rows=True)

    assert "skipped 3 of" in caplog.text  # warned on a cache hit too
    assert second.skipped_rows == first.skipped_rows
    assert len(second.skipped_rows) == 3
    with pytest.raises(DataFormatError):
        load_training_csv(path)  # a strict load is not answered by the lenient entry
    fixed = kaggle_like_faces.subset(range(4))
    other = write_training_csv(tmp_path / "other.csv", fixed)
    load_training_csv(other)
    load_training_csv(other, skip_bad_rows=True)
    assert len(cache_entries(tmp_path / "cache")) == 3  # one per file and option


def test_cache_follows_file_changes(tmp_path, monkeypatch, kaggle_like_faces):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    path = write_training_csv(tmp_path / "training.csv", kaggle_like_faces)
    load_training_csv(path)

    smaller = kaggle_like_faces.subset(range(5))
    write_training_csv(path, smaller)
    reloaded = load_training_csv(path)

    assert_same_faces(reloaded, smaller)
    assert len(cache_entries(tmp_path / "cache")) == 1


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, kaggle_like_faces, caplog):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    path = write_training_csv(tmp_path / "training.csv", kaggle_like_faces)
    load_training_csv(path)
    (entry,) = cache_entries(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])

    with caplog.at_level(logging.WARNING):
        reloaded = load_training_csv(path)

    assert_same_faces(reloaded, kaggle_like_faces)
    assert "corrupt cache entry" in caplog.text
    (rebuilt,) = cache_entries(tmp_path / "cache")
    assert rebuilt.stat().st_size > entry.stat().st_size // 2
    monkeypatch.setattr(data, "_parse_training_csv", lambda *args: pytest.fail("parsed again"))
    assert_same_faces(load_training_csv(path), kaggle_like_faces)


def test_cache_of_bytes(tmp_path, monkeypatch, kaggle_like_faces):
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(tmp_path / "cache"))
    content = write_training_csv(tmp_path / "training.csv", kaggle_like_faces).read_bytes()
    load_training_csv(content)

    monkeypatch.setattr(data, "_parse_training_csv", lambda *args: pytest.fail("parsed again"))
    again = load_training_csv(content)

    assert_same_faces(again, kaggle_like_faces)


def test_unwritable_cache_still_loads(tmp_path, monkeypatch, kaggle_like_faces):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FACEKP_CACHE_DIR", str(blocker / "cache"))
    path = write_training_csv(tmp_path / "training.csv", kaggle_like_faces)

    assert_same_faces(load_training_csv(path), kaggle_like_faces)


# ---------------------------------------------------------------------------------------------
# Splits and persons


@pytest.mark.parametrize(
    ("name", "person"),
    [
        ("Luis_Fonsi_21.jpg", "Luis_Fonsi"),
        ("Abdel_Aziz_Al-Hakim_00.jpg", "Abdel_Aziz_Al-Hakim"),
        ("photos/Kim_Clijsters_3.png", "Kim_Clijsters"),
        ("portrait.jpg", "portrait"),
        ("Face_2_v2.jpg", "Face_2_v2"),
    ],
)
def test_person_from_filename(name, person):
    assert person_from_filename(name) == person


def test_split_by_person(real_faces):
    train, val = split_indices(real_faces, 0.25, seed=3)

    groups = np.array(real_faces.groups)
    assert set(groups[train]).isdisjoint(groups[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(real_faces)))
    assert abs(len(val) - 0.25 * len(real_faces)) <= np.unique(groups, return_counts=True)[1].max()
    assert len(train) > 0
    assert len(val) > 0


def test_split_is_deterministic(real_faces):
    first = split_indices(real_faces, 0.25, seed=3)
    again = split_indices(real_faces, 0.25, seed=3)
    other = split_indices(real_faces, 0.25, seed=4)

    assert np.array_equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_split_without_groups(kaggle_like_faces):
    faces = KeypointSet(images=kaggle_like_faces.images, keypoints=kaggle_like_faces.keypoints)

    train, val = split_indices(faces, 0.2, seed=0)

    assert len(val) == round(0.2 * len(faces))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(faces)))
    assert np.array_equal(val, np.sort(val))
    assert not np.array_equal(val, np.arange(len(val)))  # shuffled, not the first rows


def test_split_single_person(real_faces):
    faces = real_faces.subset(range(4))
    faces.groups = ["Same_Person"] * 4

    with pytest.raises(DataFormatError, match="one person"):
        split_indices(faces, 0.5, seed=0)


def test_split_zero_fraction(real_faces):
    train, val = split_indices(real_faces, 0.0, seed=0)

    assert len(val) == 0
    assert len(train) == len(real_faces)


def test_split_rejects_bad_fraction(real_faces):
    with pytest.raises(ValueError, match="fraction"):
        split_indices(real_faces, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------
# Summary


def test_summary_counts(kaggle_like_faces):
    faces = kaggle_like_faces.subset(range(len(kaggle_like_faces)))
    faces.images[1] = 0
    faces.images[3] = faces.images[2]

    summary = summarize_keypoint_set(faces)

    complete = int(faces.complete.sum())
    assert summary.rows == len(faces)
    assert summary.complete_rows == complete
    assert summary.core_only_rows == len(faces) - complete
    assert summary.persons == len(set(faces.groups))
    assert summary.images.constant_images == (faces.names[1],)
    assert summary.images.duplicate_images == 1
    nose = summary.keypoints[KEYPOINT_NAMES.index("nose_tip")]
    assert nose.labelled == len(faces)
    assert nose.x_min == pytest.approx(float(faces.keypoints[:, 10, 0].min()))
    assert summary.images.brightness_mean == pytest.approx(faces.images.mean())
    assert summary.images.brightness_std == pytest.approx(faces.images.std(), rel=1e-6)


def test_foreign_header_quotes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "accounts.txt"
    path.write_text("admin-account:secret-hash:0:0\nuser:other-hash:1:1\n")

    with pytest.raises(DataFormatError) as caught:
        data.load_training_csv(path)

    message = str(caught.value)
    assert "none of the columns of a Kaggle training.csv" in message
    assert "secret-hash" not in message
    assert "admin-account" not in message
