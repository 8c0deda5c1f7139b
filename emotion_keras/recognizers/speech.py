"""Speech emotion recogniser: an audio file or waveform in, per-window and pooled emotions out.

A clip is trimmed and cut into ``window_seconds`` windows exactly as the training features were
(:mod:`emotion_keras.preprocess.audio`); all windows go through the model in one batched call and
their probabilities are averaged into the clip's result. Recordings longer than ``stream_seconds``
(10 minutes by default) are decoded block by block and never held in memory whole: windows are
classified batch by batch as they are decoded.

Result (the CLI's JSON line)::

    {"file": ..., "windows": [{"start": 0.0, "end": 3.0, "probabilities": {label: p}}, ...],
     "emotion": "angry", "probabilities": {label: p}}

Windows without speech (silence, or no voice by the VAD in recordings longer than one window) are
left out of ``windows`` and of the pooled result. Models whose card says ``speaker_norm: speaker``
(trained on per-speaker standardised features) get per-file standardisation here, running statistics
when streaming, or the statistics of one speaker's clips after :meth:`SpeechEmotionRecognizer.enrol`;
models with a ``prosody`` input get prosody measured on the same windows.

Silence only, no speech anywhere, clips under ``min_seconds`` and undecodable files raise
:class:`InputError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.preprocess.preprocessors import SpeechPreprocessor
from emotion_keras.recognizers.base import Recognizer


class SpeechEmotionRecognizer(Recognizer):
    """A saved speech model (default ``saved_models/speech``) that classifies speech.

    Load with ``SpeechEmotionRecognizer.from_dir(model_dir, stream_seconds, batch_size, runtime)`` (or
    the shorthand ``SpeechEmotionRecognizer(model_dir, ...)``, or ``Recognizer.from_preset("speech")``).
    Window probabilities are calibrated by the card's temperature before they are pooled.
    """

    task = "speech"
    preprocessor_class = SpeechPreprocessor
    main_input = "features"
    input_dtype = np.float32
    default_batch_size = 64

    def __init__(self, *, stream_seconds: float = 600.0, **parts):
        """Args:
            stream_seconds: files longer than this are streamed (bounded memory, no trimming).
            **parts: the stored parts (``net``, ``card``, ``preprocessor``...; see
                :class:`~emotion_keras.recognizers.base.Recognizer`).
        """
        super().__init__(**parts)
        self.stream_seconds = float(stream_seconds)

    @classmethod
    def from_dir(cls, directory: str | Path | None = None, stream_seconds: float = 600.0,
                 batch_size: int = 64, runtime: str = "keras", balance: float | None = None):
        """Load a saved speech model, checking its inputs against its card's preprocessing.

        Args:
            directory: the model folder (None: ``saved_models/speech``).
            stream_seconds: files longer than this are streamed (bounded memory, no trimming).
            batch_size: windows per model call (a 10-minute file is 400 windows).
            runtime: ``"keras"`` or ``"onnx"`` (the folder's ``model.onnx``, no TensorFlow/JAX).
            balance: the prior correction, 0..1 (None: the card's; see :mod:`emotion_keras.calibration`).
        """
        net, card, model, directory = cls._load(directory, runtime)
        prep = SpeechPreprocessor.from_card(card)
        prep.check_model(net.input_names, net.input_shapes, directory)
        return cls(net=net, card=card, preprocessor=prep, model=model, model_dir=directory, runtime=runtime,
                   batch_size=batch_size, stream_seconds=stream_seconds, balance=balance)

    @property
    def config(self):
        """The card's :class:`~emotion_keras.preprocess.audio.SpeechFeatureConfig`."""
        return self.preprocessor.config

    def enrol(self, paths) -> int:
        """Tell the model who is speaking: unlabelled clips of the one speaker whose recordings follow
        (a minute of speech or more pays). Speaker-normalised models then standardise with that
        speaker's statistics, the setting of the enrolment rows in ``docs/benchmarks/speech_cv.md``,
        instead of guessing a voice from each clip. Returns the windows heard.

        Raises InputError naming a clip that cannot be read or holds no speech, ConfigError for a
        model trained without speaker normalisation.
        """
        from emotion_keras.preprocess import audio

        inputs = [audio.waveform_inputs(audio.load_audio(p, self.config.sr), self.config, p,
                                        self.preprocessor.basis)[0] for p in paths]
        return self.preprocessor.enrol(inputs)

    # ------------------------------------------------------------ model calls

    def normalise(self, inputs: dict[str, np.ndarray], running=None) -> dict[str, np.ndarray]:
        """Per-file speaker normalisation (see :meth:`SpeechPreprocessor.normalise`)."""
        return self.preprocessor.normalise(inputs, running)

    def waveform_inputs(self, y: np.ndarray, path: str | Path = "<waveform>") -> tuple[dict, np.ndarray]:
        """Normalised model inputs and spans of a waveform at ``config.sr`` (InputError: no speech).

        Args:
            y: mono float audio at ``config.sr``.
            path: what an ``InputError`` names.
        """
        return self.preprocessor(y, name=path)

    def predict_inputs(self, inputs: dict[str, np.ndarray] | np.ndarray) -> np.ndarray:
        """Probabilities ``(n, classes)`` for window inputs (``{"features", ["prosody"]}``, or the
        feature windows ``(n, frames, n_features)`` alone for a model without prosody):
        :meth:`predict_proba`.

        Args:
            inputs: window inputs.
        """
        return self.predict_proba(inputs)

    predict_features = predict_inputs  # the name callers used before models took prosody

    def warmup(self) -> None:
        """Compile the predict function for the common batch sizes (1, 2, 4)."""
        from emotion_keras.preprocess.prosody import DIM

        for n in (1, 2, 4):
            x = {"features": np.zeros((n, *self.config.input_shape), np.float32)}
            if "prosody" in self.input_names:
                x["prosody"] = np.zeros((n, DIM), np.float32)
            self.predict_inputs(x)

    # ------------------------------------------------------------ results

    def _result(self, probs: np.ndarray, spans: np.ndarray) -> dict[str, Any]:
        pooled = probs.mean(axis=0)
        return {
            "windows": [{"start": round(float(s), 3), "end": round(float(e), 3),
                         "probabilities": self.labels(p)} for (s, e), p in zip(spans, probs)],
            "emotion": self.classes[int(pooled.argmax())],
            "probabilities": self.labels(pooled),
        }

    def predict(self, waveform: np.ndarray, sr: int) -> dict[str, Any]:
        """Classify an in-memory waveform.

        Args:
            waveform: ``(samples,)`` or ``(samples, channels)`` float audio.
            sr: its sample rate (resampled to the model's).
        """
        x, spans = self.preprocessor(waveform, sr)
        return self._result(self.predict_proba(x), spans)

    def predict_file(self, path: str | Path) -> dict[str, Any]:
        """Classify an audio file (WAV, FLAC, MP3, OGG, M4A...); raises InputError for a bad file.

        Args:
            path: the audio file; longer than ``stream_seconds`` it is streamed, window batch by batch.
        """
        probs, spans = [], []
        for x, sp in self.preprocessor.iter_file(path, self.stream_seconds, self.batch_size):
            probs.append(self.predict_proba(x))
            spans.append(sp)
        return {"file": str(path), **self._result(np.concatenate(probs), np.concatenate(spans))}

    def predict_files(self, paths) -> list[dict[str, Any]]:
        """One result per file, as a list; a bad file gives ``{"file", "error"}`` and the batch carries on.

        Args:
            paths: audio file paths.
        """
        return list(super().predict_files(paths))
