"""Speech emotion recogniser: an audio file or waveform in, per-window and pooled emotions out.

A clip is trimmed and cut into ``window_seconds`` windows exactly as the training features were
(:mod:`emotion_keras.preprocess.audio`); all windows go through the model in one batched call and
their probabilities are averaged into the clip's result. Recordings longer than ``stream_seconds``
(10 minutes by default) are decoded block by block and never held in memory whole: windows are
classified batch by batch as they are decoded.

Result (the CLI's JSON line)::

    {"file": ..., "windows": [{"start": 0.0, "end": 3.0, "probabilities": {label: p}}, ...],
     "emotion": "angry", "probabilities": {label: p}}

Silence only, clips under ``min_seconds`` and undecodable files raise :class:`InputError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.calibration import apply_temperature, temperature_of
from emotion_keras.errors import InputError
from emotion_keras.models import store
from emotion_keras.preprocess import audio


class SpeechEmotionRecognizer:
    """Load a saved speech model (default ``saved_models/speech``) and classify speech.

    ``stream_seconds``: files longer than this are streamed (bounded memory, no trimming).
    ``batch_size``: windows per model call (a 10-minute file is 400 windows).
    ``runtime="onnx"``: run the folder's exported ``model.onnx`` with onnxruntime (no TensorFlow/JAX).
    Window probabilities are calibrated by the card's temperature before they are pooled.
    """

    task = "speech"

    def __init__(self, model_dir: str | Path | None = None, stream_seconds: float = 600.0,
                 batch_size: int = 64, runtime: str = "keras"):
        from emotion_keras.runtime import load_net

        self.model_dir = Path(model_dir) if model_dir else store.default_model_dir("speech")
        self.runtime = runtime
        self.net, self.card, self.model = load_net(self.model_dir, runtime)
        if self.card.get("task") not in (None, "speech"):
            raise store.ModelLoadError(f"{self.model_dir}: a {self.card.get('task')} model, not a speech "
                                       "model")
        self.classes: list[str] = list(self.card["classes"])
        self.temperature = temperature_of(self.card)
        self.config = audio.SpeechFeatureConfig.from_dict(self.card.get("preprocessing") or {})
        expected = tuple(int(d) for d in self.net.input_shapes[self.net.input_names[0]])
        if expected != self.config.input_shape:
            raise store.ModelLoadError(
                f"{self.model_dir}: the model takes {expected} features but its card's preprocessing "
                f"gives {self.config.input_shape}")
        self.stream_seconds = float(stream_seconds)
        self.batch_size = int(batch_size)
        self._basis = audio.mel_basis(self.config.sr, self.config.n_fft, self.config.n_mels,
                                      self.config.fmin, self.config.fmax)

    # ------------------------------------------------------------ model calls

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes)`` for feature windows ``(n, frames, n_features)``.

        Batches are padded to a power of two (at most ``batch_size``) so the compiled predict
        function sees few distinct shapes and is not retraced for every clip length.
        """
        features = np.asarray(features, np.float32)
        out = []
        for i in range(0, len(features), self.batch_size):
            chunk = features[i:i + self.batch_size]
            n = len(chunk)
            size = min(self.batch_size, 1 << (n - 1).bit_length())
            if size > n:
                chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.float32)])
            out.append(self.net.probabilities({"features": chunk})[:n])
        probs = np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)
        return apply_temperature(probs, self.temperature)

    def warmup(self) -> None:
        """Compile the predict function for the common batch sizes (1, 2, 4)."""
        for n in (1, 2, 4):
            self.predict_features(np.zeros((n, *self.config.input_shape), np.float32))

    # ------------------------------------------------------------ results

    def _labels(self, p: np.ndarray) -> dict[str, float]:
        return {c: round(float(v), 4) for c, v in zip(self.classes, p)}

    def _result(self, probs: np.ndarray, spans: np.ndarray) -> dict[str, Any]:
        pooled = probs.mean(axis=0)
        return {
            "windows": [{"start": round(float(s), 3), "end": round(float(e), 3),
                         "probabilities": self._labels(p)} for (s, e), p in zip(spans, probs)],
            "emotion": self.classes[int(pooled.argmax())],
            "probabilities": self._labels(pooled),
        }

    def predict(self, waveform: np.ndarray, sr: int) -> dict[str, Any]:
        """Classify an in-memory waveform: ``(samples,)`` or ``(samples, channels)`` at rate ``sr``."""
        y = np.asarray(waveform, np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)
        elif y.ndim != 1:
            raise InputError("<waveform>", f"expected (samples,) or (samples, channels), got {y.shape}")
        if int(sr) != self.config.sr and len(y):
            import soxr

            y = soxr.resample(y, int(sr), self.config.sr).astype(np.float32)
        feats, spans = audio.waveform_windows(y, self.config, "<waveform>", self._basis)
        return self._result(self.predict_features(feats), spans)

    def predict_file(self, path: str | Path) -> dict[str, Any]:
        """Classify an audio file (WAV, FLAC, MP3, OGG, M4A...); raises InputError for a bad file."""
        path = Path(path)
        duration = audio.audio_duration(path) if path.is_file() else None
        if duration is not None and duration <= self.stream_seconds:
            feats, spans = audio.file_windows(path, self.config, self._basis)
            result = self._result(self.predict_features(feats), spans)
        else:
            probs, spans = [], []
            for feats, sp in audio.stream_windows(path, self.config, batch=self.batch_size,
                                                  basis=self._basis):
                probs.append(self.predict_features(feats))
                spans.append(sp)
            result = self._result(np.concatenate(probs), np.concatenate(spans))
        return {"file": str(path), **result}

    def predict_files(self, paths) -> list[dict[str, Any]]:
        """One result per file; a bad file gives ``{"file", "error"}`` and the batch carries on."""
        out = []
        for p in paths:
            try:
                out.append(self.predict_file(p))
            except InputError as e:
                out.append({"file": str(p), "error": e.problem})
        return out
