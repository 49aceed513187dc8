"""Training on real faces: masked loss, run files, stop and resume, reproducibility."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facekp.checkpoint import load_model, read_checkpoint
from facekp.data import split_indices, write_training_csv
from facekp.errors import CheckpointError, DataFormatError
from facekp.train import (
    RunDirectoryError,
    TrainConfig,
    forward_fill_keypoints,
    masked_loss,
    prepare_resume,
    request_stop,
    train,
)

REPO = Path(__file__).resolve().parents[1]
EPOCH_KEYS = {"epoch", "train_rmse", "val_rmse", "epoch_seconds", "elapsed_seconds", "lr", "time"}
PROGRESS_KEYS = {"epoch", "epochs", "batch", "batches", "elapsed_seconds", "status"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Train on one thread: the results do not depend on it, and with other processes on the
    cores, spinning OpenMP workers would make every step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def faces_csv(real_faces, tmp_path_factory) -> Path:
    """The real faces as a training CSV with names, so the split can group by person."""
    return write_training_csv(tmp_path_factory.mktemp("data") / "faces.csv", real_faces)


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    settings = dict(model="sezannet", epochs=2, batch_size=16, val_fraction=0.25, seed=3)
    settings.update(changes)
    return TrainConfig(data=str(data), out=str(out), **settings)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "elapsed_seconds", "time")}
            for r in records]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- loss


def test_masked_loss_ignores_missing_coordinates() -> None:
    predictions = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    targets = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])

    loss = masked_loss(predictions, targets, mask, "mse")
    loss.backward()

    assert loss.item() == pytest.approx((0.1**2 + 0.3**2) / 2)
    assert predictions.grad[0, 1] == 0
    assert predictions.grad[0, 3] == 0
    assert predictions.grad[0, 0] != 0
    assert predictions.grad[0, 2] != 0


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_all_missing_batch_gives_zero_loss(kind: str) -> None:
    predictions = torch.randn(4, 30, requires_grad=True)
    loss = masked_loss(predictions, torch.zeros(4, 30), torch.zeros(4, 30), kind)
    loss.backward()

    assert loss.item() == 0.0
    assert torch.isfinite(predictions.grad).all()
    assert (predictions.grad == 0).all()


def test_training_with_missing_labels(real_faces, tmp_path: Path) -> None:
    partial = real_faces.subset(np.arange(len(real_faces)))
    partial.keypoints[::2, 2:] = np.nan  # half the faces keep only two keypoints
    partial.keypoints[1, :] = np.nan  # one face has no label at all
    data = write_training_csv(tmp_path / "partial.csv", partial)

    result = train(_config(data, tmp_path / "run", epochs=1, val_fraction=0.0))

    record = _metrics(tmp_path / "run")[0]
    assert result.status == "finished"
    assert np.isfinite(record["train_rmse"])
    state = _weights(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(value.float()).all() for value in state.values())


def test_forward_fill_copies_from_row_above() -> None:
    keypoints = np.full((3, 15, 2), np.nan, np.float32)
    keypoints[0, 0] = [10, 20]
    keypoints[2, 0] = [30, 40]
    keypoints[1, 1] = [5, 6]

    filled = forward_fill_keypoints(keypoints)

    assert filled[1, 0].tolist() == [10, 20]
    assert filled[2, 1].tolist() == [5, 6]
    assert np.isnan(filled[0, 1]).all()
    assert filled[2, 0].tolist() == [30, 40]


# ----------------------------------------------------------------------------- runs


def test_run_writes_files_app_reads(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    result = train(_config(faces_csv, run_dir))

    metrics = _metrics(run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    progress = json.loads((run_dir / "progress.json").read_text())
    assert result.status == "finished"
    assert [r["epoch"] for r in metrics] == [1, 2]
    assert all(set(r) == EPOCH_KEYS for r in metrics)
    assert all(r["val_rmse"] > 0 and r["train_rmse"] > 0 for r in metrics)
    assert metrics[1]["elapsed_seconds"] >= metrics[0]["elapsed_seconds"]
    assert run["status"] == "finished"
    assert run["pid"] == os.getpid()
    assert run["config"]["model"] == "sezannet"
    assert run["config"]["batch_size"] == 16
    assert set(progress) == PROGRESS_KEYS
    assert progress["status"] == "finished"
    assert progress["epoch"] == progress["epochs"] == 2
    assert progress["batch"] == progress["batches"]


def test_best_checkpoint_loads_with_metadata(faces_csv: Path, tmp_path: Path, real_faces) -> None:
    run_dir = tmp_path / "run"
    train(_config(faces_csv, run_dir, epochs=1, model="heatmapnet"))

    best = load_model(run_dir / "best.pt")

    assert best.info["data"]["rows"] == len(real_faces)
    assert sum(best.info["data"]["keypoint_counts"].values()) > 0
    assert best.info["metrics"]["epoch"] == 1
    assert np.isfinite(best.mean_keypoints).all()
    assert "training" not in read_checkpoint(run_dir / "best.pt")
    assert "training" in read_checkpoint(run_dir / "last.pt")
    assert best.predict(real_faces.images[:2]).shape == (2, 15, 2)


def test_existing_run_not_overwritten(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(_config(faces_csv, run_dir, epochs=1))
    before = (run_dir / "metrics.jsonl").read_bytes()

    with pytest.raises(RunDirectoryError, match="already contains a training run"):
        train(_config(faces_csv, run_dir, epochs=1))

    assert (run_dir / "metrics.jsonl").read_bytes() == before


def test_resume_without_checkpoint(faces_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="cannot resume"):
        train(_config(faces_csv, tmp_path / "empty"), resume=True)


def test_resume_rejects_changed_settings(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(_config(faces_csv, run_dir, epochs=1))
    with pytest.raises(RunDirectoryError, match="cannot change lr"):
        prepare_resume(run_dir, {"lr": 0.5})


def test_bad_data_leaves_folder_untouched(faces_csv: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,training,file\n1,2,3,4\n")
    run_dir = tmp_path / "run"

    with pytest.raises(DataFormatError, match="none of the columns"):
        train(_config(bad, run_dir))

    assert not run_dir.exists()
    result = train(_config(faces_csv, run_dir, epochs=1))
    assert result.status == "finished"


def test_failed_run_without_checkpoint_reused(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "failed", "error": "earlier"}))

    result = train(_config(faces_csv, run_dir, epochs=1))

    run = json.loads((run_dir / "run.json").read_text())
    assert result.status == "finished"
    assert run["status"] == "finished"
    assert "error" not in run


def test_running_run_without_checkpoint_kept(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "running"}))

    with pytest.raises(RunDirectoryError) as caught:
        train(_config(faces_csv, run_dir, epochs=1))

    assert "status 'running' and no checkpoint" in str(caught.value)
    assert f"delete {run_dir / 'run.json'}" in str(caught.value)
    assert json.loads((run_dir / "run.json").read_text()) == {"status": "running"}


def test_file_without_labels_rejected(real_faces, tmp_path: Path) -> None:
    unlabelled = real_faces.subset(np.arange(len(real_faces)))
    unlabelled.keypoints[:] = np.nan
    data = write_training_csv(tmp_path / "unlabelled.csv", unlabelled)

    with pytest.raises(DataFormatError) as caught:
        train(_config(data, tmp_path / "run", val_fraction=0.0))

    assert "has no labelled keypoints" in str(caught.value)
    assert f"of its {len(real_faces)} rows is empty" in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_training_split_without_labels_rejected(real_faces, tmp_path: Path) -> None:
    config = _config(tmp_path / "split.csv", tmp_path / "run")
    train_idx, val_idx = split_indices(real_faces, config.val_fraction, config.seed)
    labelled_only_in_validation = real_faces.subset(np.arange(len(real_faces)))
    labelled_only_in_validation.keypoints[train_idx] = np.nan
    write_training_csv(tmp_path / "split.csv", labelled_only_in_validation)

    with pytest.raises(DataFormatError) as caught:
        train(config)

    assert f"none of the {len(train_idx)} training faces" in str(caught.value)
    assert "has a labelled keypoint" in str(caught.value)
    assert len(val_idx) > 0


def test_skip_bad_rows_counts_skipped(faces_csv: Path, tmp_path: Path) -> None:
    lines = faces_csv.read_text().splitlines()
    lines[2] = lines[2].replace(" ", " x", 1)  # one invalid pixel value in data row 2
    bad = tmp_path / "one-bad-row.csv"
    bad.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataFormatError) as caught:
        train(_config(bad, tmp_path / "strict", epochs=1))
    result = train(_config(bad, tmp_path / "lenient", epochs=1, skip_bad_rows=True))

    run = json.loads((tmp_path / "lenient" / "run.json").read_text())
    assert "skip invalid rows with the skip-bad-rows option" in str(caught.value)
    assert not (tmp_path / "strict").exists()
    assert result.skipped_rows == 1
    assert run["data"]["skipped_rows"] == {"data": 1}
    assert run["data"]["rows"] == len(lines) - 2
    assert run["config"]["skip_bad_rows"] is True


def test_run_stores_absolute_data_path(faces_csv: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(faces_csv.parent)
    run_dir = tmp_path / "run"

    def stop_at_batch_one(progress: dict) -> None:
        if progress["batch"] == 1:
            request_stop(run_dir)

    train(_config(Path(faces_csv.name), run_dir), on_progress=stop_at_batch_one)

    run = json.loads((run_dir / "run.json").read_text())
    last = read_checkpoint(run_dir / "last.pt")
    assert run["config"]["data"] == str(faces_csv.resolve())
    assert run["data"]["path"] == str(faces_csv.resolve())
    assert last["config"]["data"] == str(faces_csv.resolve())
    assert last["data"]["path"] == str(faces_csv.resolve())

    monkeypatch.chdir(tmp_path)
    assert train(prepare_resume(run_dir), resume=True).status == "finished"


def test_resume_from_damaged_last_checkpoint(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(_config(faces_csv, run_dir))
    last = run_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    run_before = (run_dir / "run.json").read_bytes()

    with pytest.raises(CheckpointError) as caught:
        train(prepare_resume(run_dir), resume=True)

    message = str(caught.value)
    assert f"the last checkpoint {last} is damaged (the file is truncated or damaged)" in message
    assert "start the run again in a new --out folder" in message
    assert "weights_only" not in message
    assert (run_dir / "run.json").read_bytes() == run_before


def test_seeded_runs_identical(faces_csv: Path, tmp_path: Path) -> None:
    first = train(_config(faces_csv, tmp_path / "a", epochs=1))
    second = train(_config(faces_csv, tmp_path / "b", epochs=1))
    other_seed = train(_config(faces_csv, tmp_path / "c", epochs=1, seed=4))

    a, b, c = (_weights(tmp_path / name / "last.pt") for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.history[0]["val_rmse"] == second.history[0]["val_rmse"]
    assert other_seed.history[0]["val_rmse"] != first.history[0]["val_rmse"]


def test_stop_and_resume_match_unbroken_run(faces_csv: Path, tmp_path: Path) -> None:
    unbroken = tmp_path / "unbroken"
    train(_config(faces_csv, unbroken, model="heatmapnet"))

    # Stop in the middle of the first epoch, then resume twice more to the end.
    broken = tmp_path / "broken"

    def stop_at_batch_one(progress: dict) -> None:
        if progress["epoch"] == 1 and progress["batch"] == 1:
            request_stop(broken)

    stopped = train(_config(faces_csv, broken, model="heatmapnet"), on_progress=stop_at_batch_one)
    state = read_checkpoint(broken / "last.pt")["training"]["state"]
    assert stopped.status == "stopped"
    assert (state["epoch"], state["batch"]) == (1, 1)
    assert json.loads((broken / "run.json").read_text())["status"] == "stopped"
    assert json.loads((broken / "progress.json").read_text())["status"] == "stopped"
    assert not (broken / "metrics.jsonl").exists()

    resumed = train(prepare_resume(broken), resume=True)

    assert resumed.status == "finished"
    expected, actual = _weights(unbroken / "last.pt"), _weights(broken / "last.pt")
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert _without_times(_metrics(broken)) == _without_times(_metrics(unbroken))
    assert json.loads((broken / "run.json").read_text())["resumed"] == 1


# Trains in a separate process and sends itself SIGTERM when the first progress record
# arrives, so the signal lands at a known point while training runs.
SIGTERM_WHILE_TRAINING = """
import os, signal, sys
from facekp.train import TrainConfig, train

def on_progress(progress):
    if progress["status"] == "running":
        os.kill(os.getpid(), signal.SIGTERM)

config = TrainConfig(data=sys.argv[1], out=sys.argv[2], model="sezannet", epochs=1000,
                     batch_size=16, val_fraction=0.25, seed=3)
print("status:", train(config, on_progress=on_progress).status)
"""

# Runs the train command in a separate process and sends it SIGTERM right after training has
# returned, while the command reports the result and shuts down.
SIGTERM_AFTER_TRAINING = """
import os, signal, sys
import facekp.train
from facekp.cli import main

original_train = facekp.train.train

def train_then_signal(*args, **kwargs):
    result = original_train(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return result

facekp.train.train = train_then_signal
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_while_training_stops(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    completed = subprocess.run(
        [sys.executable, "-c", SIGTERM_WHILE_TRAINING, str(faces_csv), str(run_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "status: stopped" in completed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "stopped"
    assert json.loads((run_dir / "progress.json").read_text())["status"] == "stopped"
    assert read_checkpoint(run_dir / "last.pt")["training"]["state"]["epoch"] == 1


def test_cli_sigterm_after_training_exits_cleanly(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"

    completed = subprocess.run(
        [sys.executable, "-c", SIGTERM_AFTER_TRAINING, "train", "--data", str(faces_csv),
         "--out", str(run_dir), "--model", "sezannet", "--epochs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "status: finished" in completed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_cli_stops_on_sigterm(faces_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # So many epochs that the run is still training whenever the first one has finished.
    command = [sys.executable, "-m", "facekp", "train", "--data", str(faces_csv),
               "--out", str(run_dir), "--model", "sezannet", "--epochs", "100000",
               "--batch-size", "4", "--val-fraction", "0.25"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 180
    while (time.monotonic() < deadline and process.poll() is None
           and not (run_dir / "metrics.jsonl").exists()):
        time.sleep(0.1)
    assert (run_dir / "metrics.jsonl").exists(), "no epoch finished within 180 s"
    busy = subprocess.run(
        [sys.executable, "-m", "facekp", "train", "--out", str(run_dir), "--resume"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert busy.returncode == 2
    assert "in use by another training process" in busy.stderr
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    assert "status: stopped" in stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "stopped"
    assert read_checkpoint(run_dir / "last.pt")["training"]["state"]["epoch"] < 100000

    again = subprocess.run(
        [sys.executable, "-m", "facekp", "train", "--out", str(run_dir), "--epochs", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 2
    assert "already contains a training run" in again.stderr

    changed = subprocess.run(
        [sys.executable, "-m", "facekp", "train", "--out", str(run_dir), "--resume",
         "--epochs", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert changed.returncode == 2
    assert "cannot change epochs from 100000 to 3" in changed.stderr


def test_cli_bad_rows_then_retry(faces_csv: Path, tmp_path: Path) -> None:
    lines = faces_csv.read_text().splitlines()
    lines[2] = lines[2].replace(" ", " x", 1)  # one invalid pixel value in data row 2
    bad = tmp_path / "one-bad-row.csv"
    bad.write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "facekp", "train", "--data", str(bad),
               "--out", str(run_dir), "--model", "sezannet", "--epochs", "1"]

    strict = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    lenient = subprocess.run(command + ["--skip-bad-rows"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)

    assert strict.returncode == 2
    assert "skip invalid rows with the skip-bad-rows option" in strict.stderr
    assert "batch" not in strict.stderr
    assert "Traceback" not in strict.stderr
    assert lenient.returncode == 0, lenient.stderr
    assert "status: finished" in lenient.stdout
    assert "invalid rows skipped: 1" in lenient.stdout
