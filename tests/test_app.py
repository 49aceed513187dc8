"""Every page of the Streamlit app under AppTest, with the shipped model and real faces."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from facekp import gradcam, runs
from facekp.checkpoint import load_model, shipped_model_path
from facekp.data import load_training_csv, write_training_csv
from facekp.errors import DataFormatError
from facekp.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # Seconds for one script run on two shared cores.
PATH_SOURCE = "A path on this server"
TRAIN_SECONDS = 180


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty runs and data folders for the app, so tests never see each other's files."""
    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(tmp_path / "runs"))
    monkeypatch.setenv("FACEKP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FACEKP_MODEL", raising=False)  # Always the shipped model.
    monkeypatch.chdir(REPO)
    return tmp_path


@pytest.fixture(scope="module")
def faces_csv(real_faces, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_training_csv(tmp_path_factory.mktemp("faces") / "faces.csv", real_faces)


def start_app(page: str | None = None) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not app.exception, app.exception
    if page is not None:
        app.switch_page(f"pages/{page}.py").run()
        assert not app.exception, app.exception
    return app


def choose_csv(app: AppTest, csv_path: Path, picker: str) -> AppTest:
    """Pick "a path on this server" in the data set picker ``picker`` and type ``csv_path``."""
    app.radio(key=f"{picker}_source").set_value(PATH_SOURCE).run()
    app.text_input(key=f"{picker}_path").set_value(str(csv_path)).run()
    assert not app.exception, app.exception
    return app


def elements(app: AppTest, kind: str) -> list:
    return list(app.get(kind))


def model_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_predict_sample_photo(app_env: Path) -> None:
    from pages import common

    cached = common.load_model_cached(shipped_model_path())
    before = model_fingerprint(cached.model)
    app = start_app()

    assert not app.error
    assert app.title[0].value == "Predict facial keypoints"
    table = app.dataframe[0].value
    assert list(table.columns) == ["face", "keypoint", "x", "y"]
    assert len(table) % NUM_KEYPOINTS == 0
    assert len(table) >= NUM_KEYPOINTS
    assert np.isfinite(table[["x", "y"]].to_numpy(float)).all()
    labels = [button.proto.label for button in elements(app, "download_button")]
    assert labels == ["Download CSV", "Download JSON", "Download annotated PNG"]
    faces = len(table) // NUM_KEYPOINTS
    assert len(elements(app, "image")) == 1 + faces  # The photo, then each face crop.
    assert common.load_model_cached(shipped_model_path()) is cached
    assert model_fingerprint(cached.model) == before
    assert not cached.model.training


def test_predict_bad_file_beside_good(app_env: Path, ytf68: Path) -> None:
    photo = ytf68 / "test" / "Richard_Paul_Evans_21.jpg"
    app = start_app()
    app.file_uploader[0].set_value(
        [
            ("face.jpg", photo.read_bytes(), "image/jpeg"),
            ("../../etc/broken.jpg", b"not an image at all", "image/jpeg"),
        ]
    )
    app.run()

    assert not app.exception, app.exception
    assert len(app.error) == 1
    assert "broken.jpg" in app.error[0].value
    assert len(app.dataframe) == 1
    assert len(app.dataframe[0].value) == NUM_KEYPOINTS
    assert not (REPO.parent / "etc" / "broken.jpg").exists()


def test_predict_uploads_replace_sample(app_env: Path, ytf68: Path) -> None:
    names = ["Richard_Paul_Evans_21.jpg", "Richard_Paul_Evans_50.jpg"]
    app = start_app()
    assert len(app.multiselect) == 1
    app.file_uploader[0].set_value(
        [(name, (ytf68 / "test" / name).read_bytes(), "image/jpeg") for name in names]
    )
    app.run()

    assert not app.exception, app.exception
    assert not app.error
    assert len(app.multiselect) == 0
    assert [header.value for header in app.subheader] == [f"` {name} `" for name in names]
    buttons = [button.proto for button in elements(app, "download_button")]
    assert buttons[0].label == "Download JSON of all 2 photos"
    assert len(app.dataframe) == 2


def test_predict_avif_upload(app_env: Path, ytf68: Path) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(ytf68 / "test" / "Richard_Paul_Evans_21.jpg").save(buffer, format="AVIF")
    app = start_app()

    assert "avif" in [kind.lstrip(".") for kind in app.file_uploader[0].proto.type]
    app.file_uploader[0].set_value([("face.avif", buffer.getvalue(), "image/avif")])
    app.run()

    assert not app.exception, app.exception
    assert not app.error
    assert len(app.dataframe) == 1
    assert len(app.dataframe[0].value) == NUM_KEYPOINTS


def test_dataset_page_browses_faces(app_env: Path, faces_csv: Path, real_faces) -> None:
    app = choose_csv(start_app("dataset"), faces_csv, "dataset")

    assert not app.error
    assert app.metric[0].value == str(len(real_faces))
    assert len(elements(app, "image")) >= 24  # A full page of the grid, the zoom, the mean.
    assert len(elements(app, "vega_lite_chart")) == 1
    mean_table = app.dataframe[-1].value
    assert list(mean_table["keypoint"]) == list(KEYPOINT_NAMES)
    assert np.isfinite(mean_table[["mean x", "mean y", "std x", "std y"]].to_numpy(float)).all()

    # Every real face has all 15 keypoints, so a filter of 0 to 3 leaves none.
    app.slider[0].set_value((0, 3)).run()
    assert not app.exception, app.exception
    assert f"0 of {len(real_faces)} faces" in app.caption[0].value


def test_dataset_upload_saved_under_hash(app_env: Path, faces_csv: Path, real_faces) -> None:
    data = faces_csv.read_bytes()
    app = start_app("dataset")
    app.radio(key="dataset_source").set_value("Upload a training.csv").run()
    app.file_uploader(key="dataset_upload").set_value(("../../escape.csv", data, "text/csv"))
    app.run()

    assert not app.exception, app.exception
    assert not app.error
    assert app.metric[0].value == str(len(real_faces))
    saved = list((app_env / "data" / "uploads").iterdir())
    assert [path.name for path in saved] == [hashlib.sha256(data).hexdigest()[:24] + ".csv"]
    assert saved[0].read_bytes() == data
    assert not (app_env / "escape.csv").exists()
    assert not (REPO.parent / "escape.csv").exists()


def test_dataset_switch_to_smaller_set(app_env: Path, faces_csv: Path, real_faces) -> None:
    small = write_training_csv(app_env / "five.csv", real_faces.subset(range(5)))
    app = choose_csv(start_app("dataset"), faces_csv, "dataset")
    app.number_input(key="dataset_face").set_value(len(real_faces) - 1).run()
    app.number_input(key="dataset_page").set_value(2).run()

    app.text_input(key="dataset_path").set_value(str(small)).run()

    assert not app.exception, app.exception
    assert app.metric[0].value == "5"
    assert app.number_input(key="dataset_face").value == 4
    assert app.number_input(key="dataset_page").value == 1


def test_dataset_page_rejects_bad_csv(app_env: Path) -> None:
    bad = app_env / "bad.csv"
    bad.write_text("left_eye_center_x,Image\n1.0,1 2 3\n")
    app = choose_csv(start_app("dataset"), bad, "dataset")

    assert len(app.error) == 1
    assert "cannot be used" in app.error[0].value
    assert bad.read_text() == "left_eye_center_x,Image\n1.0,1 2 3\n"


def test_error_from_file_shown_verbatim(app_env: Path) -> None:
    # A header like a line of /etc/passwd: Markdown would turn ":x:" into an emoji.
    bad = app_env / "passwd.csv"
    bad.write_text("root:x:0:0:**root**:/root:/bin/bash,Image\n1,2\n")
    with pytest.raises(DataFormatError) as raised:
        load_training_csv(bad)
    app = choose_csv(start_app("dataset"), bad, "dataset")

    assert len(app.error) == 1
    body = app.error[0].value
    summary, _, detail = body.partition("\n\n")
    assert "cannot be used" in summary
    assert ":x:" not in summary
    assert detail == f"` {raised.value} `"


def test_literal_text_keeps_markdown_characters() -> None:
    from pages import common

    assert common.code_span("a `b` c") == "`` a `b` c ``"
    assert common.code_span("`start") == "`` `start ``"
    text = "first :x: **line**\n\n  second _line_"
    assert common.literal_text(text) == "` first :x: **line** `  \n  \n`   second _line_ `"


def test_rejected_upload_not_kept(app_env: Path, faces_csv: Path) -> None:
    app = start_app("dataset")
    app.radio(key="dataset_source").set_value("Upload a training.csv").run()
    app.file_uploader(key="dataset_upload").set_value(
        ("my test.csv", b"ImageId,Image\n1,1 2 3\n", "text/csv")
    )
    app.run()

    assert not app.exception, app.exception
    assert len(app.error) == 1
    message = app.error[0].value
    assert "my test.csv" in message
    assert "uploads" not in message
    assert "test.csv (ImageId, Image)" in message
    assert list((app_env / "data" / "uploads").glob("*.csv")) == []

    app.file_uploader(key="dataset_upload").set_value(
        ("good faces.csv", faces_csv.read_bytes(), "text/csv")
    )
    app.run()
    app.radio(key="dataset_source").set_value("A data set under data/").run()

    assert not app.exception, app.exception
    assert not app.error
    labels = app.selectbox(key="dataset_converted").options
    assert len(labels) == 1
    assert labels[0].startswith("good faces.csv (uploaded, uploads")


def test_picker_default_skips_broken_and_uploads(
    app_env: Path, faces_csv: Path, real_faces
) -> None:
    data = app_env / "data"
    older = write_training_csv(data / "older.csv", real_faces.subset(range(4)))
    newest = write_training_csv(data / "sets" / "newest.csv", real_faces.subset(range(6)))
    broken = data / "broken.csv"
    broken.write_text("not,a,training,csv\n")
    os.utime(older, (1_000_000, 1_000_000))
    os.utime(newest, (2_000_000, 2_000_000))

    app = start_app("dataset")
    app.radio(key="dataset_source").set_value("Upload a training.csv").run()
    app.file_uploader(key="dataset_upload").set_value(
        ("upload.csv", faces_csv.read_bytes(), "text/csv")
    )
    app.run()
    app.radio(key="dataset_source").set_value("A data set under data/").run()

    assert not app.exception, app.exception
    picker = app.selectbox(key="dataset_converted")
    assert picker.options[:3] == ["broken.csv", "sets/newest.csv", "older.csv"]
    assert picker.options[3].startswith("upload.csv (uploaded, uploads")
    assert picker.value == "sets/newest.csv"
    assert app.metric[0].value == "6"

    for page, picker_key in (("train", "train_data"), ("compare", "compare_data")):
        other = start_app(page)
        assert not other.exception, other.exception
        assert other.selectbox(key=f"{picker_key}_converted").value == "sets/newest.csv"
        assert not other.error


def test_picker_all_files_broken(app_env: Path) -> None:
    broken = app_env / "data" / "broken.csv"
    broken.parent.mkdir()
    broken.write_text("")
    app = start_app("dataset")

    assert not app.exception, app.exception
    assert app.selectbox(key="dataset_converted").value is None
    assert "None of the CSV files under data/ loads" in app.warning[0].value
    assert not app.error


def test_compare_page_scores_faces(app_env: Path, faces_csv: Path, real_faces) -> None:
    app = choose_csv(start_app("compare"), faces_csv, "compare_data")
    app.selectbox(key="compare_split").set_value("All faces").run()

    assert not app.exception, app.exception
    assert not app.error
    assert app.metric[0].value == str(len(real_faces))
    assert float(app.metric[1].value) > 0
    assert len(elements(app, "vega_lite_chart")) == 2
    captions = [image.proto.imgs[0].caption for image in elements(app, "image")]
    errors = [float(caption.split(": ")[1].split(" px")[0]) for caption in captions]
    assert len(errors) >= 6
    assert errors == sorted(errors, reverse=True)


def test_compare_shipped_model_default_split(app_env: Path, faces_csv: Path, real_faces) -> None:
    assert load_model(shipped_model_path()).info["config"]["val_fraction"] == 0
    app = choose_csv(start_app("compare"), faces_csv, "compare_data")

    assert not app.exception, app.exception
    assert not app.error
    assert app.selectbox(key="compare_split").value == "All faces"
    assert app.metric[0].value == str(len(real_faces))

    app.selectbox(key="compare_split").set_value("Validation part").run()

    assert not app.exception, app.exception
    assert not app.error
    assert len(app.warning) == 1
    assert "validation part is empty" in app.warning[0].value
    assert "0.00" in app.warning[0].value
    assert len(app.metric) == 0

    app.number_input(key="compare_fraction").set_value(0.25).run()

    assert not app.exception, app.exception
    assert not app.warning
    assert 0 < int(app.metric[0].value) < len(real_faces)


def test_gradcam_page_sample_photo(app_env: Path) -> None:
    app = start_app("gradcam")

    assert not app.error
    assert app.radio(key="gradcam_source").value == "A sample photo"
    assert len(elements(app, "image")) == 3
    assert app.selectbox(key="gradcam_layer").value in app.selectbox(key="gradcam_layer").options


def test_gradcam_page_layers_and_model_unchanged(app_env: Path, faces_csv: Path) -> None:
    shipped = load_model(shipped_model_path())
    expected_layers = [layer.name for layer in gradcam.list_layers(shipped.model)]
    app = start_app("gradcam")
    app.radio(key="gradcam_source").set_value("From a data set").run()
    app = choose_csv(app, faces_csv, "gradcam_data")

    assert not app.error
    layer_box = app.selectbox(key="gradcam_layer")
    assert layer_box.options == expected_layers
    assert len(elements(app, "image")) == 3
    first = [image.proto.imgs[0].url for image in elements(app, "image")]

    from pages import common

    cached = common.load_model_cached(shipped_model_path())
    before = model_fingerprint(cached.model)
    other = next(name for name in expected_layers if name != layer_box.value)
    layer_box.set_value(other).run()
    app.selectbox(key="gradcam_sign").set_value("- (left / up)").run()

    assert not app.exception, app.exception
    assert app.selectbox(key="gradcam_layer").value == other
    assert [image.proto.imgs[0].url for image in elements(app, "image")] != first
    assert model_fingerprint(cached.model) == before
    assert not cached.model.training
    assert all(parameter.grad is None for parameter in cached.model.parameters())


def test_train_page_rejects_bad_data(app_env: Path, real_faces) -> None:
    bad = app_env / "bad.csv"
    bad.write_text("ImageId,Image\n1,1 2 3\n")
    app = choose_csv(start_app("train"), bad, "train_data")

    assert len(app.error) == 1
    assert "cannot be used for training" in app.error[0].value
    app.button[0].click().run()

    assert not app.exception, app.exception
    assert "No run was started" in app.error[-1].value
    assert not app.success
    assert runs.list_runs() == []
    assert not (app_env / "runs").exists() or list((app_env / "runs").iterdir()) == []

    # One face cannot be split into training and validation parts.
    one_face = write_training_csv(app_env / "one.csv", real_faces.subset([0]))
    app.text_input(key="train_data_path").set_value(str(one_face)).run()
    assert not app.error
    app.button[0].click().run()

    assert not app.exception, app.exception
    assert len(app.error) == 1
    assert "No run was started" in app.error[0].value
    assert "one.csv" in app.error[0].value
    assert runs.list_runs() == []


@pytest.mark.slow
def test_train_page_starts_run(app_env: Path, faces_csv: Path) -> None:
    app = choose_csv(start_app("train"), faces_csv, "train_data")
    assert app.info[0].value.startswith("No runs yet")
    app.number_input(key="train_epochs").set_value(1)
    app.selectbox(key="train_model").set_value("sezannet")
    app.number_input(key="train_batch_size").set_value(16)
    app.button[0].click().run()

    assert not app.exception, app.exception
    assert any(message.value.startswith("Started run") for message in app.success)
    started = runs.list_runs()
    assert len(started) == 1

    deadline = time.monotonic() + TRAIN_SECONDS
    while runs.read_run(started[0].path).is_active and time.monotonic() < deadline:
        time.sleep(0.5)
    app.run()

    finished = runs.read_run(started[0].path)
    assert finished.status == "finished", finished.log_tail()
    # The chosen run's loss curve and the validation curves of every run.
    assert len(elements(app, "vega_lite_chart")) == 2
    assert len(elements(app, "progress")) == 1
    table = app.dataframe[-1].value
    assert list(table["run"]) == [finished.name]
    assert list(table["status"]) == ["finished"]
