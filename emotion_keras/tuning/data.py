"""The arrays a search trains on: :class:`TaskData` (uint8 faces, float16 speech features, float32
fusion vectors, with the class list and the protocol sentence), built by :func:`load_face_data`,
:func:`load_speech_data`, :func:`load_fusion_data` through the pipelines' own readers and
preprocessors, or :func:`synthetic_data` for tests. No Keras import.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.errors import InputError


@dataclasses.dataclass
class TaskData:
    """One task's training and validation arrays, ready for ``tuner.search``.

    ``x_*`` are dicts of named model inputs; ``y_val`` integer indices into ``classes``; ``y_train``
    indices too, or ``(N, classes)`` target distributions where the corpus has them (FER+ votes), so
    a search learns from what ``face train`` learns from. ``hypermodel`` holds the data-dependent
    arguments of the task's hypermodel (input shapes, fusion base config).
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
    teacher: dict[str, Any] | None = None  # the record of a model distilled into ``y_train``

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def train_and_val(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Training and validation stacked: what a retrain on all development data sees."""
        keys = [k for k in self.x_train if k in self.x_val]
        x = {k: np.concatenate([self.x_train[k], self.x_val[k]]) for k in keys}
        y_val = self.y_val
        if np.ndim(self.y_train) == 2:  # distributions beside class indices: the indices as one-hot rows
            y_val = np.eye(len(self.classes), dtype=np.float32)[np.asarray(y_val, int)]
        return x, np.concatenate([self.y_train, y_val])


def _indices(labels, classes: list[str]) -> np.ndarray:
    from emotion_keras.labels import to_indices

    return np.asarray(to_indices(list(labels), classes), int)


def load_face_data(spec: str, val_split: str | None = None, val_subjects: float | None = None,
                   val_data: str | None = None, limit: int | None = None, val_limit: int | None = None,
                   seed: int = 0, size: int = 48, rgb: bool = False, geometry: bool = False,
                   classes: list[str] | None = None, progress: bool = True,
                   add_data: tuple[str, ...] | list[str] = (), teacher: str | Path | None = None,
                   distill: tuple[float, float] | None = None, val_fraction: float | None = None) -> TaskData:
    """Faces through the face pipeline: ``pipelines.splits.load_face_split`` then ``prepare_faces`` (cached
    uint8 arrays). Geometry becomes a tunable input only when the photos carried landmarks.

    As in ``face train``: ``add_data`` corpora add training faces only, FER+ votes
    (``ferplus-probability:``) are the training targets, with any hard labels beside them one-hot,
    and a ``teacher`` model's predictions make up ``distill`` = (share, temperature) of them
    (default 0.5, 2), so every trial learns from the same distilled targets."""
    from emotion_keras.data.ferplus import training_targets
    from emotion_keras.pipelines.face import check_teacher, distilled_targets
    from emotion_keras.pipelines.splits import load_face_split
    from emotion_keras.labels import class_list
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    prep = FacePrepConfig(size=size, grayscale=not rgb, geometry=geometry)
    if teacher:
        check_teacher(teacher, prep, classes)
    split = load_face_split(spec, val_split=val_split, val_subjects=val_subjects, val_data=val_data,
                            limit=limit, val_limit=val_limit, seed=seed, add_data=add_data,
                            val_fraction=val_fraction)
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
    y_tr = training_targets(split.train, tr, classes)
    record = None
    if teacher:
        share, temperature = distill or (TrainConfig.distill, TrainConfig.distill_temperature)
        y_tr, record = distilled_targets(y_tr, teacher, tr, classes, prep, share, temperature)
    return TaskData("face", classes, tr.inputs(), y_tr, va.inputs(), va.targets(classes), split.protocol,
                    {**split.data, "train_faces": len(tr), "validation_faces": len(va)}, prep.to_dict(), hm,
                    teacher=record)


class SpeechVariants:
    """The arrays of each data choice of the speech ``cpu`` space (feature kind, speaker
    normalisation, prosody input, augmented copies), built on first use through the speech
    pipeline's caches (so a resumed search recomputes nothing) and kept for later trials.

    Training windows are normalised per training speaker, each validation speaker with the statistics
    of their own clips (enrolment), as in ``speech train``; augmented copies come from the cached
    :mod:`augment_audio` sets.
    """

    def __init__(self, train, val, classes, base: dict[str, Any] | None = None, progress: bool = True):
        self.train, self.val, self.classes = list(train), list(val), list(classes)
        self.base = dict(base or {})
        self.progress = progress
        self._arrays: dict[str, tuple] = {}

    def feature_config(self, choice):
        from emotion_keras.pipelines.speech import FAMILIES
        from emotion_keras.preprocess.audio import SpeechFeatureConfig

        # functionals take the frame settings of the `linear` family (32 ms frames, 20 MFCC)
        frames = FAMILIES["linear"][1] if choice["feature"] == "functionals" else {}
        return SpeechFeatureConfig.from_dict({**self.base, **frames, "feature": choice["feature"],
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
            tr, prior = training_windows(self.train, fcfg, AudioAugmentConfig.from_dict(aug) if aug else None,
                                         self.progress)
            tr = tr.keep(self.classes)
            va = scoring_windows(self.val, fcfg, self.progress, prior=prior).keep(self.classes)
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
        protocol += ("; each trial's features, speaker normalisation (each training speaker with their own "
                     "statistics, each validation speaker with those of their own clips: enrolment), prosody "
                     "input and augmented copies are its own hyperparameters")
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
