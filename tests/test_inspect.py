"""``python -m facekp inspect``: reports and exit status on real faces and the real Kaggle files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from facekp.cli import main
from facekp.data import write_training_csv
from facekp.kaggle import write_test_csv
from facekp.keypoints import KEYPOINT_NAMES


def inspect_json(capsys, *arguments: str) -> tuple[int, dict]:
    status = main(["inspect", "--json", *arguments])
    return status, json.loads(capsys.readouterr().out)


@pytest.fixture()
def broken_training(tmp_path, kaggle_like_faces):
    """A training file whose data rows 3 and 7 are invalid."""
    path = write_training_csv(tmp_path / "broken.csv", kaggle_like_faces, include_names=False)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[0], "oops", 1)
    lines[7] = lines[7].rsplit(" ", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_inspect_training_report(tmp_path, capsys, kaggle_like_faces):
    path = write_training_csv(tmp_path / "training.csv", kaggle_like_faces)

    status, report = inspect_json(capsys, str(path))

    summary = report["summary"]
    complete = int(kaggle_like_faces.complete.sum())
    assert status == 0
    assert report["kind"] == "training"
    assert report["usable"] is True
    assert report["rows"] == len(kaggle_like_faces)
    assert report["invalid_rows"] == 0
    assert summary["complete_rows"] == complete
    assert summary["core_only_rows"] == len(kaggle_like_faces) - complete
    assert summary["persons"] == len(set(kaggle_like_faces.groups))
    labelled = kaggle_like_faces.labelled.sum(axis=0)
    for index, keypoint in enumerate(summary["keypoints"]):
        assert keypoint["name"] == KEYPOINT_NAMES[index]
        assert keypoint["labelled"] == labelled[index]
    left_eye_x = kaggle_like_faces.keypoints[:, 0, 0]
    assert summary["keypoints"][0]["x_max"] == pytest.approx(float(left_eye_x.max()))


def test_inspect_training_text(tmp_path, capsys, kaggle_like_faces):
    faces = kaggle_like_faces.subset(range(len(kaggle_like_faces)))
    faces.images[2] = 128
    path = write_training_csv(tmp_path / "training.csv", faces)

    status = main(["inspect", str(path)])

    output = capsys.readouterr().out
    assert status == 0
    assert f"training file, {len(faces)} rows" in output
    assert f"complete rows    {int(faces.complete.sum())} " in output
    assert "blank (single-value) images 1" in output
    assert f"blank: {faces.names[2]}" in output
    assert output.rstrip().endswith("verdict: usable")


def test_inspect_invalid_rows(capsys, broken_training, kaggle_like_faces):
    status, report = inspect_json(capsys, str(broken_training))

    assert status == 1
    assert report["usable"] is False
    assert report["invalid_rows"] == 2
    assert report["rows"] == len(kaggle_like_faces)
    assert report["problems"][0].startswith("row 3 (file line 4), column 'left_eye_center_x'")
    assert report["problems"][1].startswith("row 7 (file line 8), column 'Image'")


def test_inspect_skip_bad_rows(capsys, broken_training, kaggle_like_faces):
    status = main(["inspect", "--skip-bad-rows", str(broken_training)])

    output = capsys.readouterr().out
    assert status == 0
    assert f"2 of {len(kaggle_like_faces)} rows would be skipped" in output
    assert "invalid rows: 2 (showing 2)" in output


def test_inspect_unreadable_file(tmp_path, capsys, real_faces):
    import cv2

    path = tmp_path / "face.csv"
    path.write_bytes(cv2.imencode(".png", real_faces.images[0])[1].tobytes())

    status = main(["inspect", str(path)])
    json_status, report = inspect_json(capsys, str(path))

    assert status == 2
    assert json_status == 2
    assert report["usable"] is False
    assert "PNG image" in report["error"]


def test_inspect_real_lookup(capsys, kaggle_fkd):
    status, report = inspect_json(capsys, str(kaggle_fkd / "IdLookupTable.csv"))

    assert status == 0
    assert report["kind"] == "id_lookup"
    assert report["rows"] == 27124
    assert report["images"] == 1783
    assert report["coordinates_per_image"]["8"] == 1190


def test_inspect_test_csv(tmp_path, capsys, real_faces):
    path = write_test_csv(tmp_path / "test.csv", np.arange(1, 11), real_faces.images[:10])

    status, report = inspect_json(capsys, str(path))

    assert status == 0
    assert report["kind"] == "test"
    assert report["rows"] == 10
    assert report["images"]["brightness_mean"] == pytest.approx(real_faces.images[:10].mean())


def test_inspect_command_line_error(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")

    result = subprocess.run(
        [sys.executable, "-m", "facekp", "inspect", str(empty)], capture_output=True, text=True
    )

    assert result.returncode == 2
    assert f"{empty}: the file is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
