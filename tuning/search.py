"""Run a KerasTuner search for one task, resume it after a kill, and export the best trial.

The pieces, in the order ``emotion-keras tune`` uses them:

* :class:`TaskData`: the compact cached arrays of one split (uint8 faces, float16 speech features,
  float32 fusion vectors) with the class list and the protocol sentence; built by
  :func:`load_face_data`, :func:`load_speech_data`, :func:`load_fusion_data` through the pipelines'
  own readers and preprocessors (or :func:`synthetic_data` for tests).
* :func:`make_tuner`: a Hyperband, Bayesian or random tuner whose project directory is exactly the
  given path and is never overwritten, so rerunning the same command resumes: finished trials are
  reloaded, an interrupted one is run again. Each trial starts from a cleared Keras session and leaves
  ``run.json`` (wall time, device, epochs, configs) beside KerasTuner's ``trial.json``.
* :func:`run_search`: the search itself, with ``search.json`` recording every session of it.
* :func:`export_best`: the best trial as a saved model with its card, retrained on
  train + validation for the best trial's epoch count when asked (and when that count is known).

Distributed tuning needs nothing here: KerasTuner reads ``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` itself (see ``docs/tuning.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json
from emotion_keras.errors import InputError
from emotion_keras.models.card import ModelCard
from emotion_keras.models.io import input_spec

TUNERS = ("hyperband", "bayesian", "random")
OBJECTIVES = ("val_uar", "val_accuracy")
RUN_FILE = "run.json"
SEARCH_FILE = "search.json"


# ============================================================================== data

@dataclasses.dataclass
class TaskData:
    """One task's training and validation arrays, ready for ``tuner.search``.

    ``x_*`` are dicts of named model inputs; ``y_*`` integer indices into ``classes``. ``hypermodel``
    holds the data-dependent arguments of the task's hypermodel (input shapes, fusion base config).
    """

    task: str
    classes: list[str]
    x_train: dict[str, np.ndarray]
    y_train: np.ndarray
    x_val: dict[str, np.ndarray]
    y_val: np.ndarray
    protocol: str
    data: dict[str, Any]
    preprocessing: dict[str, Any]
    hypermodel: dict[str, Any]
    x_test: dict[str, np.ndarray] | None = None
    y_test: np.ndarray | None = None
    test_protocol: str | None = None

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def train_and_val(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Training and validation stacked: what a retrain on all development data sees."""
        keys = [k for k in self.x_train if k in self.x_val]
        x = {k: np.concatenate([self.x_train[k], self.x_val[k]]) for k in keys}
        return x, np.concatenate([self.y_train, self.y_val])


def _indices(labels, classes: list[str]) -> np.ndarray:
    from emotion_keras.labels import to_indices

    return np.asarray(to_indices(list(labels), classes), int)


def load_face_data(spec: str, val_split: str | None = None, val_subjects: float | None = None,
                   val_data: str | None = None, limit: int | None = None, val_limit: int | None = None,
                   seed: int = 0, size: int = 48, rgb: bool = False, geometry: bool = False,
                   classes: list[str] | None = None, progress: bool = True) -> TaskData:
    """Faces through the face pipeline: ``pipelines.splits.load_face_split`` then ``prepare_faces`` (cached
    uint8 arrays). Geometry becomes a tunable input only when the photos carried landmarks."""
    from emotion_keras.pipelines.splits import load_face_split
    from emotion_keras.labels import class_list
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    split = load_face_split(spec, val_split=val_split, val_subjects=val_subjects, val_data=val_data,
                            limit=limit, val_limit=val_limit, seed=seed)
    prep = FacePrepConfig(size=size, grayscale=not rgb, geometry=geometry)
    tr = prepare_faces(split.train, prep, progress=progress)
    va = prepare_faces(split.val, prep, progress=progress)
    if len(tr) == 0 or len(va) == 0:
        raise InputError(spec, f"no usable faces ({len(tr)} train, {len(va)} validation)")
    classes = list(classes) if classes else class_list(tr.labels)
    tr = tr.take(np.asarray([lab in classes for lab in tr.labels], bool))
    va = va.take(np.asarray([lab in classes for lab in va.labels], bool))
    real_geometry = bool(geometry and tr.geometry_valid is not None and tr.geometry_valid.any())
    hm = {"image_shape": prep.shape, "geometry": real_geometry,
          "geometry_dim": 0 if tr.geometry is None else int(tr.geometry.shape[1])}
    return TaskData("face", classes, tr.inputs(), tr.targets(classes), va.inputs(), va.targets(classes),
                    split.protocol, {**split.data, "train_faces": len(tr), "validation_faces": len(va)},
                    prep.to_dict(), hm)


class SpeechVariants:
    """The arrays of each data choice of the speech ``cpu`` space (feature kind, speaker
    normalisation, prosody input, augmented copies), built on first use through the speech
    pipeline's caches (so a resumed search recomputes nothing) and kept for later trials.

    Training windows are normalised per training speaker, validation windows per file, as in
    ``speech train``; augmented copies come from the cached :mod:`augment_audio` sets.
    """

    def __init__(self, train, val, classes, base: dict[str, Any] | None = None, progress: bool = True):
        self.train, self.val, self.classes = list(train), list(val), list(classes)
        self.base = dict(base or {})
        self.progress = progress
        self._arrays: dict[str, tuple] = {}

    def feature_config(self, choice):
        from emotion_keras.preprocess.audio import SpeechFeatureConfig

        return SpeechFeatureConfig.from_dict({**self.base, "feature": choice["feature"],
                                              "speaker_norm": choice["speaker_norm"],
                                              "prosody": choice["prosody"]})

    def augment_config(self, choice) -> dict[str, Any] | None:
        from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

        return AudioAugmentConfig(copies=int(choice["copies"])).to_dict() if choice["copies"] else None

    def input_shape(self, choice) -> tuple[int, int]:
        return self.feature_config(choice).input_shape

    def prosody_dim(self, choice) -> int:
        from emotion_keras.preprocess.prosody import DIM

        return DIM if choice["prosody"] != "none" else 0

    def arrays(self, choice):
        """``(x_train, y_train, x_val, y_val)`` for a data choice (named-input dicts, int labels)."""
        from emotion_keras.pipelines.speech import scoring_windows, training_windows
        from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

        key = json.dumps(choice, sort_keys=True)
        if key not in self._arrays:
            fcfg = self.feature_config(choice)
            aug = self.augment_config(choice)
            tr = training_windows(self.train, fcfg, AudioAugmentConfig.from_dict(aug) if aug else None,
                                  self.progress).keep(self.classes)
            va = scoring_windows(self.val, fcfg, self.progress).keep(self.classes)
            self._arrays[key] = (tr.inputs(), tr.targets(self.classes), va.inputs(), va.targets(self.classes))
        return self._arrays[key]


def load_speech_data(spec: str, fold: int = 4, folds: int = 5, limit: int | None = None,
                     features: dict[str, Any] | None = None, classes: list[str] | None = None,
                     progress: bool = True, space: str = "full") -> TaskData:
    """Speech through the speech pipeline, speaker-independent: the speakers of fold ``fold`` of
    ``folds`` (sorted order, so RAVDESS fold 4 of 5 = actors 17-20) validate, the rest train.

    Windows are the samples (float16 log-mel features from the feature cache); ``limit`` keeps that
    many clips per side, stratified, for smoke runs. With ``space="cpu"`` the hypermodel also gets a
    :class:`SpeechVariants`, so each trial trains on the arrays of its own data choice.
    """
    from emotion_keras.data.records import group_kfold, subjects_of
    from emotion_keras.data.speech import corpus_licence, read_speech
    from emotion_keras.labels import class_list
    from emotion_keras.preprocess.audio import SpeechFeatureConfig, speech_features

    records = read_speech(spec)
    if not records:
        raise InputError(spec, "no audio records")
    try:
        train, val = group_kfold(records, k=folds)[fold]
    except (ValueError, IndexError) as e:
        raise InputError(spec, f"cannot hold out speaker fold {fold} of {folds}: {e}") from None
    if limit:
        train, val = _subset(train, limit, 0), _subset(val, max(2, limit // 4), 1)
    config = SpeechFeatureConfig.from_dict(features or {})
    classes = list(classes) if classes else class_list([r.label for r in train])

    def arrays(recs):
        feats = speech_features(recs, config, progress=progress)
        clip = np.asarray(feats["clip"], int)
        labels = [recs[i].label for i in clip]
        keep = np.asarray([lab in classes for lab in labels], bool)
        return feats["x"][keep], _indices([lab for lab, k in zip(labels, keep) if k], classes), clip[keep]

    x_tr, y_tr, _ = arrays(train)
    x_va, y_va, clips = arrays(val)
    if len(y_tr) == 0 or len(y_va) == 0:
        raise InputError(spec, f"no usable clips ({len(y_tr)} train, {len(y_va)} validation windows)")
    held = subjects_of(val)
    protocol = (f"speaker-independent: speakers {', '.join(held)} held out (fold {fold + 1} of {folds} "
                f"in sorted speaker order, {len(set(clips.tolist()))} clips, {len(y_va)} windows; "
                f"window-level scores), trained on the other {len(subjects_of(train))} speakers "
                f"({len(y_tr)} windows)")
    data = {"corpus": " + ".join(sorted({r.dataset for r in records})), "spec": str(spec),
            "licence": corpus_licence(records), "validation": f"speaker fold {fold + 1}/{folds}",
            "train_windows": int(len(y_tr)), "validation_windows": int(len(y_va))}
    hm: dict[str, Any] = {"input_shape": tuple(x_tr.shape[1:])}
    if space == "cpu":
        hm["variants"] = SpeechVariants(train, val, classes, features, progress)
        protocol += ("; each trial's features, speaker normalisation (statistics of training speakers; "
                     "validation clips per file), prosody input and augmented copies are its own "
                     "hyperparameters")
    return TaskData("speech", classes, {"features": x_tr}, y_tr, {"features": x_va}, y_va, protocol,
                    data, config.to_dict(), hm)


def _subset(records, n: int, seed: int):
    from emotion_keras.pipelines.splits import stratified_subset

    return stratified_subset(list(records), n, seed)


FUSION_KEYS = ("face", "face_frames", "face_mask", "speech", "geometry")


def load_fusion_data(spec: str, fold: int = 4, folds: int = 5, classes: list[str] | None = None,
                     ) -> TaskData:
    """Paired face/speech vectors for the fusion head, subject-independent.

    ``spec`` is either the RAVDESS paired benchmark's action-unit CSV (``ravdess-au:/.../au.csv`` or a
    path ending in ``au.csv``: the 35 OpenFace AUs as face descriptor, the clip's speech functionals
    from :mod:`emotion_keras.fusion_benchmark` as speech vector, both cached), or an ``.npz`` holding
    ``labels`` and ``subjects`` (one per sample) and any of ``face`` (descriptor vectors),
    ``face_frames`` + ``face_mask`` (frame embeddings), ``speech`` (speech embeddings) and
    ``geometry``. Validation holds out the subjects of fold ``fold`` of ``folds`` (sorted order).
    """
    from emotion_keras.labels import class_list

    text = str(spec)
    licence = None
    if text.startswith("ravdess-au:") or text.endswith(".csv"):
        from emotion_keras.data.video import corpus_licence, read_ravdess_au
        from emotion_keras.fusion_benchmark import compute_functionals

        path = Path(text.split(":", 1)[1] if text.startswith("ravdess-au:") else text)
        records, au, _ = read_ravdess_au(path)
        arrays = {"face": au, "speech": compute_functionals(records),
                  "labels": np.asarray([r.label for r in records]),
                  "subjects": np.asarray([str(r.subject) for r in records])}
        licence = corpus_licence(records)
    else:
        path = Path(text.split(":", 1)[1] if text.startswith("npz:") else text)
        if not path.is_file():
            raise InputError(path, "fusion tuning reads the RAVDESS action-unit CSV or an .npz of paired "
                                   "arrays (labels, subjects, face/face_frames+face_mask, speech); no such file")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise InputError(path, f"not a readable .npz ({e})") from None
    missing = [k for k in ("labels", "subjects") if k not in arrays]
    if missing or not any(k in arrays for k in ("face", "face_frames", "speech")):
        raise InputError(path, f"expected arrays labels, subjects and face/face_frames/speech; "
                               f"found {sorted(arrays)}")
    labels = [str(s) for s in arrays["labels"]]
    subjects = np.asarray([str(s) for s in arrays["subjects"]])
    order = sorted(set(subjects.tolist()), key=lambda s: (len(s), s))
    if not 2 <= folds <= len(order) or not 0 <= fold < folds:
        raise InputError(path, f"cannot hold out fold {fold} of {folds} over {len(order)} subjects")
    held = set(np.array_split(np.asarray(order, dtype=object), folds)[fold].tolist())
    is_val = np.asarray([s in held for s in subjects])
    classes = list(classes) if classes else class_list([lab for lab, v in zip(labels, is_val) if not v])
    keep = np.asarray([lab in classes for lab in labels])
    y = np.zeros(len(labels), int)
    y[keep] = _indices([lab for lab, k in zip(labels, keep) if k], classes)
    x = {k: np.asarray(arrays[k], np.float32) for k in FUSION_KEYS if k in arrays}
    tr, va = keep & ~is_val, keep & is_val
    base: dict[str, Any] = {"modalities": tuple(m for m in ("face", "speech")
                                                if m in x or (m == "face" and "face_frames" in x))}
    if "face" in x:
        base.update(face_input="descriptor", face_dim=int(x["face"].shape[1]))
    elif "face_frames" in x:
        base.update(face_input="frames", face_dim=int(x["face_frames"].shape[2]),
                    max_frames=int(x["face_frames"].shape[1]))
    if "speech" in x:
        base["speech_dim"] = int(x["speech"].shape[1])
    if "geometry" in x:
        base["geometry_dim"] = int(x["geometry"].shape[1])
    protocol = (f"subject-independent: subjects {', '.join(sorted(held, key=lambda s: (len(s), s)))} held "
                f"out (fold {fold + 1} of {folds}, {int(va.sum())} samples), trained on the other "
                f"{len(order) - len(held)} subjects ({int(tr.sum())} samples)")
    xtr = {k: v[tr] for k, v in x.items()}
    return TaskData("fusion", classes, xtr, y[tr], {k: v[va] for k, v in x.items()}, y[va], protocol,
                    {"corpus": "RAVDESS paired (OpenFace AUs + speech functionals)" if licence else path.name,
                     "spec": str(spec), "licence": licence or "see the source corpora",
                     "validation": f"subject fold {fold + 1}/{folds}"},
                    {"arrays": sorted(x)}, {"base": base, "train_x": xtr})


def synthetic_data(task: str, n: int = 64, classes: tuple[str, ...] = ("angry", "happy", "sad"),
                   seed: int = 0) -> TaskData:
    """A small learnable problem with each task's input names and dtypes (uint8 faces, float16
    features, float32 vectors): for tests and for checking a set-up without corpora."""
    rng = np.random.default_rng(seed)
    k = len(classes)
    y = np.arange(n) % k
    rng.shuffle(y)
    if task == "face":
        img = rng.integers(0, 60, (n, 48, 48, 1))
        for c in range(k):  # each class brightens its own band of rows
            img[y == c, c * 48 // k:(c + 1) * 48 // k] += 150
        x = {"image": img.clip(0, 255).astype(np.uint8)}
        hm = {"image_shape": (48, 48, 1)}
        prep = {"size": 48, "grayscale": True}
    elif task == "speech":
        feats = rng.normal(size=(n, 32, 16))
        for c in range(k):
            feats[y == c, :, c * 16 // k:(c + 1) * 16 // k] += 2.0
        x = {"features": feats.astype(np.float16)}
        hm = {"input_shape": (32, 16)}
        prep = {"n_mels": 16, "synthetic": True}
    elif task == "fusion":
        face = rng.normal(size=(n, 12))
        speech = rng.normal(size=(n, 8))
        face[np.arange(n), y] += 2.5
        speech[np.arange(n), y] += 2.5
        x = {"face": face.astype(np.float32), "speech": speech.astype(np.float32)}
        hm = {"base": {"modalities": ("face", "speech"), "face_input": "descriptor", "face_dim": 12,
                       "speech_dim": 8}}
        prep = {"arrays": ["face", "speech"]}
    else:
        raise ConfigError(f"task must be face, speech or fusion, not {task!r}")
    cut = int(n * 0.75)
    xtr, xva = {a: v[:cut] for a, v in x.items()}, {a: v[cut:] for a, v in x.items()}
    if task == "fusion":
        hm["train_x"] = xtr
    return TaskData(task, list(classes), xtr, y[:cut], xva, y[cut:],
                    f"synthetic {task} data (seed {seed}): last 25% of {n} samples held out",
                    {"corpus": "synthetic", "licence": "generated"}, prep, hm)


def save_fusion_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write the ``.npz`` :func:`load_fusion_data` reads (atomically, no pickles)."""
    from emotion_keras.data.cache import save_arrays

    return save_arrays(Path(path), arrays)


# ============================================================================== devices

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

    class _TrialHooks:
        """Clear the Keras session before each trial, record ``run.json`` after it, and let the
        hypermodel skip real model builds while the tuner only enumerates the space."""

        trials_run = 0  # trials this process ran (a distributed worker's share)

        def _populate_initial_space(self):
            self.hypermodel.space_only = True
            try:
                super()._populate_initial_space()
            finally:
                self.hypermodel.space_only = False

        def search(self, *fit_args, **fit_kwargs):
            from keras_tuner.src.distribute import utils as dist_utils

            if dist_utils.is_chief_oracle():
                # The chief only serves the oracle. KerasTuner's own loop checks for the end of the
                # last trial every 20 s; this one every second, so the chief exits with its workers.
                self.save()
                serve_oracle(self.oracle)
                return
            super().search(*fit_args, **fit_kwargs)

        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            # KerasTuner imports tensorboard under TensorFlow even without a TensorBoard callback;
            # tensorflow-cpu 2.21 does not install it. Only patch when there is one to patch.
            if any(type(c).__name__ == "TensorBoard" for c in callbacks):
                super()._configure_tensorboard_dir(callbacks, trial, execution)

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
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    if not server.add_insecure_port(address):
        raise ConfigError(f"the chief oracle cannot listen on {address} (port in use?)")
    server.start()
    print(f"chief oracle serving on {address}", file=sys.stderr, flush=True)
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
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
        oracle = getattr(tuner.oracle, "_oracle", tuner.oracle)  # a worker's OracleClient wraps it
        oracle.max_trials = max_trials
    else:
        tuner = cls(hypermodel, max_trials=max_trials, **common)
    return tuner


def make_hypermodel(data: TaskData, space: str = "small", epochs: int = 10,
                    train: TrainConfig | None = None):
    """The task's hypermodel, sized for ``data``."""
    from tuning.hypermodels import HYPERMODELS

    return HYPERMODELS[data.task](data.classes, space=space, epochs=epochs, n_train=data.n_train,
                                  base_train=train, **data.hypermodel)


# ============================================================================== search

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

    train = TrainConfig(epochs=epochs, early_stopping=patience, monitor=objective, seed=seed,
                        verbose=verbose, mixed_precision=mixed_precision)
    policy = trainlib.configure_precision(train)
    hypermodel = make_hypermodel(data, space, epochs, train)
    project_dir = Path(project_dir)
    previous = read_search(project_dir)
    if previous and not overwrite:
        _check_same_search(previous, data, tuner_kind, objective, space, project_dir)
    tuner = make_tuner(tuner_kind, hypermodel, objective, max_trials, epochs, project_dir, seed,
                       overwrite=overwrite)
    worker = _is_worker()
    done_before = 0 if worker else _finished(tuner)
    start, t0 = _now(), time.perf_counter()
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                 verbose=verbose, callbacks=list(callbacks or []))
    seconds = time.perf_counter() - t0
    if worker:  # the chief's oracle holds the trials; a worker only reports its own share
        return tuner, {"project_dir": str(project_dir), "tuner_id": tuner.tuner_id,
                       "trials_run": tuner.trials_run, "seconds": round(seconds, 2)}
    done = _finished(tuner)
    dev = device_info()
    record = previous if previous and not overwrite else {}
    record.update({
        "task": data.task, "tuner": tuner_kind, "objective": objective, "direction": "max",
        "space": space, "max_trials": max_trials, "epochs": epochs, "seed": seed,
        "classes": data.classes, "protocol": data.protocol, "data": data.data,
        "preprocessing": data.preprocessing, "dtype_policy": policy,
    })
    record.setdefault("sessions", []).append({
        "started": start, "seconds": round(seconds, 2), "trials_finished_before": done_before,
        "trials_finished_after": done, "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"),
        "backend": dev["backend"], "device": dev["device"], "device_name": dev["name"],
        "devices": dev["count"], "host": socket.gethostname()})
    atomic_write_json(project_dir / SEARCH_FILE, record)
    return tuner, summarize(tuner, project_dir)


def _is_worker() -> bool:
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


def _finished(tuner) -> int:
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


# ============================================================================== export

def export_best(tuner, data: TaskData, out: str | Path, retrain_on_all: bool = False,
                name: str | None = None, verbose: int = 1) -> dict[str, Any]:
    """Save the best trial's model with its card into ``out`` (e.g. ``saved_models/face``).

    With ``retrain_on_all`` and a known best epoch count, a fresh model with the best
    hyperparameters is trained on train + validation for that many epochs (no early stopping: the
    count comes from the search); the card then reports the search's validation score as what it
    is. Otherwise the best trial's checkpoint (its best epoch) is exported and scored on validation.
    """
    import keras

    from emotion_keras import train as trainlib
    from emotion_keras.evaluate import metrics
    from emotion_keras.models import store

    best = best_trials(tuner, 1)
    if not best:
        raise ConfigError(f"{tuner.project_dir}: no completed trial to export (see the trial.json "
                          "messages of the failed ones)")
    trial = best[0]
    hp = trial.hyperparameters
    project_dir = Path(tuner.project_dir)
    run = read_run(project_dir, trial.trial_id)
    search = read_search(project_dir)
    hm = tuner.hypermodel
    described = hm.describe(hp)
    if getattr(hm, "variants", None) is not None and hm.space == "cpu":  # the best trial's own data
        x_tr, y_tr, x_va, y_va = hm.variants.arrays(hm.data_choice(hp.copy()))
        data = dataclasses.replace(data, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
                                   preprocessing=described["preprocessing"])
    train_cfg = TrainConfig.from_dict(described["train_config"])
    best_epochs = (run.get("fit") or {}).get("best_epoch")
    metrics_out: dict[str, Any] = {}
    history: dict[str, list[float]] = {}
    trial_scores = (run.get("fit") or {}).get("history") or {}
    t0 = time.perf_counter()
    if retrain_on_all and best_epochs:
        x_all, y_all = data.train_and_val()
        if hasattr(hm, "train_x"):
            hm.train_x = x_all  # fusion: normalisation adapted on everything it trains on
        retrain = train_cfg.replace(epochs=int(best_epochs), early_stopping=0)
        hm.epochs = int(best_epochs)
        model = hm.build(hp)
        from tuning.hypermodels import select_inputs

        x_all = select_inputs(model, x_all)
        trainlib.compile_model(model, retrain, int(np.ceil(len(y_all) / retrain.batch_size)))
        keras.utils.set_random_seed(retrain.seed)
        h = trainlib.fit_epochs(model, x_all, y_all, list(data.classes), retrain, verbose=verbose)
        history = {k: [float(v) for v in vals] for k, vals in h.history.items()}
        trained_on, train_used = "train+validation", retrain
        best_val = _trial_metric_summary(trial, trial_scores)
        metrics_out["search_validation"] = {
            **best_val,
            "protocol": f"{data.protocol}; score of the best of {_count(tuner)} trials on this validation "
                        f"split, which selected it (optimistic); the exported weights were then retrained "
                        f"on train+validation for {best_epochs} epochs, so this split is no longer held out"}
    else:
        if retrain_on_all:
            print("note: the best trial's epoch count is unknown; exporting its checkpoint without "
                  "retraining on train+validation", file=sys.stderr)
        with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed here
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(trial)
        trained_on, train_used = "train", train_cfg
        history = trial_scores
        probs = model.predict(select_for(model, data.x_val), batch_size=256, verbose=0)
        metrics_out["validation"] = {
            **metrics(data.y_val, probs, data.classes),
            "protocol": f"{data.protocol}; best of {_count(tuner)} trials selected on this split "
                        f"(optimistic), checkpoint of its best epoch"}
    if data.x_test is not None and data.y_test is not None:
        probs = model.predict(select_for(model, data.x_test), batch_size=256, verbose=0)
        metrics_out["test"] = {**metrics(data.y_test, probs, data.classes),
                               "protocol": data.test_protocol or "test split, unseen by the search"}
    seconds = time.perf_counter() - t0
    sessions = search.get("sessions") or []
    runs = [read_run(project_dir, t.trial_id) for t in tuner.oracle.trials.values()]
    dev = device_info()
    card = ModelCard(
        task=data.task, name=name or f"{data.task}-tuned", classes=data.classes, inputs=input_spec(model),
        preprocessing=data.preprocessing, model_config=described["model_config"],
        train_config=train_used.to_dict(), data={**data.data, "trained_on": trained_on}, metrics=metrics_out,
        history=history,
        training={"seconds": round(seconds, 2), "trained_on": trained_on,
                  "epochs": train_used.epochs, "device": dev["device"], "device_name": dev["name"]},
        extra={"augmentation": described.get("augmentation"), "tuning": {
            "tuner": search.get("tuner") or type(tuner).__name__, "objective": search.get("objective"),
            "space": search.get("space") or hm.space, "trials": _count(tuner),
            "max_trials": search.get("max_trials"), "best_trial": trial.trial_id,
            "best_score": trial.score, "best_epoch": best_epochs,
            "hyperparameters": dict(hp.values), "project_dir": str(project_dir),
            "search_wall_seconds": round(sum(s.get("seconds", 0) for s in sessions), 2),
            "trial_seconds": round(sum(r.get("seconds", 0) for r in runs), 2),
            "gpu_seconds": round(sum(r.get("gpu_seconds", 0) for r in runs), 2),
            "devices": sorted({f"{s.get('backend')}/{s.get('device')}" for s in sessions})}},
        order=TUNED_CARD_ORDER).to_dict()
    store.save(model, out, card)
    # The chosen configs as files, for `face|speech train --model-config/--train-config` (e.g. the
    # 5-fold cross-validation of a tuned speech model).
    for key in ("model_config", "train_config", "preprocessing"):
        atomic_write_json(project_dir / "best" / f"{key}.json", card[key])
    return store.read_card(out)


# The key order of a tuned model's card.json as it has always been written.
TUNED_CARD_ORDER = ("task", "name", "classes", "inputs", "preprocessing", "augmentation", "model_config",
                    "train_config", "data", "metrics", "history", "training", "tuning")


def select_for(model, x):
    from tuning.hypermodels import select_inputs

    return select_inputs(model, x)


def _count(tuner) -> int:
    return _finished(tuner)


def _trial_metric_summary(trial, history: dict[str, list[float]]) -> dict[str, Any]:
    """The best trial's validation metrics at its best epoch (from its own records)."""
    out: dict[str, Any] = {}
    for name in ("val_uar", "val_accuracy", "val_macro_f1", "val_loss"):
        if trial.metrics.exists(name):
            out[name.removeprefix("val_")] = float(trial.metrics.get_last_value(name))
    return out
