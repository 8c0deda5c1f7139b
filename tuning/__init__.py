"""KerasTuner search for the face, speech and fusion pipelines (``emotion-keras tune``).

:mod:`tuning.hypermodels` holds the search spaces (built on the pipelines' own model builders);
:mod:`tuning.search` the data loading, tuners, resumable search and export of the best trial.
Importing this package imports Keras, so the CLI imports it only after ``--backend`` is applied.
"""

from tuning.hypermodels import FaceHyperModel, FusionHyperModel, SpeechHyperModel  # noqa: F401
