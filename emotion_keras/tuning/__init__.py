"""KerasTuner search for the face, speech and fusion pipelines (``emotion-keras tune``).

:mod:`.data` builds the compact arrays of a split (:class:`~.data.TaskData`) through the pipelines'
own readers and preprocessors; :mod:`.hypermodels` holds the search spaces (on the pipelines' model
builders, fitted by ``train.fit_epochs``); :mod:`.tuners` the resumable tuners and the search;
:mod:`.export` the best trial as a saved model with its card; :mod:`.compat` the few places that
reach into KerasTuner's private API, checked against the versions they were written for. The
top-level ``tuning/`` folder keeps the user-facing entry points. Importing this package does not
import Keras; its modules do, so the CLI imports them only after ``--backend`` is applied.
"""
