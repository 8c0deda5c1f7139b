"""Choose the Keras backend before Keras is imported; nothing else in the package decides it."""

from __future__ import annotations

import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


def set_backend(name: str | None) -> str:
    """Select ``name`` (or keep ``KERAS_BACKEND``) and return the backend that will be used.

    Keras reads the variable once, at import, so asking for another backend after that is an error
    rather than a silent no-op.

    Args:
        name: ``"tensorflow"`` or ``"jax"`` (None: keep ``KERAS_BACKEND``, default TensorFlow).
    """
    if name:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
        if "keras" in sys.modules:
            import keras

            if keras.backend.backend() != name:
                raise RuntimeError(
                    f"keras is already imported with backend {keras.backend.backend()!r}; "
                    f"set KERAS_BACKEND={name} before importing emotion_keras models")
        os.environ["KERAS_BACKEND"] = name
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def active_backend() -> str:
    """The backend Keras uses (imports keras)."""
    import keras

    return keras.backend.backend()
