"""The app in a real browser: Debian's chromium driven by Playwright against `streamlit run`.

The server runs on a free port of 127.0.0.1 with its own runs and data folders, and is
stopped after the tests, together with any training run it started. Screenshots go to
``test-artifacts/``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from facekp import runs
from facekp.data import write_training_csv

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Two shared cores: the first page load imports torch and loads the model.
STARTUP_SECONDS = 90
STEP_MS = 90_000
TRAIN_MS = 150_000

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"streamlit health check timed out after {STARTUP_SECONDS} s")


@pytest.fixture(scope="module")
def app_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    folders = {"runs": root / "runs", "data": root / "data", "files": root / "files"}
    for folder in folders.values():
        folder.mkdir()
    return folders


@pytest.fixture(scope="module")
def app_url(app_folders: dict[str, Path]) -> Iterator[str]:
    port = free_port()
    env = dict(
        os.environ,
        FACEKP_RUNS_DIR=str(app_folders["runs"]),
        FACEKP_DATA_DIR=str(app_folders["data"]),
    )
    env.pop("FACEKP_MODEL", None)  # Always the shipped model.
    log_path = app_folders["files"] / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, process, log_path)
        yield url
    finally:
        for run in runs.list_runs(app_folders["runs"]):
            if run.is_active:
                runs.stop_run(run.path)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url: str, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"))
    context.close()


def open_page(page, url: str, path: str = "") -> None:
    page.goto(f"{url}/{path}")
    page.wait_for_selector('[data-testid="stApp"]')
    wait_until_idle(page)


def wait_until_idle(page) -> None:
    """Wait until the script run finished: the status widget shows no running state."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')"
    )
    page.wait_for_timeout(300)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def upload(page, label: str, files: list[Path]) -> None:
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text=label).first
    uploader.locator('input[type="file"]').set_input_files([str(path) for path in files])


def face_photo(ytf68: Path) -> Path:
    # A frontal test photo that the converter's detector finds a face in.
    return ytf68 / "test" / "Richard_Paul_Evans_21.jpg"


def test_page_url_on_fresh_server(page, app_url: str) -> None:
    # Runs first, while no session has called st.navigation on this server yet.
    open_page(page, app_url, "train")
    page.get_by_role("heading", name="Predict facial keypoints").wait_for()
    wait_until_idle(page)
    shot(page, "fresh-server-page-url")

    sidebar = page.locator('[data-testid="stSidebar"]')
    links = sidebar.locator('[data-testid="stSidebarNavLink"]')
    assert links.count() == 5
    assert sidebar.get_by_text("common", exact=True).count() == 0
    assert sidebar.get_by_text("Model", exact=True).count() >= 1


def test_predict_uploaded_photo(page, app_url: str, ytf68: Path) -> None:
    open_page(page, app_url)
    page.get_by_text("face(s), predicted keypoints in blue").first.wait_for()
    upload(page, "Photos", [face_photo(ytf68)])

    heading = page.get_by_role("heading", name="Richard_Paul_Evans_21.jpg")
    heading.wait_for()
    wait_until_idle(page)
    shot(page, "predict-upload")

    # Only the uploaded photo: the sample photo that the page starts with is gone.
    captions = page.get_by_text("face(s), predicted keypoints in blue")
    captions.first.wait_for()
    tables = page.locator('[data-testid="stDataFrame"]')
    tables.first.wait_for()
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for()

    assert captions.count() == 1
    assert captions.first.inner_text().startswith("1 face(s)")
    assert tables.count() == 1
    assert page.get_by_role("button", name="Download JSON", exact=True).count() == 1
    assert page.get_by_role("heading", name="astronaut.jpg").count() == 0
    assert images.first.evaluate("img => img.naturalWidth") > 0


def test_predict_avif_photo(page, app_url: str, app_folders: dict[str, Path], ytf68: Path) -> None:
    from PIL import Image

    avif = app_folders["files"] / "face.avif"
    Image.open(face_photo(ytf68)).save(avif, format="AVIF")
    open_page(page, app_url)
    upload(page, "Photos", [avif])

    page.get_by_role("heading", name="face.avif").wait_for()
    captions = page.get_by_text("face(s), predicted keypoints in blue")
    captions.first.wait_for()
    wait_until_idle(page)
    shot(page, "predict-avif")

    assert page.get_by_text("files are not allowed").count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert captions.first.inner_text().startswith("1 face(s)")


def test_predict_rejects_non_image(page, app_url: str, app_folders: dict[str, Path]) -> None:
    fake = app_folders["files"] / "not_a_photo.jpg"
    fake.write_text("this is a text file, not a JPEG\n")
    open_page(page, app_url)
    upload(page, "Photos", [fake])

    error = page.locator('[data-testid="stAlertContentError"]').filter(has_text="not_a_photo.jpg")
    error.wait_for()
    wait_until_idle(page)
    shot(page, "predict-not-an-image")

    # The failed upload replaces the sample photo, so no keypoints are shown.
    assert error.count() == 1
    assert page.get_by_text("face(s), predicted keypoints in blue").count() == 0


def test_file_error_text_is_literal(page, app_url: str, app_folders: dict[str, Path]) -> None:
    bad = app_folders["files"] / "passwd.csv"
    header = "root:x:0:0:**root**:/root:/bin/bash"
    bad.write_text(f"{header},Image\n1,2\n")
    open_page(page, app_url, "dataset")
    page.get_by_text("A path on this server").click()
    wait_until_idle(page)
    field = page.get_by_label("Path of a CSV file on this server")
    field.fill(str(bad))
    field.press("Enter")

    error = page.locator('[data-testid="stAlertContentError"]')
    error.wait_for()
    wait_until_idle(page)
    shot(page, "dataset-literal-error")

    text = error.first.inner_text()
    assert header in text
    assert "\u274c" not in text  # The emoji that ":x:" becomes as Markdown.
    assert error.first.locator("strong, em").count() == 0


def test_gradcam_layer_changes_overlay(page, app_url: str, ytf68: Path) -> None:
    open_page(page, app_url, "gradcam")
    page.get_by_text("Upload a photo").click()
    wait_until_idle(page)
    upload(page, "Photo with a face", [face_photo(ytf68)])
    page.get_by_text("Grad-CAM overlay").wait_for()
    wait_until_idle(page)
    shot(page, "gradcam-default-layer")
    before = first_image_source(page)

    layer_box = page.get_by_role("combobox", name="Layer")
    current = layer_box.input_value()
    layer_box.click()
    options = page.get_by_role("option")
    options.first.wait_for()
    names = [text.strip() for text in options.all_inner_texts()]
    other = next(name for name in names if name != current)
    page.get_by_role("option", name=other, exact=True).click()
    page.wait_for_function(
        "src => { const img = document.querySelector('[data-testid=\"stImage\"] img');"
        " return img && img.src !== src; }",
        arg=before,
    )
    wait_until_idle(page)
    shot(page, "gradcam-other-layer")

    assert len(names) >= 2
    assert layer_box.input_value() == other
    assert first_image_source(page) != before


def first_image_source(page) -> str:
    return page.locator('[data-testid="stImage"] img').first.get_attribute("src")


def test_train_one_epoch_run(
    page, app_url: str, app_folders: dict[str, Path], real_faces
) -> None:
    csv_path = write_training_csv(app_folders["files"] / "small_training.csv", real_faces)
    open_page(page, app_url, "train")
    page.get_by_text("Upload a training.csv").click()
    wait_until_idle(page)
    upload(page, "Kaggle-format training.csv", [csv_path])
    wait_until_idle(page)

    # Inside a form, Enter would submit it, so the value is only typed.
    page.get_by_label("Epochs").fill("1")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Started run").wait_for()

    page.get_by_text("finished. Pick its checkpoint").wait_for(timeout=TRAIN_MS)
    chart = page.locator('[data-testid="stVegaLiteChart"]')
    chart.first.wait_for()
    wait_until_idle(page)
    chart.first.scroll_into_view_if_needed()
    shot(page, "train-finished")

    finished = runs.list_runs(app_folders["runs"])
    assert len(finished) == 1
    assert finished[0].status == "finished"
    assert len(finished[0].metrics) == 1
    assert chart.count() >= 1
