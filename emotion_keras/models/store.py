"""Save and load a model together with its model card (``model.keras`` + ``card.json``).

The card is the single source of the numbers the README and the dashboard show: classes, input spec,
preprocessing config, data, metrics with their protocol, backend and versions. Loading always uses
Keras safe mode, so a ``.keras`` file can never run arbitrary Python.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
SAVED_MODELS = Path(__file__).resolve().parents[2] / "saved_models"
INSTALLED_DATA = ("share", "emotion-keras")  # where a wheel puts saved_models/ and apps/ (data files)


class ModelLoadError(RuntimeError):
    """A model directory that is missing, incomplete or not loadable."""


def versions() -> dict[str, str]:
    """Versions of what shaped a model, recorded on its card."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("emotion-keras", "keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "numpy",
                "librosa", "mtcnn", "opencv-python-headless", "keras-tuner"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def installed_data(name: str) -> Path | None:
    """``name`` (``saved_models``, ``apps``) beside the package: the source checkout's folder, else
    the copy a wheel installed under ``<prefix>/share/emotion-keras/`` (venv, system or user)."""
    import site
    import sys

    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.exists():
        return checkout
    prefixes = [sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None) or ""]
    for prefix in filter(None, prefixes):
        candidate = Path(prefix).joinpath(*INSTALLED_DATA, name)
        if candidate.exists():
            return candidate
    return None


def default_model_dir(task: str) -> Path:
    """``saved_models/<task>``: ``$EMOTION_KERAS_MODELS``, else this checkout's, else the wheel's."""
    if os.environ.get("EMOTION_KERAS_MODELS"):
        return Path(os.environ["EMOTION_KERAS_MODELS"]) / task
    return (installed_data("saved_models") or SAVED_MODELS) / task


PRESETS = ("face", "speech", "fusion")  # the shipped models, by task


def resolve(preset: str | Path) -> Path:
    """The model folder a preset names: one of ``PRESETS`` (:func:`default_model_dir`, which also
    finds a wheel's models), else a folder holding a ``card.json``.

    Args:
        preset: ``"face"``, ``"speech"``, ``"fusion"`` or a saved model folder.
    """
    if isinstance(preset, str) and preset in PRESETS:
        return default_model_dir(preset)
    directory = Path(preset).expanduser()
    if not (directory / CARD_FILE).is_file():
        raise ModelLoadError(f"{directory}: neither a preset ({', '.join(PRESETS)}) nor a saved model "
                             f"folder (no {CARD_FILE} there)")
    return directory


def save(model, directory: str | Path, card: dict[str, Any]) -> Path:
    """Write ``model.keras`` and ``card.json`` into ``directory`` atomically, card last.

    The card gains backend, versions, date and parameter count; a reader that sees a card can trust
    the model beside it is complete.
    """
    import keras

    from emotion_keras.data.cache import atomic_write_json, publish

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=directory)
    os.close(fd)
    try:
        model.save(tmp)
        publish(tmp, directory / MODEL_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    card = {
        **card,
        "backend": keras.backend.backend(),
        "parameters": int(model.count_params()),
        "size_bytes": (directory / MODEL_FILE).stat().st_size,
        "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(directory / CARD_FILE, card)
    return directory


def saved_size(model) -> int:
    """Bytes ``model`` takes saved bare (config and weights, no optimizer state; as :func:`load`
    returns it): what it adds to an ensemble's file. A trained member's own ``model.keras`` is larger,
    as it keeps the optimizer's state for fine-tuning."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        model.save(path)
        return path.stat().st_size


def digest(directory: str | Path) -> str:
    """SHA-256 of a saved model's ``model.keras``: which weights a record means, wherever the folder
    is now (an export's source, a distillation's teacher)."""
    h = hashlib.sha256()
    with open(Path(directory) / MODEL_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def update_card(directory: str | Path, **fields: Any) -> dict[str, Any]:
    """Set top-level ``fields`` on a saved model's card (atomically) and return the new card; the
    model file is untouched (calibration, robustness and export records are added this way)."""
    from emotion_keras.data.cache import atomic_write_json

    card = {**read_card(directory), **fields}
    atomic_write_json(Path(directory) / CARD_FILE, card)
    return card


def read_card(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CARD_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no model card (is this a saved emotion-keras model directory?)") \
            from None
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}: model card is not valid JSON ({e})") from None


def load(directory: str | Path, compile: bool = False):
    """Return ``(model, card)`` from a saved model directory, loaded in Keras safe mode.

    Args:
        directory: a folder holding ``model.keras`` and ``card.json``.
        compile: also restore the training configuration (not needed to predict).
    """
    import keras

    from emotion_keras.models import fusion, layers  # noqa: F401  register the custom layers

    directory = Path(directory)
    card = read_card(directory)
    path = directory / MODEL_FILE
    if not path.exists():
        raise ModelLoadError(f"{path}: model file missing beside its card")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # keras raises many types here; the user needs the file and the reason
        raise ModelLoadError(f"{path}: could not load model ({type(e).__name__}: {e})") from e
    return model, card
