"""Checkpoint files: round trip, the shipped model, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facekp.checkpoint import (
    KeypointModel,
    build_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
    shipped_model_path,
)
from facekp.errors import CheckpointError, ImageError
from facekp.evaluate import keypoint_errors
from facekp.keypoints import KEYPOINT_NAMES, flip_keypoints
from facekp.models import create_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Predict on one thread: spinning OpenMP workers slow down shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _checkpoint_file(directory: Path, name: str = "heatmapnet") -> Path:
    torch.manual_seed(1)
    model = create_model(name)
    mean = np.full((15, 2), 48.0, dtype=np.float32)
    mean[0] = np.nan
    checkpoint = build_checkpoint(
        model, name, data={"path": "train.csv", "rows": 10}, mean_keypoints=mean,
        metrics={"val_rmse": 1.5}, command="python -m facekp train --data train.csv",
    )
    return save_checkpoint(checkpoint, directory / f"{name}.pt")


def test_checkpoint_round_trip_predicts_same(tmp_path: Path, real_faces) -> None:
    path = _checkpoint_file(tmp_path)
    torch.manual_seed(1)
    original = create_model("heatmapnet").eval()

    loaded = load_model(path)
    with torch.no_grad():
        expected = original(torch.from_numpy(real_faces.images[:4]).float().div(255).unsqueeze(1))

    predicted = loaded.predict(real_faces.images[:4])
    assert isinstance(loaded, KeypointModel)
    assert loaded.name == "heatmapnet"
    assert not loaded.model.training
    assert predicted.shape == (4, 15, 2)
    assert predicted.dtype == np.float32
    np.testing.assert_allclose(predicted.reshape(4, 30), expected.numpy() * 48 + 48, atol=1e-4)


def test_checkpoint_info_holds_metadata(tmp_path: Path) -> None:
    loaded = load_model(_checkpoint_file(tmp_path))

    assert loaded.info["keypoint_names"] == list(KEYPOINT_NAMES)
    assert loaded.info["input_size"] == 96
    assert loaded.info["data"]["rows"] == 10
    assert loaded.info["metrics"]["val_rmse"] == 1.5
    assert loaded.info["command"].startswith("python -m facekp train")
    assert "state_dict" not in loaded.info
    assert np.isnan(loaded.mean_keypoints[0]).all()
    assert (loaded.mean_keypoints[1:] == 48.0).all()


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    raw = torch.load(_checkpoint_file(tmp_path), weights_only=True)
    assert raw["model_name"] == "heatmapnet"


def test_predict_batches_match_single_pass(tmp_path: Path, real_faces) -> None:
    loaded = load_model(_checkpoint_file(tmp_path))
    together = loaded.predict(real_faces.images[:10])
    in_threes = loaded.predict(real_faces.images[:10], batch_size=3)
    np.testing.assert_allclose(together, in_threes, atol=1e-4)


def test_predict_empty_batch(tmp_path: Path) -> None:
    loaded = load_model(_checkpoint_file(tmp_path))
    assert loaded.predict(np.zeros((0, 96, 96), np.uint8)).shape == (0, 15, 2)


@pytest.mark.parametrize(
    "faces",
    [np.zeros((96, 96), np.uint8), np.zeros((2, 64, 64), np.uint8), np.zeros((2, 96, 96), float)],
    ids=["no-batch-axis", "wrong-size", "float"],
)
def test_predict_rejects_bad_faces(tmp_path: Path, faces: np.ndarray) -> None:
    loaded = load_model(_checkpoint_file(tmp_path))
    with pytest.raises(ImageError, match="faces must be"):
        loaded.predict(faces)


def test_save_replaces_atomically(tmp_path: Path) -> None:
    path = _checkpoint_file(tmp_path)
    save_checkpoint(read_checkpoint(path), path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_shipped_model_beats_mean_face(real_faces) -> None:
    shipped = load_model()
    assert shipped.path == shipped_model_path()

    predictions = shipped.predict(real_faces.images)
    rmse, _, _ = keypoint_errors(predictions, real_faces.keypoints)
    mean = np.broadcast_to(shipped.mean_keypoints, real_faces.keypoints.shape)
    baseline, _, _ = keypoint_errors(mean, real_faces.keypoints)

    assert shipped_model_path().stat().st_size < 8_000_000
    assert rmse < baseline


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "absent.pt")


def test_folder_instead_of_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is not a file"):
        load_model(tmp_path)


def _assert_clean_message(error: CheckpointError, path: Path, reason: str) -> None:
    message = str(error)
    assert message.startswith(f"{path} is not a facekp checkpoint (")
    assert reason in message
    assert "pass a best.pt or last.pt written by python -m facekp train" in message
    assert "weights_only" not in message
    assert "\x1b[" not in message
    assert "\n" not in message


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = _checkpoint_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "(the file is truncated or damaged)")


def test_random_bytes_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "(it is not a PyTorch file)")


def test_empty_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "(the file is empty)")


def test_json_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"status": "finished"}\n')
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "(it is JSON text)")


def test_jpeg_checkpoint(tmp_path: Path, ytf68: Path) -> None:
    path = next((ytf68 / "test").glob("*.jpg"))
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "(it is a JPEG image)")


def test_plain_state_dict_is_not_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(create_model("sezannet").state_dict(), path)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "such as a plain state dict")


def test_checkpoint_with_pickled_object(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(create_model("sezannet"), path)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    _assert_clean_message(caught.value, path, "contains pickled Python objects")


def test_weights_of_other_model(tmp_path: Path) -> None:
    checkpoint = read_checkpoint(_checkpoint_file(tmp_path, "sezannet"))
    checkpoint["model_name"] = "heatmapnet"
    path = save_checkpoint(checkpoint, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="does not fit model 'heatmapnet'"):
        load_model(path)


def test_unknown_model_name(tmp_path: Path) -> None:
    checkpoint = read_checkpoint(_checkpoint_file(tmp_path))
    checkpoint["model_name"] = "resnet9000"
    path = save_checkpoint(checkpoint, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="'resnet9000', which this facekp does not have"):
        load_model(path)


def test_newer_format_version(tmp_path: Path) -> None:
    checkpoint = read_checkpoint(_checkpoint_file(tmp_path))
    checkpoint["format_version"] = 99
    path = save_checkpoint(checkpoint, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(path)


def test_flip_average_is_mean_of_both_views(tmp_path: Path, real_faces) -> None:
    loaded = load_model(_checkpoint_file(tmp_path))
    faces = real_faces.images[:3]
    plain = loaded.predict(faces)
    mirrored = flip_keypoints(loaded.predict(np.ascontiguousarray(faces[:, :, ::-1])))

    loaded.flip_average = True
    averaged = loaded.predict(faces)

    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-4)
    assert not np.allclose(averaged, plain, atol=1e-3)
