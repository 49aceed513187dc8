"""Measure the Streamlit app as a hosted CPU demo would run it: memory, cold start, big data.

Starts ``streamlit run app.py`` on a free port of 127.0.0.1 and drives it with Debian's
chromium through Playwright:

1. server start until ``/_stcore/health`` returns 200, and the server's RSS then;
2. first browser visit until the Predict page shows the sample photo's keypoint table
   (torch import, model load, one prediction), and the RSS then;
3. one more prediction on an uploaded photo, and the RSS after it;
4. optionally (``--rows N``) the Dataset page on an N-row Kaggle-format CSV: the first load
   (parse and summary) and a change of grid page afterwards, from the cached data.

RSS is the resident memory of the server process and all its children, from psutil.
Usage: ``python bench/app_memory.py [--rows 7049] [--photo PATH] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from facekp.data import KeypointSet, load_training_csv, write_training_csv  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SAMPLE_PAIR = REPO / "facekp" / "assets" / "samples" / "astronaut_mirrored_pair.jpg"
TIMEOUT_MS = 300_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"streamlit health check timed out after {timeout} s")


def wait_idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
        ".includes('Running')",
        timeout=TIMEOUT_MS,
    )


def big_csv(rows: int, folder: Path) -> Path:
    """Write an ``rows``-row Kaggle-format CSV by repeating the converted ytf68 faces."""
    sources = [REPO / "data" / "ytf68-train.csv", REPO / "data" / "ytf68-test.csv"]
    source = next((path for path in sources if path.is_file()), None)
    if source is None:
        raise SystemExit(
            "no converted set under data/; run `python -m facekp convert` first "
            "(see its --help) to make data/ytf68-train.csv"
        )
    faces = load_training_csv(source)
    repeats = np.arange(rows) % len(faces)
    tiled = KeypointSet(
        images=faces.images[repeats],
        keypoints=faces.keypoints[repeats],
        names=[f"{faces.names[i]}#{n}" for n, i in enumerate(repeats)] if faces.names else [],
    )
    return write_training_csv(folder / f"bench_{rows}.csv", tiled)


def measure(args: argparse.Namespace) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    results: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="facekp-app-bench-"))
    env = dict(os.environ, FACEKP_RUNS_DIR=str(work / "runs"), FACEKP_DATA_DIR=str(work / "data"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true",
    ]
    csv_path = big_csv(args.rows, work) if args.rows else None

    start = time.monotonic()
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_health(url, server)
        results["server_start_s"] = time.monotonic() - start
        time.sleep(1.0)
        results["rss_after_start_mib"] = rss_mib(server.pid)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)

            # Step 2: the landing page with the sample photo's prediction.
            visit = time.monotonic()
            page.goto(url)
            page.locator('[data-testid="stDataFrame"]').first.wait_for()
            wait_idle(page)
            results["first_page_s"] = time.monotonic() - visit
            results["cold_start_to_first_page_s"] = time.monotonic() - start
            results["rss_after_first_page_mib"] = rss_mib(server.pid)

            # Step 3: one more photo through the uploader.
            photo = Path(args.photo) if args.photo else SAMPLE_PAIR
            predict = time.monotonic()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').first \
                .set_input_files(str(photo))
            page.get_by_role("heading", name=photo.name).wait_for()
            wait_idle(page)
            results["upload_prediction_s"] = time.monotonic() - predict
            results["rss_after_prediction_mib"] = rss_mib(server.pid)

            # Step 4: the Dataset page on a big CSV.
            if csv_path is not None:
                page.goto(f"{url}/dataset")
                page.get_by_text("A path on this server").click()
                wait_idle(page)
                box = page.get_by_label("Path of a CSV file on this server")
                load = time.monotonic()
                box.fill(str(csv_path))
                box.press("Enter")
                page.get_by_text("faces have 0 to 15 labelled keypoints").wait_for()
                wait_idle(page)
                results["dataset_first_load_s"] = time.monotonic() - load
                results["rss_after_dataset_mib"] = rss_mib(server.pid)

                page_box = page.get_by_role("spinbutton", name="Page (of")
                flip = time.monotonic()
                page_box.fill("2")
                page_box.press("Enter")
                page.get_by_text("#24 ").first.wait_for()
                wait_idle(page)
                results["dataset_next_page_s"] = time.monotonic() - flip
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="rows of the Dataset page test CSV")
    parser.add_argument("--photo", help="photo to upload for the second prediction")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    results = measure(args)
    for name, value in results.items():
        print(f"{name:32s} {value:10.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
