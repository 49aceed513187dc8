"""Run folders: reading half-written files, spotting dead trainers, naming runs safely."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facekp import runs


def write_run(run_dir: Path, status: str, pid: int | None, metrics_text: str = "") -> Path:
    run_dir.mkdir(parents=True)
    record = {"model": "sezannet", "epochs": 3, "status": status, "pid": pid, "error": None}
    (run_dir / runs.RUN_FILE).write_text(json.dumps(record))
    (run_dir / runs.METRICS_FILE).write_text(metrics_text)
    return run_dir


def wait_until_zombie(process: subprocess.Popen) -> None:
    import psutil

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {process.pid} did not exit")


def test_metrics_skip_half_written_line(tmp_path: Path) -> None:
    text = (
        '{"epoch": 1, "train_rmse": 3.5, "val_rmse": 3.0}\n'
        "\n"
        '{"epoch": 2, "train_rmse": 2.5, "val_rmse": 2.0}\n'
        '{"epoch": 3, "train_rm'
    )
    write_run(tmp_path / "r", "running", None, text)

    metrics = runs.read_metrics(tmp_path / "r")

    assert [m["epoch"] for m in metrics] == [1, 2]
    assert runs.read_run(tmp_path / "r").best_val_rmse == 2.0


def test_half_written_progress_reads_none(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r", "running", None)
    (run_dir / runs.PROGRESS_FILE).write_text('{"epoch": 1, "epo')

    assert runs.read_progress(run_dir) is None
    assert runs.fraction_done(None) == 0.0
    assert runs.time_left_seconds(None) is None


def test_garbage_run_files_read_as_unknown(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / runs.RUN_FILE).write_bytes(b"\xff\xfe\x00 not json")
    (run_dir / runs.METRICS_FILE).write_bytes(b'\xff\n[1, 2]\n{"epoch": "one", "val_rmse": null}\n')
    (run_dir / runs.PROGRESS_FILE).write_text('{"epoch": "x", "epochs": 0}')

    info = runs.read_run(run_dir)

    assert info.status == "unknown"
    assert info.metrics == [{"epoch": "one", "val_rmse": None}]
    assert info.best_val_rmse is None
    assert runs.fraction_done(info.progress) == 0.0
    assert runs.time_left_seconds(info.progress) is None


def test_time_left_from_progress() -> None:
    # Epoch 2 of 4 is half done after 30 s, so 1.5 of 4 epochs took 30 s and 2.5 remain.
    progress = {"epoch": 2, "epochs": 4, "batch": 5, "batches": 10, "elapsed_seconds": 30.0}

    assert runs.fraction_done(progress) == pytest.approx(1.5 / 4)
    assert runs.time_left_seconds(progress) == pytest.approx(50.0)


def test_running_status_with_dead_pid_is_failed(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    write_run(tmp_path / "r", "running", process.pid)

    info = runs.read_run(tmp_path / "r")

    assert info.status == "failed"
    assert info.error is not None
    assert str(process.pid) in info.error
    assert not info.is_active


def test_zombie_trainer_is_not_alive(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until_zombie(process)  # Exited but not reaped, so the pid still exists.
    try:
        write_run(tmp_path / "r", "running", process.pid)
        assert runs.read_run(tmp_path / "r").status == "failed"
    finally:
        process.wait()


def test_dead_pid_after_stop_request_is_stopped(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    run_dir = write_run(tmp_path / "r", "running", process.pid)
    (run_dir / runs.STOP_FILE).touch()

    assert runs.read_run(run_dir).status == "stopped"


def test_live_pid_keeps_running_status(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_run(tmp_path / "r", "running", process.pid)
        info = runs.read_run(tmp_path / "r")
        assert info.status == "running"
        assert info.is_active
    finally:
        process.kill()
        process.wait()


def test_reused_pid_is_not_the_trainer(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "r"
        run_dir.mkdir()
        # The launch record names a live pid, but one that started long before the launch.
        launch = {"pid": process.pid, "create_time": 1.0, "started": time.time()}
        (run_dir / runs.LAUNCH_FILE).write_text(json.dumps(launch))
        info = runs.read_run(run_dir)
        assert info.status == "failed"
        assert "exited before it recorded a status" in (info.error or "")
    finally:
        process.kill()
        process.wait()


def test_list_runs_newest_first_skips_other_folders(tmp_path: Path) -> None:
    write_run(tmp_path / "20260101-000000-sezannet", "finished", None)
    write_run(tmp_path / "20260102-000000-sezannet", "finished", None)
    (tmp_path / "notes").mkdir()
    (tmp_path / "stray.txt").write_text("not a run")

    names = [run.name for run in runs.list_runs(tmp_path)]

    assert names == ["20260102-000000-sezannet", "20260101-000000-sezannet"]
    assert runs.list_runs(tmp_path / "missing") == []


def test_runs_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path))
    assert runs.runs_dir() == tmp_path
    monkeypatch.delenv(runs.RUNS_DIR_ENV)
    assert runs.runs_dir() == Path("runs")


def test_run_names_reject_paths() -> None:
    name = runs.new_run_name("sezannet", now=0)

    assert runs.is_run_name(name)
    assert "/" not in name
    assert runs.is_run_name(runs.new_run_name("heatmapnet-lite", now=0))
    for bad in ("../escape", "sezannet/../../x", "", "SezanNet"):
        with pytest.raises(runs.RunError):
            runs.new_run_name(bad)


def test_start_rejects_invalid_settings(tmp_path: Path) -> None:
    data = tmp_path / "training.csv"
    data.write_text("x\n")
    cases = [
        runs.TrainSettings(data=tmp_path / "missing.csv", model="sezannet", epochs=1),
        runs.TrainSettings(data=data, model="no_such_model", epochs=1),
        runs.TrainSettings(data=data, model="sezannet", epochs=0),
        runs.TrainSettings(data=data, model="sezannet", epochs=1, lr=-1.0),
        runs.TrainSettings(data=data, model="sezannet", epochs=1, val_fraction=1.0),
    ]
    for settings in cases:
        with pytest.raises(runs.RunError):
            runs.start_run(settings, root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_rejects_run_without_checkpoint(tmp_path: Path) -> None:
    write_run(tmp_path / "r", "failed", None)

    with pytest.raises(runs.RunError, match="last.pt"):
        runs.resume_run(tmp_path / "r")


# -- with the real trainer -------------------------------------------------------------------

RUN_TIMEOUT_SECONDS = 180


def wait_for(run_dir: Path, condition, what: str) -> runs.RunInfo:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        info = runs.read_run(run_dir)
        if condition(info):
            return info
        time.sleep(0.25)
    info = runs.read_run(run_dir)
    raise AssertionError(f"run {info.name} never {what}; status {info.status}\n{info.log_tail()}")


@pytest.fixture(scope="module")
def small_csv(real_faces, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facekp.data import write_training_csv

    return write_training_csv(tmp_path_factory.mktemp("data") / "small.csv", real_faces)


@pytest.mark.slow
def test_two_runs_at_once_finish(small_csv: Path, tmp_path: Path) -> None:
    settings = runs.TrainSettings(
        data=small_csv, model="sezannet", epochs=1, batch_size=16, val_fraction=0.2
    )
    first = runs.start_run(settings, root=tmp_path)
    second = runs.start_run(settings, root=tmp_path)

    assert first.name != second.name
    assert first.status in ("starting", "running")
    assert second.status in ("starting", "running")
    for started in (first, second):
        info = wait_for(started.path, lambda run: not run.is_active, "ended")
        assert info.status == "finished", info.error
        assert [m["epoch"] for m in info.metrics] == [1]
        assert info.best_val_rmse is not None
        assert info.best_checkpoint is not None
        assert (info.path / runs.LOG_FILE).stat().st_size > 0
    assert {run.name for run in runs.list_runs(tmp_path)} == {first.name, second.name}


@pytest.mark.slow
def test_stop_then_resume_run(small_csv: Path, tmp_path: Path) -> None:
    # Many epochs, so the run is still going when it is stopped.
    settings = runs.TrainSettings(data=small_csv, model="sezannet", epochs=500, batch_size=16)
    run = runs.start_run(settings, root=tmp_path)
    wait_for(run.path, lambda info: len(info.metrics) >= 1, "finished an epoch")

    runs.stop_run(run.path)
    stopped = wait_for(run.path, lambda info: not info.is_active, "stopped")
    epochs_before = len(stopped.metrics)

    assert stopped.status == "stopped"
    assert stopped.last_checkpoint is not None
    assert epochs_before < 500

    resumed = runs.resume_run(run.path)
    assert resumed.is_active
    running = wait_for(
        run.path, lambda info: len(info.metrics) > epochs_before, "continued after resuming"
    )
    assert running.pid != stopped.pid
    runs.stop_run(run.path)
    final = wait_for(run.path, lambda info: not info.is_active, "stopped again")
    assert final.status == "stopped"
    assert final.config.get("epochs") == 500
