"""Kaggle submissions for the real IdLookupTable.csv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facekp.checkpoint import build_checkpoint, load_model, save_checkpoint
from facekp.errors import DataFormatError, FacekpError
from facekp.kaggle import check_submission, load_id_lookup, load_submission, write_test_csv
from facekp.models import create_model
from facekp.submit import check_output_path, submission_locations

REPO = Path(__file__).resolve().parents[1]
KAGGLE_TEST_IMAGES = 1783
KAGGLE_LOOKUP_ROWS = 27124


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Predict on one thread: spinning OpenMP workers slow down shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lookup(kaggle_fkd: Path):
    return load_id_lookup(kaggle_fkd / "IdLookupTable.csv")


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """An untrained notebook network: fast, and its outputs still differ per face."""
    torch.manual_seed(0)
    checkpoint = build_checkpoint(create_model("sezannet"), "sezannet")
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("model") / "sezannet.pt")


def _test_images(real_faces) -> tuple[np.ndarray, np.ndarray]:
    """Real faces repeated to Kaggle's 1783 test images, ImageId 1..1783."""
    rows = np.arange(KAGGLE_TEST_IMAGES) % len(real_faces)
    return np.arange(1, KAGGLE_TEST_IMAGES + 1), real_faces.images[rows]


def test_locations_follow_lookup_rows(real_faces, lookup, small_checkpoint: Path) -> None:
    image_ids, images = _test_images(real_faces)
    model = load_model(small_checkpoint)

    row_ids, locations = submission_locations(model, image_ids, images, lookup)

    assert len(row_ids) == KAGGLE_LOOKUP_ROWS
    assert (np.diff(row_ids) > 0).all()
    assert locations.min() >= 0
    assert locations.max() <= 95
    # Spot-check rows against a direct prediction of their face.
    predictions = model.predict(real_faces.images)
    for m in (0, 1, 500, len(lookup) - 1):
        face = (lookup.image_ids[m] - 1) % len(real_faces)
        expected = np.clip(predictions[face, lookup.keypoint_index[m], lookup.axis[m]], 0, 95)
        position = int(np.searchsorted(row_ids, lookup.row_ids[m]))
        assert locations[position] == pytest.approx(expected, abs=1e-3)


def test_missing_image_rejected(real_faces, lookup, small_checkpoint: Path) -> None:
    image_ids, images = _test_images(real_faces)
    with pytest.raises(DataFormatError, match="ImageIds that the test images lack"):
        submission_locations(load_model(small_checkpoint), image_ids[:-1], images[:-1], lookup)


def test_cli_writes_kaggle_submission(real_faces, kaggle_fkd: Path, tmp_path: Path,
                                      lookup, small_checkpoint: Path) -> None:
    image_ids, images = _test_images(real_faces)
    test_csv = write_test_csv(tmp_path / "test.csv", image_ids, images)
    out = tmp_path / "submission.csv"

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "submit", "--test", str(test_csv),
         "--lookup", str(kaggle_fkd / "IdLookupTable.csv"), "--out", str(out),
         "--checkpoint", str(small_checkpoint)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )

    assert completed.returncode == 0, completed.stderr
    lines = out.read_text().splitlines()
    sample = (kaggle_fkd / "SampleSubmission.csv").read_text().splitlines()
    assert lines[0] == "RowId,Location"
    assert len(lines) == len(sample) == KAGGLE_LOOKUP_ROWS + 1
    assert [line.split(",")[0] for line in lines] == [line.split(",")[0] for line in sample]
    row_ids, locations = load_submission(out)
    assert np.isfinite(locations).all()
    assert len(check_submission(out, lookup)) == KAGGLE_LOOKUP_ROWS


def test_cli_rejects_out_same_as_test(real_faces, kaggle_fkd: Path, tmp_path: Path,
                                      small_checkpoint: Path) -> None:
    image_ids, images = _test_images(real_faces)
    test_csv = write_test_csv(tmp_path / "test.csv", image_ids[:5], images[:5])
    before = test_csv.read_bytes()

    completed = subprocess.run(
        [sys.executable, "-m", "facekp", "submit", "--test", str(test_csv),
         "--lookup", str(kaggle_fkd / "IdLookupTable.csv"), "--out", str(test_csv),
         "--checkpoint", str(small_checkpoint)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 2
    assert f"the output {test_csv} is the same file as the input --test" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert test_csv.read_bytes() == before


def test_output_path_checks(tmp_path: Path) -> None:
    lookup = tmp_path / "IdLookupTable.csv"
    lookup.write_text("RowId,ImageId,FeatureName,Location\n")
    link = tmp_path / "link.csv"
    link.symlink_to(lookup)

    with pytest.raises(FacekpError, match="same file as the input --lookup"):
        check_output_path(link, {"--lookup": lookup})
    with pytest.raises(FacekpError, match="same file as the input --test"):
        check_output_path(tmp_path / "sub" / ".." / "absent.csv",
                          {"--test": tmp_path / "absent.csv"})
    check_output_path(tmp_path / "submission.csv", {"--lookup": lookup})
