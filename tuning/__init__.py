"""User-facing entry points of the KerasTuner search (``tuning/search.py``, the GPU job
``tuning/gpu_face.py``); the code lives in :mod:`emotion_keras.tuning`. Importing this package
imports Keras, so the CLI imports :mod:`emotion_keras.tuning` modules only after ``--backend``.
"""

from emotion_keras.tuning.hypermodels import FaceHyperModel, FusionHyperModel, SpeechHyperModel  # noqa: F401
