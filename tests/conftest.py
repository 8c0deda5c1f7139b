"""Shared fixtures: where the real corpora are, and a temporary cache per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tensorflow-cpu 2.21's oneDNN kernels abort the process training the ResNet backbone at widths 4-12
# (test_cli_face::test_compare_on_ckplus on this machine, 2026-12-04; a user's override still wins)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$EMOTION_KERAS_DATA``); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set EMOTION_KERAS_DATA to run these tests)")
    return SHARED_DATA


def corpus(shared: Path, name: str) -> Path:
    path = shared / name
    if not path.exists():
        pytest.skip(f"corpus {name} not found under {shared}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep test caches out of the user's ~/.cache (and shared between tests of one session)."""
    os.environ.setdefault("EMOTION_KERAS_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield


@pytest.fixture(autouse=True)
def _seeded():
    """Seed Python, NumPy and the backend before each test: a model built before `fit` seeds gets the
    same weights whichever tests ran earlier in the worker (xdist hands files out in varying order)."""
    import keras

    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def backend() -> str:
    import keras

    return keras.backend.backend()
