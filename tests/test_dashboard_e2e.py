"""End to end: ``streamlit run apps/dashboard.py`` on 127.0.0.1, driven by headless Chromium (Selenium).

Checks the rendered Results page and a face upload through the browser's own file input, and saves
screenshots under ``test-artifacts/``. The server is stopped in every case (its whole process group).
Skips, saying why, where Debian's ``chromium``/``chromium-driver`` (``make system-deps``) are absent.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "dashboard.py"
ARTIFACTS = ROOT / "test-artifacts"
sys.path.insert(0, str(Path(__file__).resolve().parent))

pytestmark = [pytest.mark.e2e, pytest.mark.once, pytest.mark.timeout(150)]

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,1800"]


def _browser_paths() -> tuple[str, str]:
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver "
                    "(`make system-deps` or `apt-get install chromium chromium-driver`)")
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    return chrome, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def _serve(tmp_path, models: Path, make_models=None):
    port = _free_port()
    env = {**os.environ, "EMOTION_KERAS_MODELS": str(models),
           "EMOTION_KERAS_RESULTS": str(tmp_path / "results"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if make_models:
            make_models()  # while the server starts; it loads models only on first use
        _wait_healthy(url, proc, timeout=40)
        yield url
    finally:
        _stop(proc)
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "streamlit.log", ARTIFACTS / "dashboard-e2e-server.log")


@pytest.fixture
def server(tmp_path):
    """A dashboard server over a tiny face model; yields its URL and stops it whatever happens."""
    from test_dashboard import _face_model

    yield from _serve(tmp_path, tmp_path / "models", lambda: _face_model(tmp_path / "models" / "face"))


@pytest.fixture
def shipped_server(tmp_path):
    """A dashboard server over the shipped models (saved_models/)."""
    yield from _serve(tmp_path, ROOT / "saved_models")


@pytest.fixture
def browser(tmp_path):
    chrome, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, needle: str, timeout: float) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = driver.find_element(By.TAG_NAME, "body").text
        except Exception:  # page still being replaced
            text = ""
        if needle in text:
            return text
        time.sleep(0.3)
    _shot(driver, f"dashboard-timeout-{needle[:20].replace(' ', '_')}")
    raise AssertionError(f"{needle!r} not on the page after {timeout:.0f} s; page text:\n{text[:2000]}")


def _wait_element(driver, css: str, timeout: float):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found[0]
        time.sleep(0.3)
    _shot(driver, "dashboard-timeout-element")
    raise AssertionError(f"no {css} on the page after {timeout:.0f} s")


def _shot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_dashboard_in_a_browser(browser, server, tmp_path):
    # the browser fixture comes first: a machine without chromium skips before any server starts
    from PIL import Image

    browser.get(server)
    text = _wait_text(browser, "Keras backend", 40)
    assert "Results" in text and "Face" in text and "Speech" in text and "Video" in text
    _wait_text(browser, "tiny-face", 20)  # the model folder's card, in the sortable table
    assert _shot(browser, "dashboard-results").stat().st_size > 0

    browser.get(f"{server}/face")
    _wait_text(browser, "Upload a photo", 30)
    img = np.full((48, 48), 170, np.uint8)
    img[14:20, 10:18] = img[14:20, 30:38] = 40
    img[32:36, 14:34] = 60
    face = tmp_path / "face.png"
    Image.fromarray(img).save(face)
    _wait_element(browser, "input[type=file]", 20).send_keys(str(face))
    _wait_text(browser, "face found", 60)
    # the count line renders before the per-face results stream in: wait for those too
    text = _wait_text(browser, "Face 1:", 20)
    assert "1 face found (model: tiny-face)" in text
    _wait_text(browser, "attention heatmap", 10)
    _wait_element(browser, ".vega-embed canvas, .vega-embed svg", 10)  # the emotion bars drawn
    _shot(browser, "dashboard-face-upload")

    # a file of the wrong kind gets a clear message, in the browser too
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not an image")
    browser.get(f"{server}/face")
    _wait_text(browser, "Upload a photo", 30)
    _wait_element(browser, "input[type=file]", 20).send_keys(str(wrong))
    _wait_text(browser, "files are not allowed", 20)  # the uploader refuses it before any upload
    _shot(browser, "dashboard-wrong-type")


@pytest.mark.timeout(300)
def test_shipped_models_face_and_video_pages(browser, shipped_server):
    """As a new user: the sample photo and the sample clip through the shipped models. Screenshots
    ``dashboard-face-shipped.png`` and ``dashboard-video-shipped.png`` show every emotion bar labelled
    and each emotion in the same colour in bars, legend and face box (apps/palette.py)."""
    browser.get(f"{shipped_server}/face")
    _wait_text(browser, "Upload a photo", 30)
    _wait_element(browser, "input[type=file]", 20).send_keys(str(ROOT / "samples" / "face.jpg"))
    _wait_text(browser, "face found", 90)
    _wait_element(browser, ".vega-embed canvas, .vega-embed svg", 20)
    time.sleep(1.5)  # let vega finish drawing
    _shot(browser, "dashboard-face-shipped")

    browser.get(f"{shipped_server}/video")
    _wait_text(browser, "Upload a clip", 30)
    _wait_element(browser, "input[type=file]", 20).send_keys(str(ROOT / "samples" / "clip.flv"))
    _wait_text(browser, "s analysed", 120)
    _wait_element(browser, ".vega-embed canvas, .vega-embed svg", 20)
    time.sleep(1.5)
    _shot(browser, "dashboard-video-shipped")
