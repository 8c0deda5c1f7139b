"""The library layer under the CLI: splits, and train / evaluate / compare for each modality.

:mod:`~emotion_keras.pipelines.splits` (protocols for faces and speech), :mod:`.face`, :mod:`.speech`,
:mod:`.fusion`, :mod:`.calibrate`, and :mod:`.common` (saving a trained model, report sections,
comparison tables). ``emotion_keras.commands`` parses arguments and prints; tests, benchmarks and
tuning call these modules directly. Nothing here imports ``emotion_keras.commands``.
"""
