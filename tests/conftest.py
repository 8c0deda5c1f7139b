"""Shared fixtures: where the real corpora are, and a temporary cache per test session."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# tensorflow-cpu 2.21's oneDNN kernels abort the process training the ResNet backbone at widths 4-12
# (test_cli_face::test_compare_on_ckplus on this machine, 2026-12-04; a user's override still wins)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))


def benchmark(name: str):
    """``benchmarks/<name>.py`` loaded as a module (the scripts are not a package), registered in
    ``sys.modules`` under ``name``, where dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The files that take longest (`pytest --durations=40` under each backend, 2026-12-06), longest first.
# `make test` hands whole files to two workers in collection order, so these go out first: a long file
# handed out last would leave the other worker idle at the end.
LONGEST_FIRST = ["test_distill.py", "test_tuning.py", "test_robustness.py", "test_export.py", "test_face_ensemble.py",
                 "test_cli_face.py", "test_functionals.py", "test_parity.py", "test_tuning_distributed.py",
                 "test_models_face.py", "test_predict_batch.py", "test_dashboard_e2e.py", "test_dashboard.py",
                 "test_gpu_job.py", "test_cli_speech.py", "test_cli_analyze.py", "test_models_fusion.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
