"""``emotion-keras predict FILE...``: emotions in images, audio and video files, by extension.

Images go to :class:`~emotion_keras.recognizers.face.FaceEmotionRecognizer`, audio to the speech
recogniser, video to the multimodal one; each recogniser is built once, on the first file that
needs it, and reused for the whole batch. A file that fails (missing, corrupt, unsupported) gives an
error line and the batch goes on; the exit code is 1 at the end if any file failed.

``--json`` prints one JSON object per input line (the contract in docs/architecture.md); otherwise a
readable table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emotion_keras.commands.common import add_batch_parser, batch_exit

from emotion_keras.data.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


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

    def __init__(self, face_model_dir=None, speech_model_dir=None):
        self.face_model_dir = face_model_dir
        self.speech_model_dir = speech_model_dir
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
        if kind == "image":
            from emotion_keras.recognizers.face import FaceEmotionRecognizer

            return FaceEmotionRecognizer(self.face_model_dir)
        if kind == "audio":
            from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

            return SpeechEmotionRecognizer(self.speech_model_dir) if self.speech_model_dir \
                else SpeechEmotionRecognizer()
        from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

        return MultimodalEmotionRecognizer()


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
    p.add_argument("--heatmap-dir", help="write a heatmap overlay PNG per face here")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    recognizers = Recognizers(args.model_dir, args.speech_model_dir)
    heatmap_dir = Path(args.heatmap_dir) if args.heatmap_dir else None
    failed = 0
    rows = []
    for name in args.files:
        result = _jsonable(predict_one(Path(name), recognizers, heatmap_dir))
        failed += "error" in result
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            rows.append((result["file"], summarise(result)))
    if not args.json:
        width = min(60, max(len(f) for f, _ in rows))
        print(f"{'file':<{width}}  result")
        for f, s in rows:
            print(f"{f:<{width}}  {s}")
    return batch_exit(failed, len(args.files))
