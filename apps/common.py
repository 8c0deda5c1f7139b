"""Helpers shared by the dashboard's pages: backend, model loading, safe uploads, charts' data.

Kept free of Keras at import time: the Results page never needs a backend, and the upload pages
import Keras (through the recognisers) only when a model is first loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from emotion_keras.errors import InputError
from emotion_keras.models.store import CARD_FILE, default_model_dir

TASKS = ("face", "speech", "fusion")
PAGE_TASKS = {"face": "face", "speech": "speech", "video": "fusion"}  # page -> the recogniser's task
# What each page accepts: extension -> the fixed suffix of the temporary file it is processed from.
# The suffix comes from this table, never from the user's file name.
IMAGE_TYPES = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "webp": ".webp",
               "tif": ".tif", "tiff": ".tif"}
AUDIO_TYPES = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "mp3": ".mp3", "m4a": ".m4a"}
VIDEO_TYPES = {"mp4": ".mp4", "avi": ".avi", "mkv": ".mkv", "webm": ".webm", "mov": ".mov",
               "flv": ".flv", "m4v": ".m4v", "mpg": ".mpg", "mpeg": ".mpeg", "3gp": ".3gp"}
MB = 1024 * 1024
LIMITS_MB = {"image": 20, "audio": 50, "video": 200}  # server.maxUploadSize (apps/.streamlit) is 200


class UploadError(ValueError):
    """An upload refused before any processing (too big, wrong type, empty)."""


# --- backend ---------------------------------------------------------------------------------------

def backend_name() -> str:
    """The Keras backend this process uses, without importing Keras when it is not loaded yet.

    Keras itself reads ``KERAS_BACKEND``, else ``$KERAS_HOME/keras.json`` (``~/.keras``), else
    defaults to TensorFlow; this mirrors that order so the sidebar is right before any model loads.
    """
    if "keras" in sys.modules:
        try:
            return sys.modules["keras"].backend.backend()
        except AttributeError:  # half-imported
            pass
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def model_status() -> dict[str, dict[str, Any]]:
    """For each task: its model folder and the card's name, or why it is unusable."""
    out = {}
    for task in TASKS:
        d = default_model_dir(task)
        card = d / CARD_FILE
        info: dict[str, Any] = {"dir": str(d), "ok": False}
        try:
            data = json.loads(card.read_text())
            info.update(ok=(d / "model.keras").exists(), name=data.get("name"),
                        classes=data.get("classes"), backend=data.get("backend"))
            if not info["ok"]:
                info["problem"] = "model.keras missing beside its card"
        except FileNotFoundError:
            info["problem"] = "no model here yet"
        except (OSError, ValueError) as e:
            info["problem"] = f"unreadable card ({e})"
        out[task] = info
    return out


def sidebar() -> None:
    """Backend in use and which shipped models are present (shown on every page)."""
    with st.sidebar:
        st.markdown(f"**Keras backend:** `{backend_name()}`")
        st.caption("Set with `KERAS_BACKEND` (or `emotion-keras --backend jax dashboard`).")
        status = model_status()
        lines = []
        for task, info in status.items():
            mark = ":material/check_circle:" if info["ok"] else ":material/warning:"
            what = info.get("name") or info.get("problem")
            lines.append(f"{mark} **{task}**: {what}")
        st.markdown("  \n".join(lines))
        st.caption(f"Models folder: `{Path(default_model_dir('face')).parent}`")


# --- models ----------------------------------------------------------------------------------------

def _stamp(task: str) -> str:
    """Changes when the task's model is replaced, so a retrained model is picked up."""
    dirs = [default_model_dir(t) for t in (("face", "speech", "fusion") if task == "video" else (task,))]
    parts = []
    for d in dirs:
        try:
            parts.append(f"{d}:{(d / CARD_FILE).stat().st_mtime_ns}")
        except OSError:
            parts.append(f"{d}:missing")
    return ";".join(parts)


@st.cache_resource(show_spinner=False, max_entries=6)
def _load_recognizer(task: str, stamp: str):
    from emotion_keras.recognizers.base import Recognizer

    return Recognizer.from_preset(PAGE_TASKS[task])


def recognizer(task: str):
    """The task's recogniser over the shipped model, loaded once per process (``st.cache_resource``).

    Only models from the models folder are ever loaded, never an uploaded file.
    """
    return _load_recognizer(task, _stamp(task))


@st.cache_resource(show_spinner=False)
def lock(task: str) -> threading.Lock:
    """One lock per recogniser: sessions run in threads and share the cached models, whose trackers
    and detectors keep per-call state, so two uploads are analysed one after the other."""
    return threading.Lock()


def rebalanced(face: dict, classes: list[str], prior, balance_from: float, balance_to: float) -> dict:
    """A face result with its probabilities (and emotion) at another balance of the prior correction."""
    from emotion_keras.calibration import rebalance

    p = rebalance(np.array([face["probabilities"][c] for c in classes]), prior, balance_from, balance_to)
    probs = {c: round(float(v), 4) for c, v in zip(classes, p)}
    return {**face, "probabilities": probs, "emotion": max(probs, key=probs.get)}


def load_or_explain(task: str):
    """The recogniser, or ``None`` after an ``st.error`` that says what is missing and how to fix it."""
    try:
        with st.spinner(f"Loading the {task} model (first time only)…"):
            return recognizer(task)
    except ImportError as e:
        st.error(f"The {task} recogniser is not available in this installation ({e}).")
    except Exception as e:  # ModelLoadError, missing files: say which and how to get a model
        st.error(f"Could not load the {task} model: {e}\n\n"
                 f"Train one with `emotion-keras {'fusion' if task == 'video' else task} train ...`, "
                 "or point `EMOTION_KERAS_MODELS` (or `emotion-keras dashboard --models DIR`) at a "
                 "folder with face/, speech/ and fusion/ models.")
    return None


# --- uploads ---------------------------------------------------------------------------------------

def check_upload(name: str, data: bytes, types: dict[str, str], kind: str) -> str:
    """The fixed temporary-file suffix for an acceptable upload, else ``UploadError`` with the reason."""
    ext = Path(name or "").suffix.lower().lstrip(".")
    if ext not in types:
        raise UploadError(f"“{name}” is not a supported {kind} file; use one of: "
                          f"{', '.join(sorted(types))}.")
    limit = LIMITS_MB[kind]
    if len(data) > limit * MB:
        raise UploadError(f"“{name}” is {len(data) / MB:.1f} MB; the limit for {kind} files is {limit} MB.")
    if not data:
        raise UploadError(f"“{name}” is empty.")
    return types[ext]


@contextlib.contextmanager
def temp_upload(data: bytes, suffix: str) -> Iterator[Path]:
    """Write ``data`` to a private temporary folder as ``upload<suffix>``; removed on exit, always.

    The user's file name never reaches the file system: ``suffix`` comes from the tables above.
    """
    if not (suffix.startswith(".") and suffix[1:].isalnum() and len(suffix) <= 6):
        raise ValueError(f"unsafe suffix {suffix!r}")
    folder = tempfile.mkdtemp(prefix="emotion-keras-upload-")
    try:
        path = Path(folder) / f"upload{suffix}"
        with open(path, "xb") as f:
            f.write(data)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def uploader(label: str, types: dict[str, str], kind: str, key: str):
    """``st.file_uploader`` for ``types`` of ``kind`` (image, audio, video) and the kind's size limit."""
    label = f"{label} ({', '.join(sorted(types))}; up to {LIMITS_MB[kind]} MB)"
    # The MIME family makes the browser's file chooser show the right files, and makes Streamlit leave
    # the extension check to read_upload, which answers with a clear st.error (Streamlit's own check
    # would end the page with an exception box instead).
    return st.file_uploader(label, type=[*sorted(types), f"{kind}/*"],
                            max_upload_size=max(1, int(LIMITS_MB[kind])), key=key)


def read_upload(uploaded, types: dict[str, str], kind: str) -> tuple[bytes, str] | None:
    """``(bytes, suffix)`` of a Streamlit upload, or ``None`` after an ``st.error`` saying why not."""
    if uploaded is None:
        return None
    size = getattr(uploaded, "size", None)
    limit = LIMITS_MB[kind] * MB
    if size is not None and size > limit:  # refuse before reading a huge file into memory
        st.error(f"“{uploaded.name}” is {size / MB:.1f} MB; the limit for {kind} files is "
                 f"{LIMITS_MB[kind]} MB.")
        return None
    data = uploaded.getvalue()
    try:
        return data, check_upload(uploaded.name, data, types, kind)
    except UploadError as e:
        st.error(str(e))
        return None


def process_once(key: str, data: bytes, suffix: str, work: Callable[[Path, Callable], Any],
                 label: str) -> Any:
    """Run ``work(tmp_path, progress)`` once per upload content and keep the result in the session.

    Reruns (a slider moved, a page revisited) reuse the result. Bad files end as ``st.error`` with the
    recogniser's message; the temporary file is gone before this returns.
    """
    store = st.session_state.setdefault("_results", {})
    k = f"{key}:{digest(data)}"
    if k in store:
        return store[k]
    bar = st.progress(0.0, text=label)

    def progress(fraction: float, text: str | None = None) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=text or label)

    try:
        with temp_upload(data, suffix) as path:
            result = work(path, progress)
    except (InputError, UploadError) as e:
        bar.empty()
        # the message names our temporary file; the user knows it only as the upload
        st.error(f"Could not analyse the upload: {getattr(e, 'problem', None) or e}")
        return None
    except Exception as e:  # a recogniser bug must not take the page down
        bar.empty()
        st.error(f"Analysis failed ({type(e).__name__}: {e}).")
        return None
    bar.progress(1.0, text="done")
    bar.empty()
    for old in [x for x in store if x.startswith(f"{key}:")]:
        del store[old]  # one result per page in memory, not every upload of the session
    store[k] = result
    return result


def draw_boxes(rgb, faces: list[dict], side: int = 720, scale: float = 1.0):
    """The photo scaled so its longer side is about ``side`` px, each face boxed and labelled.

    ``faces``: dicts with ``box`` [x, y, w, h] (in the photo's pixels times ``scale``) and ``emotion``;
    each box is drawn in its emotion's colour (``color``: another emotion to colour it by).
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    import palette

    img = Image.fromarray(rgb)
    k = side / max(img.size)
    if k < 1 or k > 1.5:  # shrink big photos, enlarge tiny crops (48 px) so boxes and text are legible
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))),
                         Image.LANCZOS if k < 1 else Image.NEAREST)
    else:
        k = 1.0
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(img.size) / 36)))
    for i, f in enumerate(faces):
        x, y, w, h = (v * k / scale for v in f["box"])
        color = palette.rgb(f.get("color") or f.get("emotion") or "")
        draw.rectangle([x, y, x + w, y + h], outline=color, width=width)
        label = f.get("label") or f"{i + 1}: {f['emotion']}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y - (bottom - top) - 8 if y - (bottom - top) - 8 >= 0 else y + width
        draw.rectangle([x, ty, x + right - left + 8, ty + bottom - top + 8], fill=color)
        draw.text((x + 4 - left, ty + 4 - top), label, fill=(255, 255, 255), font=font)
    return np.asarray(img)


# --- data for charts -------------------------------------------------------------------------------

def probs_long(probs: dict[str, float], **extra) -> list[dict[str, Any]]:
    return [{"emotion": k, "probability": float(v), **extra} for k, v in probs.items()]


def parallel_coordinates(trials: list[dict[str, Any]], score: str = "score") -> list[dict[str, Any]]:
    """Long rows ``(trial, axis, position in [0, 1], value)`` for a parallel-coordinates chart.

    Numbers are min-max scaled per axis; categories and booleans are spread evenly in sorted order;
    the score is the last axis, so lines show which settings lead to high scores.
    """
    axes: list[str] = []
    for t in trials:
        for k in t["hyperparameters"]:
            if k not in axes:
                axes.append(k)
    rows = []
    columns = {a: [t["hyperparameters"].get(a) for t in trials] for a in axes}
    columns[score] = [t.get("score") for t in trials]
    for axis, values in columns.items():
        present = [v for v in values if v is not None]
        numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
        if numeric:
            lo, hi = min(present), max(present)
            pos = {v: (0.5 if hi == lo else (v - lo) / (hi - lo)) for v in present}
        else:
            cats = sorted({str(v) for v in present})
            pos = {v: (0.5 if len(cats) == 1 else cats.index(str(v)) / (len(cats) - 1)) for v in present}
        for t, v in zip(trials, values):
            if v is None:
                continue
            rows.append({"trial": str(t["trial_id"]), "axis": axis, "position": float(pos[v]),
                         "value": f"{v:.4g}" if numeric else str(v), "score": t.get("score")})
    return rows


MODALITIES = ("face", "speech", "fused")


def _probs_of(entry: Any) -> dict[str, float] | None:
    if isinstance(entry, dict):
        if isinstance(entry.get("probabilities"), dict):
            return {k: float(v) for k, v in entry["probabilities"].items()}
        if entry and all(isinstance(v, (int, float)) for v in entry.values()):
            return {k: float(v) for k, v in entry.items()}
    return None


def timeline_rows(result: Any) -> list[dict[str, Any]]:
    """Long rows ``(time, end, modality, emotion, probability)`` from a multimodal timeline.

    Accepts the recogniser's ``{"timeline": [...]}`` or a bare list of windows, each with a start
    (``start``/``time``) and per-modality probabilities under ``face``/``speech``/``fused`` (or
    ``fusion``), either as ``{label: p}`` or as ``{"probabilities": {...}}``.
    """
    windows = result.get("timeline", result.get("windows", [])) if isinstance(result, dict) else result
    rows = []
    for w in windows or []:
        if not isinstance(w, dict):
            continue
        start = w.get("start", w.get("time", w.get("t")))
        if start is None:
            continue
        end = w.get("end", start)
        for mod in MODALITIES + ("fusion",):
            probs = _probs_of(w.get(mod))
            if probs:
                name = "fused" if mod == "fusion" else mod
                rows += probs_long(probs, time=float(start), end=float(end), modality=name)
    return rows
