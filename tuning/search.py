"""Entry point for scripts and notebooks: a KerasTuner search for one task, resumed after a kill, and
the export of its best trial. The code lives in :mod:`emotion_keras.tuning` (``data``, ``tuners``,
``export``; KerasTuner's private API only in ``compat``); ``emotion-keras tune`` is the CLI of it.

    from tuning import search
    data = search.load_speech_data("ravdess:../shared/data/ravdess_speech")
    tuner, summary = search.run_search(data, "random", project_dir="tuning_runs/speech")
    search.export_best(tuner, data, "saved_models/speech")
"""

from emotion_keras.tuning.data import (TaskData, load_face_data, load_fusion_data, load_speech_data,  # noqa: F401
                                       save_fusion_arrays, synthetic_data)
from emotion_keras.tuning.export import export_best  # noqa: F401
from emotion_keras.tuning.tuners import (OBJECTIVES, TUNERS, best_trials, device_info, make_hypermodel,  # noqa: F401
                                         make_tuner, read_run, read_search, run_search, serve_oracle,
                                         set_data_parallel, summarize)

__all__ = ["TaskData", "load_face_data", "load_fusion_data", "load_speech_data", "save_fusion_arrays",
           "synthetic_data", "export_best", "OBJECTIVES", "TUNERS", "best_trials", "device_info",
           "make_hypermodel", "make_tuner", "read_run", "read_search", "run_search", "serve_oracle",
           "set_data_parallel", "summarize"]
