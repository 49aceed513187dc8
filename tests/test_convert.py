"""Landmark import and conversion of real ytf68 photos into 96x96 Kaggle-format faces."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekp.cli import convert as convert_command
from facekp.convert import (
    SKIP_FACE_ELSEWHERE,
    SKIP_IMAGE_MISSING,
    SKIP_LANDMARKS_OUTSIDE,
    SKIP_NO_FACE,
    SKIP_OUTSIDE_CROP,
    SKIP_UNREADABLE,
    convert_landmarks,
    fit_framing,
)
from facekp.crop import Framing
from facekp.data import NAME_COLUMN, load_training_csv, person_from_filename, write_training_csv
from facekp.errors import DataFormatError
from facekp.keypoints import KEYPOINT_NAMES
from facekp.landmarks import (
    LandmarkSet,
    load_landmarks,
    read_landmark_csv,
    read_pts_file,
    write_pts_file,
)

LEFT_EYE = KEYPOINT_NAMES.index("left_eye_center")
RIGHT_EYE = KEYPOINT_NAMES.index("right_eye_center")
LEFT_OUTER = KEYPOINT_NAMES.index("left_eye_outer_corner")
RIGHT_OUTER = KEYPOINT_NAMES.index("right_eye_outer_corner")


@pytest.fixture(scope="module")
def test_landmarks(ytf68: Path) -> LandmarkSet:
    return read_landmark_csv(ytf68 / "test_frames_keypoints.csv")


@pytest.fixture(scope="module")
def sample(test_landmarks: LandmarkSet) -> LandmarkSet:
    """40 photos spread over the ytf68 test set."""
    return test_landmarks.subset(range(3, len(test_landmarks), 19))


def run_convert_command(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    convert_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", *argv])
    return args.run(args)


# --- landmark CSV -------------------------------------------------------------------------


def test_landmark_csv_reads_ytf68(test_landmarks: LandmarkSet, ytf68: Path) -> None:
    assert len(test_landmarks) == 770
    assert test_landmarks.points.shape == (770, 68, 2)
    assert test_landmarks.names[0] == "James_Wolfensohn_00.jpg"
    assert all((ytf68 / "test" / name).is_file() for name in test_landmarks.names[:20])


def test_landmark_csv_without_header(tmp_path: Path, ytf68: Path) -> None:
    lines = (ytf68 / "test_frames_keypoints.csv").read_text().splitlines()
    path = tmp_path / "no_header.csv"
    path.write_text("\n".join(lines[1:6]) + "\n")

    landmarks = read_landmark_csv(path)

    assert len(landmarks) == 5
    assert landmarks.names[0] == lines[1].split(",")[0]


def _real_rows(ytf68: Path, count: int = 3) -> list[str]:
    return (ytf68 / "test_frames_keypoints.csv").read_text().splitlines()[: count + 1]


def _bad_csv_cases(rows: list[str]) -> dict[str, tuple[str, list[str]]]:
    header, first, second = rows[0], rows[1], rows[2]
    cells = first.split(",")
    return {
        "short row": ("\n".join([header, ",".join(cells[:-2])]), ["row 2", "135 columns", "expected 137"]),
        "text value": (
            "\n".join([header, ",".join(cells[:5] + ["abc"] + cells[6:])]),
            ["row 2", "column 'x2'", "'abc'", "not a number"],
        ),
        "empty value": (
            "\n".join([header, first, ",".join(cells[:1] + [""] + cells[2:])]),
            ["row 3", "column 'x0'", "empty"],
        ),
        "infinite value": (
            "\n".join([header, ",".join(cells[:3] + ["inf"] + cells[4:])]),
            ["row 2", "column 'x1'", "finite"],
        ),
        "empty name": ("\n".join([header, ",".join([""] + cells[1:])]), ["row 2", "file name"]),
        "duplicate": ("\n".join([header, first, second, first]), ["listed more than once"]),
        "header only": (header, ["no landmark rows"]),
        "empty file": ("", ["no landmark rows"]),
        "short header": (
            "\n".join([",".join(header.split(",")[:40]), first]),
            ["row 1", "header has 40 columns"],
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["short row", "text value", "empty value", "infinite value", "empty name", "duplicate",
     "header only", "empty file", "short header"],
)
def test_bad_landmark_csv_message(case: str, tmp_path: Path, ytf68: Path) -> None:
    text, expected_parts = _bad_csv_cases(_real_rows(ytf68))[case]
    path = tmp_path / "landmarks.csv"
    path.write_text(text + "\n")

    with pytest.raises(DataFormatError) as caught:
        read_landmark_csv(path)

    message = str(caught.value)
    assert str(path) in message
    for part in expected_parts:
        assert part in message


def test_binary_landmark_file_message(tmp_path: Path) -> None:
    path = tmp_path / "landmarks.csv"
    path.write_bytes(bytes(range(256)) * 4)

    with pytest.raises(DataFormatError, match="not a UTF-8 text file"):
        read_landmark_csv(path)


def test_missing_landmark_path_message(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not found"):
        load_landmarks(tmp_path / "absent.csv")


# --- .pts files ---------------------------------------------------------------------------


def test_pts_round_trip(tmp_path: Path, test_landmarks: LandmarkSet) -> None:
    points = test_landmarks.points[7]
    path = tmp_path / "face.pts"
    write_pts_file(path, points)

    text = path.read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"]
    assert text[-1] == "}"
    assert float(text[3].split()[0]) == pytest.approx(points[0, 0] + 1)
    np.testing.assert_allclose(read_pts_file(path), points, atol=1e-3)
    np.testing.assert_allclose(read_pts_file(path, one_based=False), points + 1, atol=1e-3)


def test_pts_folder_converts_like_csv(tmp_path: Path, ytf68: Path, sample: LandmarkSet) -> None:
    chosen = sample.subset(range(6))
    folder = tmp_path / "pts"
    folder.mkdir()
    for name, points in zip(chosen.names, chosen.points):
        write_pts_file(folder / f"{Path(name).stem}.pts", points)
    # Two photos sit beside their .pts files; the others are found in the image folder.
    for name in chosen.names[:2]:
        (folder / name).symlink_to(ytf68 / "test" / name)

    from_pts = load_landmarks(folder)
    assert sorted(from_pts.names[:6]) == sorted(
        [chosen.names[0], chosen.names[1]] + [Path(n).stem for n in chosen.names[2:]]
    )
    converted = convert_landmarks(from_pts, ytf68 / "test")
    expected = convert_landmarks(chosen, ytf68 / "test")

    assert sorted(converted.faces.names) == sorted(expected.faces.names)
    order = [converted.faces.names.index(name) for name in expected.faces.names]
    np.testing.assert_allclose(converted.faces.keypoints[order], expected.faces.keypoints, atol=1e-3)
    np.testing.assert_array_equal(converted.faces.images[order], expected.faces.images)


def test_pts_beside_images_is_default_folder(tmp_path: Path, ytf68: Path, sample: LandmarkSet) -> None:
    name, points = sample.names[0], sample.points[0]
    write_pts_file(tmp_path / f"{Path(name).stem}.pts", points)
    (tmp_path / name).symlink_to(ytf68 / "test" / name)
    out = tmp_path / "out.csv"

    assert run_convert_command("--landmarks", str(tmp_path), "--out", str(out)) == 0

    written = load_training_csv(out)
    assert len(written) == 1


PTS_HEADER = "version: 1\nn_points: 68\n{\n"
PTS_POINTS = "".join(f"{10 + i}.5 {20 + i}\n" for i in range(68))


@pytest.mark.parametrize(
    ("text", "expected_parts"),
    [
        ("version: 1\nn_points: 5\n{\n1 2\n}\n", ["line 2", "n_points is '5'", "expected 68"]),
        ("n_points: 68\n{\n", ["line 1", "'version: ...'"]),
        ("version: 1\nn_points: 68\n" + PTS_POINTS + "}\n", ["line 3", "expected '{'"]),
        (PTS_HEADER + PTS_POINTS[:40], ["ends after line", "a point 'x y'"]),
        (PTS_HEADER + "1 2 3\n" + PTS_POINTS, ["line 4", "'1 2 3'", "a point"]),
        (PTS_HEADER + "1 nan\n" + PTS_POINTS, ["line 4", "finite"]),
        (PTS_HEADER + PTS_POINTS + "1 2\n}\n", ["line 72", "expected '}'"]),
        (PTS_HEADER + PTS_POINTS + "}\nextra\n", ["line 73", "end of the file"]),
        ("", ["ends after line 0", "'version: ...'"]),
    ],
)
def test_bad_pts_message(text: str, expected_parts: list[str], tmp_path: Path) -> None:
    path = tmp_path / "face.pts"
    path.write_text(text)

    with pytest.raises(DataFormatError) as caught:
        read_pts_file(path)

    message = str(caught.value)
    assert str(path) in message
    for part in expected_parts:
        assert part in message


def test_pts_with_crlf_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "face.pts"
    path.write_bytes((PTS_HEADER + "\n" + PTS_POINTS + "}\n\n").replace("\n", "\r\n").encode())

    points = read_pts_file(path)

    assert points.shape == (68, 2)
    assert points[0].tolist() == [9.5, 19.0]


def test_empty_pts_folder_message(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="contains no .pts landmark files"):
        load_landmarks(tmp_path)


# --- conversion ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(sample: LandmarkSet, ytf68: Path):
    return convert_landmarks(sample, ytf68 / "test")


def test_conversion_counts(converted, sample: LandmarkSet) -> None:
    faces = converted.faces
    assert len(faces) + converted.num_skipped == len(sample)
    assert len(faces) >= 0.9 * len(sample)
    assert faces.images.shape == (len(faces), 96, 96)
    assert faces.images.dtype == np.uint8
    assert faces.keypoints.shape == (len(faces), 15, 2)
    assert converted.boxes.shape == (len(faces), 4)


def test_conversion_names_and_groups(converted, sample: LandmarkSet) -> None:
    faces = converted.faces
    assert set(faces.names) <= set(sample.names)
    assert faces.groups == [person_from_filename(name) for name in faces.names]
    assert len(set(faces.groups)) >= len(faces) // 2


def test_converted_keypoints_inside_crop(converted) -> None:
    keypoints = converted.faces.keypoints
    assert not np.isnan(keypoints).any()
    assert keypoints.min() >= -0.5
    assert keypoints.max() <= 95.5


def test_converted_faces_framed_like_kaggle(converted) -> None:
    keypoints = converted.faces.keypoints.astype(np.float64)
    corner_distance = np.linalg.norm(keypoints[:, LEFT_OUTER] - keypoints[:, RIGHT_OUTER], axis=1)
    eye_y = keypoints[:, [LEFT_EYE, RIGHT_EYE], 1].mean(axis=1)
    eye_x = keypoints[:, [LEFT_EYE, RIGHT_EYE], 0].mean(axis=1)

    assert abs(corner_distance.mean() - 50) < 3
    assert abs(eye_y.mean() - 38) < 2
    assert abs(eye_x.mean() - 47.5) < 1.5


def test_fit_framing_hits_targets(sample: LandmarkSet, ytf68: Path) -> None:
    start = Framing(scale=1.05, shift_x=-0.03, shift_y=0.04)
    first = convert_landmarks(sample, ytf68 / "test", framing=start, keep_partial=True)

    fitted = fit_framing(first.faces.keypoints, start, outer_eye_distance=46, eye_y=36)
    second = convert_landmarks(sample, ytf68 / "test", framing=fitted, keep_partial=True)

    assert second.faces.names == first.faces.names
    keypoints = second.faces.keypoints.astype(np.float64)
    corner_distance = np.linalg.norm(keypoints[:, LEFT_OUTER] - keypoints[:, RIGHT_OUTER], axis=1)
    assert np.nanmean(corner_distance) == pytest.approx(46, abs=0.05)
    assert np.nanmean(keypoints[:, [LEFT_EYE, RIGHT_EYE], 1]) == pytest.approx(36, abs=0.05)
    assert np.nanmean(keypoints[:, [LEFT_EYE, RIGHT_EYE], 0]) == pytest.approx(47.5, abs=0.05)


def test_subject_left_eye_on_image_right(converted) -> None:
    keypoints = converted.faces.keypoints
    assert (keypoints[:, LEFT_EYE, 0] > keypoints[:, RIGHT_EYE, 0]).all()
    assert (keypoints[:, LEFT_OUTER, 0] > keypoints[:, RIGHT_OUTER, 0]).all()


def test_crop_shows_the_face_at_the_keypoints(converted) -> None:
    """The eyes are darker than the cheeks 12 px below them in the converted crops."""
    faces = converted.faces
    rows = np.arange(len(faces))
    darker = 0
    for eye in (LEFT_EYE, RIGHT_EYE):
        x = np.rint(faces.keypoints[:, eye, 0]).astype(int)
        y = np.rint(faces.keypoints[:, eye, 1]).astype(int)
        darker += (faces.images[rows, y, x] < faces.images[rows, np.minimum(y + 12, 95), x]).sum()
    assert darker >= 0.8 * 2 * len(faces)


def test_conversion_skip_reasons(tmp_path: Path, ytf68: Path, sample: LandmarkSet) -> None:
    real = sample.subset(range(5))
    names, points = [], []

    names.append(real.names[0])  # converts
    points.append(real.points[0])
    names.append("absent_01.jpg")
    points.append(real.points[1])
    (tmp_path / "broken_01.jpg").write_text("not a JPEG")
    names.append("broken_01.jpg")
    points.append(real.points[2])
    cv2.imwrite(str(tmp_path / "blank_01.png"), np.full((200, 200), 128, np.uint8))
    names.append("blank_01.png")
    points.append(real.points[3])
    # The same photo, with its landmarks moved to a corner, away from the detected face.
    (tmp_path / "moved_01.jpg").symlink_to(ytf68 / "test" / real.names[0])
    names.append("moved_01.jpg")
    points.append(real.points[0] - real.points[0].min(axis=0))
    # Landmarks spread to three times their size around their centre leave the crop.
    (tmp_path / "spread_01.jpg").symlink_to(ytf68 / "test" / real.names[0])
    centre = (real.points[0].min(axis=0) + real.points[0].max(axis=0)) / 2
    names.append("spread_01.jpg")
    points.append(centre + 3 * (real.points[0] - centre))
    # The same photo, with its landmarks shifted 5000 px right and 5000 px up, off the image.
    for name, shift in (("far_01.jpg", (5000, 0)), ("above_01.jpg", (0, -5000))):
        (tmp_path / name).symlink_to(ytf68 / "test" / real.names[0])
        names.append(name)
        points.append(real.points[0] + shift)
    for name in real.names[:1]:
        (tmp_path / name).symlink_to(ytf68 / "test" / name)

    landmarks = LandmarkSet(names=names, points=np.stack(points), source=tmp_path)
    conversion = convert_landmarks(landmarks, tmp_path)

    assert conversion.faces.names == [real.names[0]]
    assert conversion.skipped[SKIP_IMAGE_MISSING] == ["absent_01.jpg"]
    assert conversion.skipped[SKIP_UNREADABLE] == ["broken_01.jpg"]
    assert conversion.skipped[SKIP_NO_FACE] == ["blank_01.png"]
    assert conversion.skipped[SKIP_FACE_ELSEWHERE] == ["moved_01.jpg"]
    assert conversion.skipped[SKIP_OUTSIDE_CROP] == ["spread_01.jpg"]
    assert conversion.skipped[SKIP_LANDMARKS_OUTSIDE] == ["far_01.jpg", "above_01.jpg"]


def test_keep_partial_sets_missing(tmp_path: Path, ytf68: Path, sample: LandmarkSet) -> None:
    name, points = sample.names[0], sample.points[0]
    (tmp_path / name).symlink_to(ytf68 / "test" / name)
    # Move the bottom-lip centre (point 57) below the crop, by 60% of the face's height.
    lowered = points.copy()
    lowered[57, 1] += 0.6 * (points[:, 1].max() - points[:, 1].min())
    landmarks = LandmarkSet(names=[name], points=lowered[None], source=tmp_path)

    skipping = convert_landmarks(landmarks, tmp_path)
    keeping = convert_landmarks(landmarks, tmp_path, keep_partial=True)

    assert skipping.skipped == {SKIP_OUTSIDE_CROP: [name]}
    assert keeping.partial == [name]
    labelled = keeping.faces.labelled[0]
    bottom_lip = KEYPOINT_NAMES.index("mouth_center_bottom_lip")
    assert not labelled[bottom_lip]
    assert labelled.sum() == 14


def test_missing_image_folder_message(tmp_path: Path, sample: LandmarkSet) -> None:
    with pytest.raises(DataFormatError, match="image folder not found"):
        convert_landmarks(sample, tmp_path / "absent")


# --- output file --------------------------------------------------------------------------


def test_written_csv_loads_back(converted, tmp_path: Path) -> None:
    path = write_training_csv(tmp_path / "faces.csv", converted.faces)

    loaded = load_training_csv(path, use_cache=False)

    np.testing.assert_array_equal(loaded.images, converted.faces.images)
    np.testing.assert_allclose(loaded.keypoints, converted.faces.keypoints, atol=1e-4)
    header = path.read_text().split("\n", 1)[0].split(",")
    assert header[-2:] == ["Image", NAME_COLUMN]
    assert loaded.names == converted.faces.names
    assert loaded.groups == converted.faces.groups


def test_convert_command_writes_csv(tmp_path: Path, ytf68: Path, capsys) -> None:
    rows = _real_rows(ytf68, count=4)
    landmarks = tmp_path / "landmarks.csv"
    landmarks.write_text("\n".join(rows) + "\n")
    out = tmp_path / "faces.csv"

    status = run_convert_command(
        "--landmarks", str(landmarks), "--images", str(ytf68 / "test"), "--out", str(out)
    )

    printed = capsys.readouterr().out
    written = load_training_csv(out)
    assert status == 0
    assert f"converted {len(written)} of 4 photos" in printed
    assert f"wrote {out}" in printed
    assert 1 <= len(written) <= 4


def test_convert_command_keeps_input(tmp_path: Path, ytf68: Path) -> None:
    landmarks = tmp_path / "landmarks.csv"
    landmarks.write_text("\n".join(_real_rows(ytf68)) + "\n")
    before = landmarks.read_bytes()

    with pytest.raises(DataFormatError, match="output file is the landmark file"):
        run_convert_command(
            "--landmarks", str(landmarks), "--images", str(ytf68 / "test"), "--out", str(landmarks)
        )

    assert landmarks.read_bytes() == before


def test_convert_command_wrong_images(tmp_path: Path, ytf68: Path) -> None:
    landmarks = tmp_path / "landmarks.csv"
    landmarks.write_text("\n".join(_real_rows(ytf68)) + "\n")
    out = tmp_path / "faces.csv"

    with pytest.raises(DataFormatError, match="no face of the 3 photos could be converted"):
        run_convert_command("--landmarks", str(landmarks), "--images", str(tmp_path), "--out", str(out))

    assert not out.exists()

