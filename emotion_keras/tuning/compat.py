"""The places the tuners reach into KerasTuner's private API, in one module.

KerasTuner does not promise these names (``keras_tuner.src...``, underscored methods); they were
written against the versions in ``TESTED``. :func:`check_version` warns once on another version, so a
broken search names its cause instead of failing deep inside a trial.
"""

from __future__ import annotations

import warnings

TESTED = ("1.4",)  # keras-tuner minor versions these patches were written and tested against
_warned = False


def check_version() -> str:
    """KerasTuner's version; a warning (once) where it is not one of ``TESTED``."""
    global _warned
    import keras_tuner as kt

    version = kt.__version__
    if not _warned and not any(version == t or version.startswith(t + ".") for t in TESTED):
        _warned = True
        warnings.warn(f"keras-tuner {version}: emotion_keras.tuning patches its private API as of "
                      f"{', '.join(TESTED)}; if a search fails, see emotion_keras/tuning/compat.py",
                      stacklevel=2)
    return version


def is_chief_oracle() -> bool:
    """Whether this process is a distributed search's chief (it serves the oracle, trains nothing)."""
    from keras_tuner.src.distribute import utils as dist_utils

    return dist_utils.is_chief_oracle()


def oracle_server(oracle):
    """``(servicer, register)``: KerasTuner's gRPC oracle servicer for ``oracle`` and the function that
    adds it to a ``grpc.server``; ``exit_chief(oracle)`` says when every worker has been told to stop."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    return servicer, protos.get_service_grpc().add_OracleServicer_to_server, oracle_chief.exit_chief


def inner_oracle(tuner):
    """The oracle itself: a distributed worker's ``tuner.oracle`` is an OracleClient wrapping it."""
    return getattr(tuner.oracle, "_oracle", tuner.oracle)


class PrivateHooks:
    """Overrides of two private ``BaseTuner`` methods, mixed into every tuner class.

    ``_populate_initial_space``: the hypermodel skips real model builds (``space_only``) while the
    tuner only enumerates the conditional hyperparameters. ``_configure_tensorboard_dir``: KerasTuner
    imports tensorboard under TensorFlow even without a TensorBoard callback, and tensorflow-cpu
    2.21 does not install it; only patch when there is one to patch.
    """

    def _populate_initial_space(self):
        self.hypermodel.space_only = True
        try:
            super()._populate_initial_space()
        finally:
            self.hypermodel.space_only = False

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        if any(type(c).__name__ == "TensorBoard" for c in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)
