"""emotion-keras: multimodal emotion recognition (faces, speech, fusion) with Keras 3.

The public API is imported lazily so that ``import emotion_keras`` stays cheap and does not import
Keras before the caller has chosen a backend (``KERAS_BACKEND`` or :func:`set_backend`).
"""

from __future__ import annotations

import importlib

from emotion_keras.backend import set_backend
from emotion_keras.labels import BASIC, CANONICAL

__version__ = "0.1.0"

_LAZY = {
    "FaceEmotionRecognizer": "emotion_keras.recognizers.face",
    "SpeechEmotionRecognizer": "emotion_keras.recognizers.speech",
    "MultimodalEmotionRecognizer": "emotion_keras.recognizers.multimodal",
    "load_model": "emotion_keras.models.store",
}

__all__ = ["BASIC", "CANONICAL", "set_backend", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, "load" if name == "load_model" else name)
    raise AttributeError(f"module 'emotion_keras' has no attribute {name!r}")
