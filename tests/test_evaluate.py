"""Evaluation: RMSE over labelled coordinates beside the mean face, library and CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facekp.checkpoint import load_model
from facekp.data import write_training_csv
from facekp.evaluate import evaluate, keypoint_errors
from facekp.keypoints import KEYPOINT_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Predict on one thread: spinning OpenMP workers slow down shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_keypoint_errors_by_hand() -> None:
    truth = np.full((2, 15, 2), 50.0, np.float32)
    truth[1] = np.nan
    truth[1, 0] = [10.0, 10.0]
    predictions = truth.copy()
    predictions[0, 0, 0] += 3.0  # one coordinate 3 px off on face 0
    predictions[1, 0] = [14.0, 10.0]  # face 1: its only keypoint 4 px off in x
    predictions[1, 5] = [0.0, 0.0]  # unlabelled, must not count

    overall, per_keypoint, face_rmse = keypoint_errors(np.nan_to_num(predictions), truth)

    assert overall == pytest.approx(math.sqrt((9 + 16) / 32))
    assert per_keypoint["left_eye_center"] == pytest.approx(math.sqrt((9 + 16) / 4))
    assert per_keypoint["right_eye_center"] == 0.0
    assert face_rmse[0] == pytest.approx(math.sqrt(9 / 30))
    assert face_rmse[1] == pytest.approx(math.sqrt(16 / 2))


def test_unlabelled_keypoint_has_no_rmse() -> None:
    truth = np.full((1, 15, 2), 40.0, np.float32)
    truth[0, 3] = np.nan
    _, per_keypoint, _ = keypoint_errors(np.zeros((1, 15, 2), np.float32), truth)
    assert per_keypoint[KEYPOINT_NAMES[3]] is None


def test_shipped_model_on_real_faces(real_faces) -> None:
    result = evaluate(load_model(), real_faces)

    assert result.count == len(real_faces)
    assert result.coordinates == int((~np.isnan(real_faces.keypoints)).sum())
    assert set(result.per_keypoint) == set(KEYPOINT_NAMES)
    assert result.rmse < result.baseline_rmse
    assert result.predictions.shape == (len(real_faces), 15, 2)
    worst = result.worst_faces(3)
    assert result.face_rmse[worst[0]] == np.nanmax(result.face_rmse)
    assert result.face_rmse[worst[0]] >= result.face_rmse[worst[1]] >= result.face_rmse[worst[2]]


def test_missing_labels_lower_the_count(real_faces) -> None:
    partial = real_faces.subset(np.arange(10))
    partial.keypoints[:, 4] = np.nan

    result = evaluate(load_model(), partial)

    assert result.per_keypoint[KEYPOINT_NAMES[4]] is None
    assert result.per_keypoint_count[KEYPOINT_NAMES[4]] == 0
    assert result.coordinates == 10 * 14 * 2


def test_cli_json_matches_library(real_faces, tmp_path: Path) -> None:
    data = write_training_csv(tmp_path / "faces.csv", real_faces)

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "evaluate", "--data", str(data), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)
    expected = evaluate(load_model(), real_faces)
    assert summary["rmse"] == pytest.approx(expected.rmse, rel=1e-5)
    assert summary["baseline_rmse"] == pytest.approx(expected.baseline_rmse, rel=1e-5)
    assert summary["count"] == len(real_faces)
    assert set(summary["per_keypoint"]) == set(KEYPOINT_NAMES)


def test_cli_reports_bad_checkpoint(real_faces, tmp_path: Path) -> None:
    data = write_training_csv(tmp_path / "faces.csv", real_faces)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "evaluate", "--data", str(data),
         "--checkpoint", str(broken)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 2
    assert "is not a facekp checkpoint (the file is truncated or damaged)" in completed.stderr
    assert "weights_only" not in completed.stderr
    assert "Traceback" not in completed.stderr


def test_cli_skip_bad_rows(real_faces, tmp_path: Path) -> None:
    data = write_training_csv(tmp_path / "faces.csv", real_faces)
    lines = data.read_text().splitlines()
    lines[3] = lines[3].replace(" ", " x", 1)  # one invalid pixel value in data row 3
    data.write_text("\n".join(lines) + "\n")
    command = [sys.executable, "-m", "facekp", "evaluate", "--data", str(data), "--json"]

    strict = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    lenient = subprocess.run(command + ["--skip-bad-rows"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)

    assert strict.returncode == 2
    assert "row 3" in strict.stderr
    assert "skip invalid rows with the skip-bad-rows option" in strict.stderr
    assert lenient.returncode == 0, lenient.stderr
    summary = json.loads(lenient.stdout)
    assert summary["skipped_rows"] == 1
    assert summary["count"] == len(real_faces) - 1
