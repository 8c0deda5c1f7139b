"""emotion-keras: multimodal emotion recognition (faces, speech, fusion) with Keras 3.

The public API is imported lazily so that ``import emotion_keras`` stays cheap and does not import
Keras before the caller has chosen a backend (``KERAS_BACKEND`` or :func:`set_backend`).
"""

from __future__ import annotations

import importlib

from emotion_keras.backend import set_backend
from emotion_keras.labels import BASIC, CANONICAL
from emotion_keras.recognizers import RECOGNIZERS

__version__ = "0.1.0"

_LAZY = {
    **{name: module for module, name in RECOGNIZERS.values()},  # FaceEmotionRecognizer, ...
    "Recognizer": "emotion_keras.recognizers.base",  # Recognizer.from_preset("face" | ... | folder)
    "FacePreprocessor": "emotion_keras.preprocess.preprocessors",
    "SpeechPreprocessor": "emotion_keras.preprocess.preprocessors",
    "load_model": "emotion_keras.models.store",  # (model, card) = load_model(folder)
}

__all__ = ["BASIC", "CANONICAL", "set_backend", *_LAZY]


def __getattr__(name: str):
    """The public classes, imported on first use (see the module docstring)."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, "load" if name == "load_model" else name)
    raise AttributeError(f"module 'emotion_keras' has no attribute {name!r}")
