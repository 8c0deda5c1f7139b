"""``emotion-keras predict FILE|DIR|GLOB...``: emotions in images, audio and video files, by extension.

Folders are walked (recursively, media files only, sorted) and globs expanded (``"photos/**/*.jpg"``),
lazily, so 10,000 files stream through in bounded memory. Consecutive images are processed in
batches: decoded and searched for faces by two threads, their faces classified in one model call
(``--batch-size`` images at a time). ``--runtime onnx`` runs exported ONNX models (``emotion-keras
export``) with onnxruntime, without importing TensorFlow or JAX.

Images go to :class:`~emotion_keras.recognizers.face.FaceEmotionRecognizer`, audio to the speech
recogniser, video to the multimodal one; each recogniser is built once, on the first file that
needs it, and reused for the whole batch. A file that fails (missing, corrupt, unsupported) gives an
error line and the batch goes on; the exit code is 1 at the end if any file failed.

``--json`` prints one JSON object per input line (the contract in docs/architecture.md); otherwise a
readable table.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emotion_keras.commands.common import add_balance_arg, add_batch_parser, batch_exit
from emotion_keras.data.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


KIND_TASKS = {"image": "face", "audio": "speech", "video": "fusion"}  # file kind -> the recogniser's task


def kind_of(path: str | Path) -> str | None:
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


class Recognizers:
    """One recogniser per kind, built lazily; a failed build is remembered and reported per file."""

    def __init__(self, face_model_dir=None, speech_model_dir=None, fusion_model_dir=None,
                 runtime: str = "keras", balance: float | None = None):
        self.face_model_dir = face_model_dir
        self.balance = balance  # the face and speech models' prior correction (None: their cards')
        self.speech_model_dir = speech_model_dir
        self.fusion_model_dir = fusion_model_dir
        self.runtime = runtime
        self._made: dict[str, Any] = {}

    def get(self, kind: str):
        if kind not in self._made:
            try:
                self._made[kind] = self._build(kind)
            except Exception as e:  # reported on each file of this kind; other kinds still run
                self._made[kind] = e
        made = self._made[kind]
        if isinstance(made, Exception):
            raise made
        return made

    def _build(self, kind: str):
        from emotion_keras.recognizers.base import recognizer_class

        task = KIND_TASKS[kind]
        cls = recognizer_class(task)
        if task == "fusion":  # the fusion head and the two models it fuses
            return cls.from_dir(self.fusion_model_dir, self.face_model_dir, self.speech_model_dir,
                                runtime=self.runtime)
        return cls.from_dir(self.face_model_dir if task == "face" else self.speech_model_dir, runtime=self.runtime,
                            balance=self.balance)


def _error_text(e: BaseException) -> str:
    from emotion_keras.errors import InputError

    if isinstance(e, InputError):
        return e.problem
    if isinstance(e, ModuleNotFoundError):
        return f"this file type is not supported by this installation ({e})"
    return f"{type(e).__name__}: {e}"


def _write_heatmaps(result: dict[str, Any], path: Path, heatmap_dir: Path) -> None:
    """Replace each face's heatmap array by the path of a PNG overlay on its aligned crop."""
    import cv2

    from emotion_keras import explain
    from emotion_keras.data.cache import atomic_write

    heatmap_dir.mkdir(parents=True, exist_ok=True)
    for k, face in enumerate(result.get("faces", [])):
        heat = face.pop("heatmap", None)
        crop = face.pop("crop", None)
        if heat is None or crop is None:
            continue
        rgb = explain.overlay(crop, heat)
        rgb = cv2.resize(rgb, (192, 192), interpolation=cv2.INTER_NEAREST)
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if ok:
            out = heatmap_dir / f"{path.stem}_face{k}.png"
            atomic_write(out, lambda f: f.write(png.tobytes()))
            face["heatmap"] = str(out)


def predict_one(path: Path, recognizers: Recognizers, heatmap_dir: Path | None = None) -> dict[str, Any]:
    """The result dict for one file, or ``{"file", "error"}``; never raises for a bad file."""
    from emotion_keras.errors import InputError

    kind = kind_of(path)
    try:
        if kind is None:
            raise InputError(path, f"unsupported file type {path.suffix or '(no extension)'!r}; "
                                   "expected an image, audio or video file")
        if not path.exists():
            raise InputError(path, "file not found")
        rec = recognizers.get(kind)
        if kind == "image" and heatmap_dir is not None:
            result = rec.predict_file(path, heatmaps=True)
            _write_heatmaps(result, path, heatmap_dir)
        else:
            result = rec.predict_file(path)
        result = dict(result)
        result["file"] = str(path)
        return result
    except KeyboardInterrupt:
        raise
    except Exception as e:
        return {"file": str(path), "error": _error_text(e)}


def expand_inputs(names) -> Iterator[Path]:
    """Each argument as paths, lazily: a folder -> its media files (recursive, sorted per folder,
    hidden files skipped), a glob with no file of that name -> its matches (sorted); anything else
    as given (a missing file becomes an error line later)."""
    from emotion_keras.data.files import has_extension

    media = (*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS, *VIDEO_EXTENSIONS)
    for name in names:
        path = Path(name).expanduser()
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    p = Path(root) / f
                    if has_extension(p, media):
                        yield p
        elif not path.exists() and glob.has_magic(str(name)):
            matches = sorted(glob.iglob(os.path.expanduser(str(name)), recursive=True))
            if not matches:
                yield path  # reported as "file not found"
            yield from (Path(m) for m in matches if not Path(m).is_dir())
        else:
            yield path


def predict_all(paths, recognizers: Recognizers, heatmap_dir: Path | None = None,
                batch_size: int = 32) -> Iterator[dict[str, Any]]:
    """One result per path, in order; runs of consecutive images go through the face recogniser's
    batched ``predict_files`` (unless heatmaps are wanted, which are made image by image)."""
    images: list[Path] = []

    def flush():
        if not images:
            return
        try:
            rec = recognizers.get("image")
        except Exception:
            rec = None
        if rec is None or heatmap_dir is not None:
            for p in images:
                yield predict_one(p, recognizers, heatmap_dir)
        else:
            yield from _batched(images, rec, batch_size)
        images.clear()

    for path in paths:
        if kind_of(path) == "image" and path.is_file():
            images.append(path)
            if len(images) >= batch_size:
                yield from flush()
            continue
        yield from flush()
        yield predict_one(path, recognizers, heatmap_dir)
    yield from flush()


def _batched(images: list[Path], rec, batch_size: int) -> Iterator[dict[str, Any]]:
    done = 0
    try:
        for result in rec.predict_files(images, batch_size=batch_size):
            done += 1
            yield result
    except KeyboardInterrupt:
        raise
    except Exception:  # an unexpected failure in a batch: the rest of it file by file, each reported
        for p in images[done:]:
            try:
                yield rec.predict_file(p)
            except Exception as e:
                yield {"file": str(p), "error": _error_text(e)}


def summarise(result: dict[str, Any]) -> str:
    """One readable cell for the table."""
    if "error" in result:
        return f"error: {result['error']}"
    if "faces" in result:
        faces = result["faces"]
        if not faces:
            return "no face found"
        parts = []
        for i, f in enumerate(faces):
            p = f["probabilities"][f["emotion"]]
            parts.append(f"face {i + 1} at {f['box']}: {f['emotion']} ({p:.2f})")
        return "; ".join(parts)
    emotion = result.get("emotion")
    probs = result.get("probabilities") or {}
    if emotion is not None:
        text = f"{emotion} ({probs[emotion]:.2f})" if emotion in probs else str(emotion)
        if "windows" in result:
            text += f" over {len(result['windows'])} window(s)"
        return text
    return json.dumps({k: v for k, v in result.items() if k != "file"})[:120]


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def register(subparsers) -> None:
    p = add_batch_parser(
        subparsers, "predict", help="emotions in image, audio and video files",
        description="Emotions in images (faces), audio (speech) and video (faces + speech, fused), "
                    "by file extension. Failed files are reported and the rest still run; the exit "
                    "code is 1 if any failed.",
        metavar="FILE", json_help="one JSON object per file per line")
    p.add_argument("--model-dir", help="face model directory (default saved_models/face)")
    p.add_argument("--speech-model-dir", help="speech model directory (default saved_models/speech)")
    p.add_argument("--fusion-model-dir", help="fusion model directory (default saved_models/fusion)")
    p.add_argument("--heatmap-dir", help="write a heatmap overlay PNG per face here")
    p.add_argument("--runtime", choices=("keras", "onnx"), default="keras",
                   help="keras (default) or onnx: the model folders' exported model.onnx, run by "
                        "onnxruntime without TensorFlow or JAX (see `emotion-keras export`)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--enrol", action="append", metavar="CLIP|DIR",
                   help="unlabelled clips (files or folders; repeatable) of the one speaker in the audio to "
                        "classify: a speaker-normalised speech model standardises with their statistics")
    add_balance_arg(p)
    p.set_defaults(func=cmd_predict)


def enrol_speaker(recognizers: Recognizers, names: list[str]) -> None:
    """Enrol the speaker of ``names`` (audio files or folders) on the speech recogniser, before any
    file is classified: a bad clip or a model that cannot use it stops the command (exit 2)."""
    from emotion_keras.config import ConfigError

    clips = [p for p in expand_inputs(names) if kind_of(p) == "audio"]
    if not clips:
        raise ConfigError(f"--enrol {', '.join(names)}: no audio files")
    windows = recognizers.get("audio").enrol(clips)
    print(f"enrolled one speaker: {len(clips)} clip(s), {windows} window(s)", file=sys.stderr)


def cmd_predict(args) -> int:
    recognizers = Recognizers(args.model_dir, args.speech_model_dir, args.fusion_model_dir, args.runtime,
                              args.balance)
    if args.enrol:
        enrol_speaker(recognizers, args.enrol)
    heatmap_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    failed = total = 0
    rows = []
    for result in predict_all(expand_inputs(args.files), recognizers, heatmap_dir, max(1, args.batch_size)):
        result = _jsonable(result)
        total += 1
        failed += "error" in result
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            rows.append((result["file"], summarise(result)))
    if not args.json and rows:
        width = min(60, max(len(f) for f, _ in rows))
        print(f"{'file':<{width}}  result")
        for f, s in rows:
            print(f"{f:<{width}}  {s}")
    if not total:
        print("emotion-keras: no input files", file=sys.stderr)
        return 1
    return batch_exit(failed, total)
