"""Resumable KerasTuner searches: :func:`make_tuner` (a Hyperband, Bayesian or random tuner whose
project directory is exactly the given path and is never overwritten, so rerunning the same command
resumes: finished trials are reloaded, an interrupted one is run again; each trial starts from a
cleared Keras session and leaves ``run.json`` beside KerasTuner's ``trial.json``), :func:`run_search`
(with ``search.json`` recording every session of it), the device queries, and the chief's oracle
server for distributed searches. KerasTuner's private API is reached only through :mod:`.compat`.

Distributed tuning needs nothing else: KerasTuner reads ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` itself (see ``docs/tuning.md``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json
from emotion_keras.tuning import compat
from emotion_keras.tuning.data import TaskData

TUNERS = ("hyperband", "bayesian", "random")
OBJECTIVES = ("val_uar", "val_accuracy")
RUN_FILE = "run.json"
SEARCH_FILE = "search.json"


def device_info() -> dict[str, Any]:
    """Backend, accelerator kind and count (recorded with every trial and on the card)."""
    import keras

    backend = keras.backend.backend()
    info: dict[str, Any] = {"backend": backend, "device": "cpu", "count": 1, "name": "cpu"}
    try:
        if backend == "jax":
            import jax

            devs = jax.devices()
            info.update(device=devs[0].platform, count=len(devs),
                        name=getattr(devs[0], "device_kind", devs[0].platform))
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                info.update(device="gpu", count=len(gpus), name=gpus[0].name)
    except Exception:  # device queries must never stop a search
        pass
    info["device"] = "gpu" if info["device"] in ("gpu", "cuda", "rocm") else info["device"]
    return info


def set_data_parallel() -> str:
    """Train every trial data-parallel over all local accelerators (``keras.distribution``, JAX).

    Returns a line saying what was set; with one device, or another backend, nothing changes.
    """
    import keras

    if keras.backend.backend() != "jax":
        return f"data-parallel: not set (keras.distribution needs the JAX backend, not " \
               f"{keras.backend.backend()})"
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return f"data-parallel: not set (one device: {devices[0] if devices else 'none'})"
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return f"data-parallel over {len(devices)} devices: {', '.join(map(str, devices))}"


# ============================================================================== tuners

def _tuner_classes():
    import keras
    import keras_tuner as kt

    compat.check_version()

    class _TrialHooks(compat.PrivateHooks):
        """Clear the Keras session before each trial, record ``run.json`` after it, and let the
        hypermodel skip real model builds while the tuner only enumerates the space."""

        trials_run = 0  # trials this process ran (a distributed worker's share)

        def search(self, *fit_args, **fit_kwargs):
            if compat.is_chief_oracle():
                # The chief only serves the oracle. KerasTuner's own loop checks for the end of the
                # last trial every 20 s; this one every second, so the chief exits with its workers.
                self.save()
                serve_oracle(self.oracle)
                return
            super().search(*fit_args, **fit_kwargs)

        def run_trial(self, trial, *args, **kwargs):
            keras.utils.clear_session(free_memory=True)
            self.hypermodel.last_fit = {}
            self.trials_run = getattr(self, "trials_run", 0) + 1
            started = _now()
            t0 = time.perf_counter()
            status = "failed"
            try:
                out = super().run_trial(trial, *args, **kwargs)
                status = "completed"
                return out
            finally:
                self._write_run(trial, started, time.perf_counter() - t0, status)

        def _write_run(self, trial, started, seconds, status):
            hm = self.hypermodel
            try:
                described = hm.describe(trial.hyperparameters)
            except Exception as e:  # a bad combination is the trial's failure, not the record's
                described = {"error": f"{type(e).__name__}: {e}"}
            dev = device_info()
            record = {
                "trial_id": trial.trial_id, "status": status, "tuner_id": self.tuner_id,
                "task": hm.task, "space": hm.space, "started": started, "seconds": round(seconds, 3),
                "gpu_seconds": round(seconds, 3) if dev["device"] == "gpu" else 0.0,
                "device": dev, "pid": os.getpid(), "host": socket.gethostname(),
                "hyperparameters": dict(trial.hyperparameters.values), **described,
                "fit": {k: v for k, v in hm.last_fit.items()},
            }
            try:
                atomic_write_json(Path(self.get_trial_dir(trial.trial_id)) / RUN_FILE, record)
            except OSError as e:
                print(f"warning: could not write {RUN_FILE} for trial {trial.trial_id}: {e}",
                      file=sys.stderr)

    class RandomTuner(_TrialHooks, kt.RandomSearch):
        pass

    class BayesianTuner(_TrialHooks, kt.BayesianOptimization):
        pass

    class HyperbandTuner(_TrialHooks, kt.Hyperband):
        pass

    return {"random": RandomTuner, "bayesian": BayesianTuner, "hyperband": HyperbandTuner}


def serve_oracle(oracle, poll: float = 1.0) -> None:
    """Serve ``oracle`` to the workers over gRPC until the search is over and every worker has
    been told to stop (``KERASTUNER_ORACLE_IP``:``KERASTUNER_ORACLE_PORT``)."""
    from concurrent import futures

    import grpc

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer, register, exit_chief = compat.oracle_server(oracle)
    register(servicer, server)
    if not server.add_insecure_port(address):
        raise ConfigError(f"the chief oracle cannot listen on {address} (port in use?)")
    server.start()
    print(f"chief oracle serving on {address}", file=sys.stderr, flush=True)
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def make_tuner(kind: str, hypermodel, objective: str = "val_uar", max_trials: int = 10,
               epochs: int = 10, project_dir: str | Path = "tuning_runs/face", seed: int = 0,
               overwrite: bool = False):
    """A tuner over ``hypermodel`` whose project directory is ``project_dir`` itself.

    ``overwrite=False`` (the default) reloads an existing project: the resume path. Hyperband's
    brackets come from ``epochs`` (its ``max_epochs``); ``max_trials`` caps its trial count too.
    """
    import keras_tuner as kt

    if kind not in TUNERS:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, not {kind!r}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    if max_trials < 1 or epochs < 1:
        raise ConfigError("max-trials and epochs must be positive")
    project_dir = Path(project_dir)
    cls = _tuner_classes()[kind]
    common = dict(objective=kt.Objective(objective, direction="max"), seed=seed,
                  directory=str(project_dir.parent), project_name=project_dir.name,
                  overwrite=overwrite, max_consecutive_failed_trials=3)
    if kind == "hyperband":
        tuner = cls(hypermodel, max_epochs=epochs, factor=3, hyperband_iterations=1, **common)
        compat.inner_oracle(tuner).max_trials = max_trials
    else:
        tuner = cls(hypermodel, max_trials=max_trials, **common)
    return tuner


def make_hypermodel(data: TaskData, space: str = "small", epochs: int = 10,
                    train: TrainConfig | None = None):
    """The task's hypermodel, sized for ``data``."""
    from emotion_keras.tuning.hypermodels import HYPERMODELS

    return HYPERMODELS[data.task](data.classes, space=space, epochs=epochs, n_train=data.n_train,
                                  base_train=train, **data.hypermodel)


def read_search(project_dir: str | Path) -> dict[str, Any]:
    path = Path(project_dir) / SEARCH_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_search(data: TaskData, tuner_kind: str = "random", objective: str = "val_uar",
               max_trials: int = 10, epochs: int = 10, project_dir: str | Path = "tuning_runs/face",
               space: str = "small", patience: int = 3, seed: int = 0, verbose: int = 1,
               mixed_precision: str = "auto", overwrite: bool = False, callbacks: list | None = None):
    """Search (or resume searching) and return ``(tuner, summary)``.

    A second call on the same ``project_dir`` reuses every finished trial and only runs what is
    missing up to ``max_trials``; ``search.json`` keeps one entry per session (wall time, trials run).
    """
    from emotion_keras import train as trainlib

    distilled = {"distill": data.teacher["share"], "distill_temperature": data.teacher["temperature"]} \
        if data.teacher else {}  # already in the targets: recorded so the trials' configs say so
    train = TrainConfig(epochs=epochs, early_stopping=patience, monitor=objective, seed=seed,
                        verbose=verbose, mixed_precision=mixed_precision, **distilled)
    policy = trainlib.configure_precision(train)
    hypermodel = make_hypermodel(data, space, epochs, train)
    project_dir = Path(project_dir)
    previous = read_search(project_dir)
    if previous and not overwrite:
        _check_same_search(previous, data, tuner_kind, objective, space, project_dir)
    tuner = make_tuner(tuner_kind, hypermodel, objective, max_trials, epochs, project_dir, seed,
                       overwrite=overwrite)
    worker = is_worker()
    done_before = 0 if worker else finished_trials(tuner)
    start, t0 = _now(), time.perf_counter()
    if not worker:  # recorded before the first trial, so that a killed search still reports what it was
        record = _search_record(previous if previous and not overwrite else {}, data, tuner_kind, objective,
                                space, max_trials, epochs, seed, policy)
        for session in record.get("sessions", []):
            if session.get("status") == "running":
                session["status"] = "killed"  # an earlier session that never wrote its end
        record.setdefault("sessions", []).append({
            "started": start, "seconds": None, "status": "running", "trials_finished_before": done_before,
            "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"), "host": socket.gethostname()})
        atomic_write_json(project_dir / SEARCH_FILE, record)
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                 verbose=verbose, callbacks=list(callbacks or []))
    seconds = time.perf_counter() - t0
    if worker:  # the chief's oracle holds the trials; a worker only reports its own share
        return tuner, {"project_dir": str(project_dir), "tuner_id": tuner.tuner_id,
                       "trials_run": tuner.trials_run, "seconds": round(seconds, 2)}
    done = finished_trials(tuner)
    dev = device_info()
    record["sessions"][-1].update({
        "seconds": round(seconds, 2), "status": "finished", "trials_finished_after": done,
        "backend": dev["backend"], "device": dev["device"], "device_name": dev["name"], "devices": dev["count"]})
    atomic_write_json(project_dir / SEARCH_FILE, record)
    return tuner, summarize(tuner, project_dir)


def _search_record(record: dict[str, Any], data: TaskData, tuner_kind: str, objective: str, space: str,
                   max_trials: int, epochs: int, seed: int, policy) -> dict[str, Any]:
    """``search.json``: what the search is (task, split, space...) and its sessions so far."""
    return {**record,
            "task": data.task, "tuner": tuner_kind, "objective": objective, "direction": "max",
            "space": space, "max_trials": max_trials, "epochs": epochs, "seed": seed,
            "classes": data.classes, "protocol": data.protocol, "data": data.data, "teacher": data.teacher,
            "preprocessing": data.preprocessing, "dtype_policy": policy}


def is_worker() -> bool:
    """Whether this process is a distributed search's worker (it trains; the chief holds the trials)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def _check_same_search(previous, data, tuner_kind, objective, space, project_dir):
    """Resuming a project with another task, tuner, objective or space would mix incomparable trials."""
    for key, value in (("task", data.task), ("tuner", tuner_kind), ("objective", objective),
                       ("space", space)):
        if previous.get(key) not in (None, value):
            raise ConfigError(f"{project_dir}: this project was searched with {key}={previous[key]!r}, "
                              f"not {value!r}; use another --project-dir or --overwrite")
    if previous.get("classes") not in (None, data.classes):
        raise ConfigError(f"{project_dir}: the project's classes {previous['classes']} differ from the "
                          f"data's {data.classes}; use another --project-dir or --overwrite")
    if "teacher" in previous and _targets_from(previous["teacher"]) != _targets_from(data.teacher):
        raise ConfigError(f"{project_dir}: the project's trials learnt from {_teacher_text(previous['teacher'])}, "
                          f"this search from {_teacher_text(data.teacher)}; use another --project-dir or --overwrite")


def _targets_from(teacher: dict[str, Any] | None):
    return teacher and (teacher.get("sha256"), teacher.get("share"), teacher.get("temperature"))


def _teacher_text(teacher: dict[str, Any] | None) -> str:
    if not teacher:
        return "labels alone (no teacher)"
    return (f"teacher {teacher.get('dir')} (sha256 {str(teacher.get('sha256'))[:12]}, share {teacher.get('share')}, "
            f"temperature {teacher.get('temperature')})")


def finished_trials(tuner) -> int:
    """How many trials of the search have completed."""
    return sum(1 for t in tuner.oracle.trials.values() if t.status == "COMPLETED")


def summarize(tuner, project_dir: str | Path) -> dict[str, Any]:
    """The best trial's id, score, hyperparameters and epoch count, and the trial counts."""
    trials = list(tuner.oracle.trials.values())
    best = best_trials(tuner, 1)
    out: dict[str, Any] = {
        "project_dir": str(project_dir),
        "trials": len(trials),
        "completed": sum(1 for t in trials if t.status == "COMPLETED"),
        "failed": sum(1 for t in trials if t.status in ("FAILED", "INVALID")),
    }
    if best:
        b = best[0]
        run = read_run(project_dir, b.trial_id)
        out.update(best_trial=b.trial_id, best_score=b.score, best_hyperparameters=dict(b.hyperparameters.values),
                   best_epoch=(run.get("fit") or {}).get("best_epoch"))
    return out


def best_trials(tuner, n: int = 1) -> list:
    """The ``n`` best *completed* trials (KerasTuner also ranks failed ones, scoreless)."""
    return [t for t in tuner.oracle.get_best_trials(len(tuner.oracle.trials))
            if t.status == "COMPLETED" and t.score is not None][:n]


def read_run(project_dir: str | Path, trial_id: str) -> dict[str, Any]:
    try:
        return json.loads((Path(project_dir) / f"trial_{trial_id}" / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
