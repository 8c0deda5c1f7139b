"""A built, non-editable wheel installed into a fresh venv: ``emotion-keras predict`` finds the
shipped models and ``emotion-keras dashboard`` starts (its health endpoint answers).

Offline and fast: the wheel is built without build isolation, installed with ``--no-deps``, and the
fresh venv sees this environment's dependencies through a ``.pth`` file (never this checkout: the
package itself comes from the wheel, which the test checks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SOURCES = ["emotion_keras", "tuning", "apps", "saved_models", "pyproject.toml", "README.md"]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "EMOTION_KERAS_MODELS", "EMOTION_KERAS_RESULTS", "VIRTUAL_ENV")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    if os.environ.get("KERAS_BACKEND") == "jax":  # packaging does not depend on the backend: run it once
        pytest.skip("the wheel test runs under the TensorFlow pass of `make test`")
    pytest.importorskip("setuptools", minversion="77")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    run = dict(capture_output=True, text=True, timeout=180, env=_clean_env())
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp / "dist"), str(src)], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = next((tmp / "dist").glob("emotion_keras-*.whl"))
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, **run)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               **run).stdout.strip())
    (site / "shared-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                          "--no-index", "-q", str(wheel)], **run)
    assert out.returncode == 0, out.stderr[-3000:]
    return env_dir


def test_installed_wheel_predicts_with_the_shipped_models(venv, tmp_path):
    python = venv / "bin" / "python"
    where = subprocess.run([str(python), "-c", "import emotion_keras, sys; print(emotion_keras.__file__)"],
                           capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=60)
    assert where.stdout.strip().startswith(str(venv)), where  # the wheel's copy, not this checkout
    assert (venv / "share" / "emotion-keras" / "saved_models" / "face" / "model.keras").is_file()
    sample = tmp_path / "face.jpg"
    shutil.copy(ROOT / "samples" / "face.jpg", sample)
    out = subprocess.run([str(venv / "bin" / "emotion-keras"), "predict", str(sample), "--json"],
                         capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["file"] == str(sample) and len(result["faces"]) == 1
    assert result["faces"][0]["emotion"] in result["faces"][0]["probabilities"]


def test_installed_wheel_serves_the_dashboard(venv, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen([str(venv / "bin" / "emotion-keras"), "dashboard", "--headless", "--port", str(port)],
                            env=_clean_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status != 200:
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.3)
        assert status == 200, (tmp_path / "dashboard.log").read_text()[-3000:]
        text = (tmp_path / "dashboard.log").read_text()
        assert f"app {venv / 'share' / 'emotion-keras' / 'apps' / 'dashboard.py'}" in text, text[-2000:]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
