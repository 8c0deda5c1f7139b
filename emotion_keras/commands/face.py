"""``emotion-keras face {preprocess,train,evaluate,compare}``: the face pipeline from a corpus to a
saved, evaluated model, and the multi-model comparison.

The work is done by plain functions (:func:`load_split`, :func:`train_face`, :func:`evaluate_face`,
:func:`compare_faces`) that tests and benchmarks call directly; the ``cmd_*`` functions only parse
arguments. Keras is imported inside functions, after ``--backend`` has been applied.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.backend import active_backend
from emotion_keras.commands.common import (Split, add_perturb_arg, add_run_args, add_train_args, classes_arg,
                                           dataset_name, finished_row, history_dict, json_arg,
                                           perturb_arg, print_evaluation, record_robustness,
                                           robustness_section, save_trained, saved_line,
                                           skip_finished_run, train_config_from_args, write_evaluation)
from emotion_keras.commands.common import write_comparison as _write_table
from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json, cache_key
from emotion_keras.data.faces import corpus_licence, read_faces
from emotion_keras.data.ferplus import soft_targets
from emotion_keras.data.records import Record, group_split, subjects_of
from emotion_keras.errors import InputError
from emotion_keras.models.face import BACKBONES
from emotion_keras.models.io import input_spec
from emotion_keras.preprocess.faces import FaceArrays, FacePrepConfig, prepare_faces

DATASET_NAMES = {"fer2013": "FER2013", "ferplus": "FER+", "ckplus": "CK+48", "rafdb": "RAF-DB", "jaffe": "JAFFE",
                 "wild_faces": "wild faces (muxspace facial_expressions)"}
SPLIT_NAMES = {"fer2013": {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"},
               "ferplus": {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}}


# ---------------------------------------------------------------- splits

def _ds_name(records: list[Record]) -> str:
    return dataset_name(records, DATASET_NAMES)


def _split_name(records: list[Record], split: str) -> str:
    ds = {r.dataset for r in records}
    if len(ds) == 1:
        return SPLIT_NAMES.get(next(iter(ds)), {}).get(split, split)
    return split


def _stratified_subset(records: list[Record], n: int, seed: int) -> list[Record]:
    """Exactly ``n`` records with the class proportions of ``records`` (largest-remainder rounding,
    at least one per class), for quick runs and tests."""
    if n >= len(records):
        return list(records)
    rng = np.random.default_rng(seed)
    labels = np.asarray([r.label for r in records])
    classes = sorted(set(labels.tolist()))
    sizes = np.asarray([(labels == c).sum() for c in classes])
    quota = n * sizes / len(records)
    take = np.minimum(np.maximum(np.floor(quota).astype(int), 1), sizes)
    for i in np.argsort(-(quota - np.floor(quota))):  # hand out what rounding left over
        if take.sum() >= n:
            break
        if take[i] < sizes[i]:
            take[i] += 1
    keep: list[int] = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        keep += rng.choice(idx, size=int(k), replace=False).tolist()
    return [records[i] for i in sorted(keep)]


def _stratified_holdout(records: list[Record], fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    labels = np.asarray([r.label for r in records])
    held = np.zeros(len(records), bool)
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        rng.shuffle(idx)
        held[idx[:max(1, int(round(len(idx) * fraction)))]] = True
    return [r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h]


def _only(records: list[Record], classes: list[str] | None) -> list[Record]:
    if not classes:
        return records
    kept = [r for r in records if r.label in classes]
    if not kept:
        raise InputError("--classes", f"no records labelled {classes}")
    return kept


def load_split(data: str, val_split: str | None = None, val_subjects: float | None = None,
               val_data: str | None = None, limit: int | None = None, val_limit: int | None = None,
               seed: int = 0, classes: list[str] | None = None) -> Split:
    """Read ``data`` and choose the validation records, in this order of preference:

    ``val_data`` (another corpus), ``val_subjects`` (a subject-held-out fraction), ``val_split`` (a
    corpus-declared split). With none given: the corpus's ``validation`` split, else its ``test``
    split, else 20% of subjects held out, else (no subjects) a stratified random 20%.
    A corpus-declared ``test`` split is never used for training. ``classes`` keeps only records with
    those labels (before any subset is drawn).
    """
    records = _only(read_faces(data), classes)
    splits = {r.split for r in records}
    ds = _ds_name(records) + (f" ({', '.join(classes)} only)" if classes else "")
    if val_data:
        val = _only(read_faces(val_data), classes)
        train = [r for r in records if r.split in (None, "train")]
        how = f"{_ds_name(val)} ({len(val):,} images)"
        train_how = f"{ds}"
    elif val_subjects:
        if not 0 < val_subjects < 1:
            raise ConfigError(f"--val-subjects must be a fraction between 0 and 1, not {val_subjects}")
        pool = [r for r in records if r.split != "test"]
        try:
            train, val = group_split(pool, val_subjects, seed=seed)
        except ValueError as e:
            raise InputError(data, f"cannot split by subject: {e}") from None
        n_sub = len(subjects_of(pool))
        how = (f"{ds} subject-held-out: {len(subjects_of(val))} of {n_sub} subjects "
               f"({len(val):,} images, seed {seed})")
        train_how = f"the other {len(subjects_of(train))} subjects"
    else:
        if val_split is None:
            val_split = "validation" if "validation" in splits else "test" if "test" in splits else None
        if val_split is not None:
            val = [r for r in records if r.split == val_split]
            if not val:
                raise InputError(data, f"no records in split {val_split!r}; the corpus declares "
                                       f"{sorted(s for s in splits if s)}")
            train = [r for r in records if r.split == "train"] or \
                [r for r in records if r.split not in (val_split, "test")]
            how = f"{ds} {_split_name(records, val_split)} ({len(val):,} images)"
            train_how = f"{ds} {_split_name(records, 'train')}" if any(r.split == "train" for r in train) \
                else f"the rest of {ds}"
        elif all(r.subject for r in records):
            train, val = group_split(records, 0.2, seed=seed)
            how = (f"{ds} subject-held-out: {len(subjects_of(val))} of {len(subjects_of(records))} "
                   f"subjects ({len(val):,} images, seed {seed})")
            train_how = f"the other {len(subjects_of(train))} subjects"
        else:
            train, val = _stratified_holdout(records, 0.2, seed)
            how = (f"{ds} stratified random 20% hold-out ({len(val):,} images, seed {seed}; the corpus "
                   "names no subjects)")
            train_how = "the other 80%"
    if not train:
        raise InputError(data, "no training records left after choosing the validation set")
    full_train = len(train)
    if limit:
        train = _stratified_subset(train, limit, seed)
    if val_limit:
        val = _stratified_subset(val, val_limit, seed + 1)
        how += f" [stratified subset of {len(val):,}, seed {seed + 1}]"
    train_part = f"{train_how} ({len(train):,} images" + (
        f", stratified subset of {full_train:,}, seed {seed})" if len(train) < full_train else ")")
    protocol = f"{how}, trained on {train_part}"
    info = {"corpus": ds, "spec": str(data), "licence": corpus_licence(records + (val if val_data else [])),
            "train_images": len(train), "validation_images": len(val),
            "validation": val_split if not (val_data or val_subjects) else
            ("subjects" if val_subjects else str(val_data))}
    return Split(train, val, protocol, info)


# ---------------------------------------------------------------- configs from arguments

def prep_config_from_args(args) -> FacePrepConfig:
    base = json_arg(getattr(args, "prep_config", None), "--prep-config")
    return FacePrepConfig.from_dict(
        base, size=getattr(args, "size", None), grayscale=False if getattr(args, "rgb", False) else None,
        geometry=True if getattr(args, "geometry", False) else None, detect=getattr(args, "detect", None),
        margin=getattr(args, "margin", None))


def model_config_dict_from_args(args) -> dict[str, Any]:
    base = json_arg(getattr(args, "model_config", None), "--model-config")
    for key in ("backbone", "attention", "width", "depth"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return base


def make_model_config(model: dict[str, Any], prep: FacePrepConfig):
    """``FaceModelConfig`` with its input matched to the preprocessing (size, channels, geometry);
    an explicit mismatch is an error rather than a model that cannot take the arrays."""
    from emotion_keras.models.face import FaceModelConfig

    data = dict(model)
    for key, value in (("input_size", prep.size), ("channels", prep.channels), ("geometry", prep.geometry)):
        if key in data and data[key] != value:
            raise ConfigError(f"model config {key}={data[key]!r} does not match the preprocessing "
                              f"({value!r}); set it in one place")
        data[key] = value
    return FaceModelConfig.from_dict(data)


def _prep_for_model(prep: FacePrepConfig, model: dict[str, Any]) -> FacePrepConfig:
    """Let the model config ask for geometry or a size without repeating it in the preprocessing."""
    changes = {}
    if model.get("geometry") and not prep.geometry:
        changes["geometry"] = True
    if "input_size" in model and prep.size == FacePrepConfig().size:
        changes["size"] = model["input_size"]
    if "channels" in model and prep.grayscale == FacePrepConfig().grayscale:
        changes["grayscale"] = model["channels"] == 1
    return prep.replace(**changes) if changes else prep


# ---------------------------------------------------------------- training

def select_inputs(model, arrays: FaceArrays):
    """The arrays the model takes, arranged as its inputs are declared (a geometry-less model
    ignores geometry; a model that needs geometry the preprocessing lacks is a config error)."""
    from emotion_keras.models.io import input_names, model_feed

    available = arrays.inputs()
    missing = [n for n in input_names(model) if n not in available]
    if missing:
        raise ConfigError(f"the model takes inputs {missing} that preprocessing did not produce "
                          "(set geometry: true in the preprocessing config)")
    return model_feed(model, available)


def warm_start(net, init_from: str | Path, classes: list[str]) -> dict[str, Any]:
    """Copy a saved face model's weights into ``net`` (same architecture and classes) and return
    what the card records about the start: the source's name, folder and training history."""
    from emotion_keras.models.store import load

    src, card = load(init_from)
    if list(card.get("classes", [])) != list(classes):
        raise ConfigError(f"{init_from}: its classes {card.get('classes')} differ from this run's {classes}")
    theirs, ours = src.get_weights(), net.get_weights()
    if len(theirs) != len(ours) or any(a.shape != b.shape for a, b in zip(theirs, ours)):
        raise ConfigError(f"{init_from}: its architecture differs from this run's model config "
                          f"(pass its model_config, or leave --model-config out to reuse it)")
    net.set_weights(theirs)
    prior = card.get("training", {})
    return {"name": card.get("name"), "dir": str(init_from), "epochs_run": prior.get("epochs_run"),
            "seconds": prior.get("seconds"), "init_from": prior.get("init_from")}


def adapt_batchnorm(model, total_steps: int) -> float | None:
    """Lower BatchNorm's moving-average momentum for short runs; returns the momentum used.

    Keras' default 0.99 needs several hundred steps before the moving statistics forget their
    initial values (mean 0, variance 1); a small corpus (CK+48: 24 steps an epoch) would otherwise be
    evaluated with wrong statistics and predict one class for everything. The momentum is chosen so
    the initial values weigh under e^-10 by the end of training (never above 0.99). It is part of the
    layer's saved config, so the loaded model behaves the same. (An adapter here because
    ``FaceModelConfig`` has no BatchNorm option.)
    """
    import keras

    layers = [la for la in _all_layers(model) if isinstance(la, keras.layers.BatchNormalization)]
    if not layers:
        return None
    momentum = float(min(0.99, max(0.5, 1.0 - 10.0 / max(total_steps, 1))))
    for la in layers:
        la.momentum = momentum
    return round(momentum, 4)


def _all_layers(model):
    for la in model.layers:
        yield la
        if hasattr(la, "layers"):  # nested models (keras.applications backbones)
            yield from _all_layers(la)


def _keep_classes(arrays: FaceArrays, classes: list[str], what: str) -> FaceArrays:
    keep = np.asarray([lab in classes for lab in arrays.labels], bool)
    if not keep.all():
        dropped = sorted({lab for lab, k in zip(arrays.labels, keep) if not k})
        print(f"note: {what}: leaving out {int((~keep).sum())} image(s) labelled {dropped}: "
              f"not among the model's classes {classes}", file=sys.stderr)
        arrays = arrays.take(keep)
    return arrays


def train_face(split: Split, prep: FacePrepConfig, model: dict[str, Any], train: TrainConfig,
               run_dir: str | Path, out: str | Path | None = None, name: str | None = None,
               classes: list[str] | None = None, progress: bool = True,
               init_from: str | Path | None = None) -> dict[str, Any]:
    """Preprocess, build, fit, evaluate on the validation set and save model + card.

    ``init_from`` starts from a saved face model's weights (fine-tuning, or a second, lower-rate
    cosine stage after a budget ran out); its architecture and classes must match.
    Returns ``{"card", "metrics", "out", "fit"}``. Rerunning with the same ``run_dir`` after a kill
    resumes from the last finished epoch (``train.fit``).
    """
    from emotion_keras import train as trainlib
    from emotion_keras.labels import class_list, to_indices
    from emotion_keras.models.face import build_face_model

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    prep = _prep_for_model(prep, model)
    tr = prepare_faces(split.train, prep, progress=progress)
    va = prepare_faces(split.val, prep, progress=progress)
    if len(tr) == 0 or len(va) == 0:
        raise InputError(split.data.get("spec", "?"), f"no usable faces ({len(tr)} train, {len(va)} validation)")
    classes = list(classes) if classes else class_list(tr.labels)
    tr = _keep_classes(tr, classes, "training set")
    va = _keep_classes(va, classes, "validation set")

    policy = trainlib.configure_precision(train)
    model_cfg = make_model_config(model, prep)
    net = build_face_model(model_cfg, classes)
    start = warm_start(net, init_from, classes) if init_from else None
    steps = train.epochs * int(np.ceil(len(tr) / train.batch_size))
    bn_momentum = adapt_batchnorm(net, steps)
    x_tr, x_va = select_inputs(net, tr), select_inputs(net, va)
    soft = soft_targets(split.train, tr.names, classes)  # FER+ votes, where the corpus has them
    y_tr = soft if soft is not None else tr.targets(classes)
    result = trainlib.fit(net, x_tr, y_tr, x_va, va.targets(classes), classes, train, run_dir)

    val_metrics = {**result["validation"], "protocol": split.protocol}
    name = name or run_dir.name
    card = {
        "task": "face",
        "name": name,
        "classes": classes,
        "inputs": input_spec(net),
        "preprocessing": prep.to_dict(),
        "model_config": model_cfg.to_dict(),
        "train_config": result["train_config"],  # the epochs a time budget chose
        "data": {**split.data, "train_faces": len(tr), "validation_faces": len(va),
                 "no_face": len(tr.no_face) + len(va.no_face), "unreadable": len(tr.failed) + len(va.failed)},
        "metrics": {"validation": val_metrics},
        "training": {"seconds": result["train_seconds"], "samples_per_second": result["samples_per_second"],
                     "epochs_run": result["epochs_run"], "dtype_policy": policy,
                     "batchnorm_momentum": bn_momentum, "targets": "vote distributions" if soft is not None
                     else "class labels", **({"budget": result["budget"]} if result.get("budget") else {}),
                     **({"init_from": start} if start else {})},
        "history": history_dict(run_dir, result["history"]),
    }
    return save_trained(net, card, val_metrics, out, run_dir, result,
                        calibrate_on=(predict_arrays(net, va), to_indices(va.labels, classes)))


# ---------------------------------------------------------------- evaluation

TTA_MODES = ("none", "flip", "ten_crop")


def tta_views(images: np.ndarray, mode: str, crop: int = 0) -> list[np.ndarray]:
    """The test-time views of ``(N, H, W, C)`` faces: ``flip`` adds the mirror image; ``ten_crop``
    the four corner and the centre crops of side ``crop`` (the model centre-crops its input, so a
    corner crop is the input shifted by the crop margin) and their mirrors. Without a crop in the
    model, the shift is 1/12 of the side with edge pixels repeated."""
    if mode not in TTA_MODES:
        raise ConfigError(f"TTA must be one of {', '.join(TTA_MODES)}, not {mode!r}")
    views = [images]
    if mode == "ten_crop":
        side = images.shape[1]
        d = (side - crop) // 2 if crop and crop < side else max(1, side // 12)
        pad = np.pad(images, ((0, 0), (d, d), (d, d), (0, 0)), mode="edge")
        for dy, dx in ((0, 0), (0, 2 * d), (2 * d, 0), (2 * d, 2 * d)):
            views.append(np.ascontiguousarray(pad[:, dy:dy + side, dx:dx + side]))
    if mode in ("flip", "ten_crop"):
        views += [np.ascontiguousarray(v[:, :, ::-1]) for v in views]
    return views


def predict_arrays(model, arrays: FaceArrays, tta: str | bool = "none", batch_size: int = 256,
                   crop: int = 0) -> np.ndarray:
    """Class probabilities for preprocessed faces, averaged over the :func:`tta_views`
    (``True`` means ``flip``, as ``--tta-flip`` did)."""
    from emotion_keras.models.io import model_feed

    mode = "flip" if tta is True else "none" if tta is False else tta
    select_inputs(model, arrays)  # the model's inputs exist in the arrays
    probs = None
    for view in tta_views(arrays.images, mode, crop):
        p = np.asarray(model.predict(model_feed(model, {**arrays.inputs(), "image": view}),
                                     batch_size=batch_size, verbose=0), np.float32)
        probs = p if probs is None else probs + p
    return probs / len(tta_views(arrays.images[:1], mode, crop))


def eval_records(records: list[Record], split: str | None) -> tuple[list[Record], str]:
    """The records to evaluate on: ``split`` if given; else the corpus's test, else validation split,
    else everything."""
    splits = {r.split for r in records}
    if split is None:
        split = "test" if "test" in splits else "validation" if "validation" in splits else None
    if split is None or split == "all":
        return records, "all"
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise InputError(split, f"no records in split {split!r}; the corpus declares "
                                f"{sorted(s for s in splits if s) or 'no splits'} (use --split all)")
    return chosen, split


def corpus_faces(model, card: dict[str, Any], data: str, split: str | None = None, limit: int | None = None,
                 seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """A corpus split prepared for a saved model: ``{"records", "split", "arrays", "y", "dropped"}``
    (faces whose label is not a model class are left out and counted in ``dropped``)."""
    from emotion_keras.labels import to_indices

    prep = FacePrepConfig.from_dict(card.get("preprocessing") or {})
    classes = list(card["classes"])
    records, split_used = eval_records(read_faces(data), split)
    if limit:
        records = _stratified_subset(records, limit, seed)
    arrays = prepare_faces(records, prep, progress=progress)
    before = Counter(arrays.labels)
    arrays = _keep_classes(arrays, classes, "evaluation set")
    if len(arrays) == 0:
        raise InputError(data, "no faces to evaluate (none found, or no label among the model's classes)")
    return {"records": records, "split": split_used, "arrays": arrays,
            "y": to_indices(arrays.labels, classes),
            "dropped": {k: v for k, v in before.items() if k not in classes}}


def robustness_faces(model, arrays: FaceArrays, y: np.ndarray, classes: list[str], kinds: list[str],
                     tta: str = "none", seed: int = 0, temperature: float = 1.0,
                     progress: bool = True, crop: int = 0) -> list[dict[str, Any]]:
    """Accuracy, UAR and ECE per perturbation and strength (:mod:`emotion_keras.perturb`)."""
    from emotion_keras import perturb
    from emotion_keras.calibration import apply_temperature, ece
    from emotion_keras.evaluate import metrics

    rows = []
    for kind in kinds:
        strengths, unit = perturb.FACE[kind]
        for strength in strengths:
            images = perturb.perturb_faces(arrays.images, kind, strength, seed)
            probs = apply_temperature(predict_arrays(model, dataclasses.replace(arrays, images=images), tta=tta,
                                                     batch_size=min(256, len(arrays)), crop=crop), temperature)
            m = metrics(y, probs, classes)
            rows.append({"perturbation": kind, "strength": strength, "unit": unit,
                         "accuracy": m["accuracy"], "uar": m["uar"], "ece": ece(probs, y)})
            if progress:
                print(f"  {kind:>9s} {strength:<6g} accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}",
                      file=sys.stderr)
    return rows


def evaluate_face(model_dir: str | Path, data: str, split: str | None = None, tta_flip: bool = False,
                  out: str | Path | None = None, limit: int | None = None, seed: int = 0,
                  progress: bool = True, perturb: list[str] | None = None,
                  tta: str | None = None) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1, confusion, calibration (ECE, reliability) and, with ``perturb``, the
    robustness table of a saved face model on a corpus; writes ``evaluation.json``,
    ``evaluation_confusion.png`` and ``evaluation_reliability.png`` into ``out`` (default: the model
    dir, whose card then also records the robustness table). ``tta`` is ``none``, ``flip`` or
    ``ten_crop`` (``tta_flip`` is the older spelling of ``flip``)."""
    from emotion_keras import calibration
    from emotion_keras.evaluate import metrics
    from emotion_keras.models import store
    from emotion_keras.perturb import FACE, expand

    kinds = expand(perturb or [], FACE)
    model_dir = Path(model_dir)
    model, card = store.load(model_dir)
    classes = list(card["classes"])
    got = corpus_faces(model, card, data, split, limit, seed, progress)
    records, split_used, arrays, y, dropped = (got[k] for k in ("records", "split", "arrays", "y", "dropped"))
    start = time.perf_counter()
    # One batch shape for small sets (a partial last batch costs JAX a second compilation).
    tta = tta or ("flip" if tta_flip else "none")
    crop = int((card.get("model_config") or {}).get("crop") or 0)
    raw = predict_arrays(model, arrays, tta=tta, batch_size=min(256, len(arrays)), crop=crop)
    seconds = time.perf_counter() - start
    temperature = calibration.temperature_of(card)
    probs = calibration.apply_temperature(raw, temperature)
    m = metrics(y, probs, classes)
    ds = _ds_name(records)
    protocol = (f"{ds} {_split_name(records, split_used) if split_used != 'all' else 'all images'} "
                f"({len(arrays):,} faces" + (f" of {len(records):,} images; {len(arrays.no_face)} without a "
                                            f"detected face left out" if arrays.no_face else "")
                + "".join(f"; {n} {lab} image(s) left out: not a class of the model" for lab, n in dropped.items())
                + ")" + (f", stratified subset of {limit} (seed {seed})" if limit else "")
                + {"none": "", "flip": ", horizontal-flip TTA", "ten_crop": ", ten-crop TTA"}[tta]
                + f"; model {card.get('name', model_dir.name)} trained on "
                + f"{(card.get('data') or {}).get('corpus', '?')}")
    report = {"task": "face", "name": card.get("name", model_dir.name), "model_dir": str(model_dir),
              "data": str(data), "split": split_used, "tta": tta, "tta_flip": tta != "none", "backend": active_backend(),
              "no_face": arrays.no_face, "unreadable": [f for f, _ in arrays.failed],
              "predict_seconds": round(seconds, 3), **m, "protocol": protocol,
              "calibration": calibration.report_section(raw, probs, y, temperature)}
    if kinds:
        rows = robustness_faces(model, arrays, y, classes, kinds, tta, seed, temperature, progress, crop)
        report["robustness"] = robustness_section(protocol, m, report["calibration"]["ece"], rows, seed,
                                                  "perturbations applied to the aligned face crops")
    report = write_evaluation(report, Path(out) if out else model_dir)
    if "robustness" in report and (model_dir / store.CARD_FILE).exists() and out is None:
        record_robustness(model_dir, report["robustness"])
    return report


# ---------------------------------------------------------------- comparison

def compare_entries(configs: list[str] | None, backbones: str | None,
                    base_model: dict[str, Any]) -> list[dict[str, Any]]:
    """Each compared model as ``{"name", "model": {...}, "train": {...}}``.

    A config file may hold that shape or just a model config; its name defaults to the file stem.
    """
    entries = []
    for spec in configs or []:
        data = json_arg(spec, "--configs")
        stem = Path(spec).stem if not spec.strip().startswith("{") else f"config{len(entries) + 1}"
        if "model" in data or "train" in data:
            extra = sorted(set(data) - {"name", "model", "train"})
            if extra:
                raise ConfigError(f"{spec}: unknown keys {extra}; expected name, model, train")
            entries.append({"name": data.get("name", stem), "model": {**base_model, **data.get("model", {})},
                            "train": data.get("train", {})})
        else:
            name = data.pop("name", stem)
            entries.append({"name": name, "model": {**base_model, **data}, "train": {}})
    for b in (backbones or "").split(","):
        if b.strip():
            entries.append({"name": b.strip(), "model": {**base_model, "backbone": b.strip()}, "train": {}})
    if not entries:
        raise ConfigError("face compare needs --configs or --backbones")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"compared models need distinct names, got {names}")
    return entries


def compare_faces(split: Split, prep: FacePrepConfig, entries: list[dict[str, Any]], train: TrainConfig,
                  out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train every entry on the same split; write ``comparison.json`` and ``comparison.md``.

    Each model's run lives in ``out/<name>``; an entry whose ``result.json`` matches its config is
    skipped, so rerunning after an interruption continues where it stopped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in entries:
        run = out / entry["name"]
        tcfg = train.replace(**entry.get("train", {}))
        digest = cache_key(split.protocol, prep.to_dict(), entry["model"], tcfg.to_dict())
        if (row := finished_row(run, entry["name"], digest)) is not None:
            rows.append(row)
            continue
        print(f"[{entry['name']}] training {entry['model']}", file=sys.stderr)
        res = train_face(split, prep, entry["model"], tcfg, run, name=entry["name"], progress=progress)
        card, m = res["card"], res["metrics"]
        row = {"name": entry["name"], "backbone": card["model_config"].get("backbone"),
               "parameters": card["parameters"], "accuracy": round(m["accuracy"], 4),
               "uar": round(m["uar"], 4), "macro_f1": round(m["macro_f1"], 4),
               "train_seconds": card["training"]["seconds"], "epochs": card["training"]["epochs_run"],
               "samples_per_second": card["training"]["samples_per_second"], "backend": card["backend"],
               "size_bytes": card["size_bytes"], "model_config": card["model_config"],
               "train_config": card["train_config"], "digest": digest, "path": str(run)}
        atomic_write_json(run / "result.json", row)
        rows.append(row)
        write_comparison(out, split, prep, rows)
    return write_comparison(out, split, prep, rows)


def write_comparison(out: Path, split: Split, prep: FacePrepConfig, rows: list[dict[str, Any]]) -> dict:
    """``comparison.json`` / ``comparison.md`` of the face models compared so far."""
    return _write_table(out, "face", "Face model comparison", split, rows,
                        [("backbone", lambda r: r.get("backbone") or "")], {"preprocessing": prep.to_dict()})


# ---------------------------------------------------------------- argument parsing

def _add_data_args(p, split: bool = True):
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="corpus: fer2013:/path, ckplus:/path, rafdb:/path, jaffe:/path, folder:/path, "
                        "csv:/path/labels.csv, or a path (kind guessed)")
    if split:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--val-split", metavar="NAME",
                       help="validate on this corpus-declared split (default: validation, else test)")
        g.add_argument("--val-subjects", type=float, metavar="FRACTION",
                       help="validate on this fraction of subjects, held out (e.g. 0.2)")
        g.add_argument("--val-data", metavar="SPEC", help="validate on another corpus")
        p.add_argument("--limit", type=int, metavar="N", help="train on a stratified subset of N images")
        p.add_argument("--val-limit", type=int, metavar="N", help="validate on a stratified subset of N")


def _add_prep_args(p):
    g = p.add_argument_group("preprocessing")
    g.add_argument("--prep-config", metavar="JSON|FILE", help="FacePrepConfig as JSON or a JSON file")
    g.add_argument("--size", type=int, help="face side in pixels, 48..112 (default 48)")
    g.add_argument("--rgb", action="store_true", help="keep colour (default: greyscale)")
    g.add_argument("--geometry", action="store_true", help="add landmark geometry features")
    g.add_argument("--detect", choices=("auto", "always", "never"), help="face detection (default auto)")
    g.add_argument("--margin", type=float, help="context around an aligned face (fraction)")


def _add_model_args(p):
    g = p.add_argument_group("model")
    g.add_argument("--model-config", metavar="JSON|FILE", help="FaceModelConfig as JSON or a JSON file")
    g.add_argument("--backbone", choices=BACKBONES, help="backbone family (default vgg)")
    g.add_argument("--attention", action=argparse.BooleanOptionalAction, default=None,
                   help="self-attention block in the backbone (default on)")
    g.add_argument("--width", type=int, help="filters of the first block (vgg/resnet)")
    g.add_argument("--depth", type=int, help="number of blocks (vgg/resnet)")


def register(subparsers) -> None:
    p = subparsers.add_parser("face", help="face datasets: preprocess, train, evaluate, compare models",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="face_verb", metavar="ACTION", required=True)

    pp = sub.add_parser("preprocess", help="detect, align and cache a corpus's faces; list images without a face")
    _add_data_args(pp, split=False)
    _add_prep_args(pp)
    pp.add_argument("--out", metavar="FILE.npz", help="also export the arrays (images, labels, ...) here")
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pp.set_defaults(func=cmd_preprocess)

    tp = sub.add_parser("train", help="train a face model and save it with its model card")
    _add_data_args(tp)
    _add_prep_args(tp)
    _add_model_args(tp)
    add_train_args(tp, classes=True)
    add_run_args(tp, "face")
    tp.add_argument("--init-from", metavar="MODEL_DIR",
                    help="start from this saved face model's weights (fine-tuning or a second stage); "
                         "its model config and preprocessing are reused unless given")
    tp.set_defaults(func=cmd_train)

    ep = sub.add_parser("evaluate", help="accuracy, UAR, macro-F1 and confusion matrix of a saved model")
    ep.add_argument("--model", default=None, help="model directory (default saved_models/face)")
    _add_data_args(ep, split=False)
    ep.add_argument("--split", help="corpus split to evaluate (default: test, else validation, else all)")
    ep.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: none (default), flip, "
                                                   "ten_crop (corner + centre crops and their mirrors)")
    ep.add_argument("--tta-flip", action="store_true", help="same as --tta flip")
    ep.add_argument("--limit", type=int, help="evaluate a stratified subset of N images")
    ep.add_argument("--out", help="report folder (default: the model directory)")
    add_perturb_arg(ep, "occlusion (eyes, mouth, blocks), blur, noise, jpeg, rotate, downscale")
    ep.add_argument("--json", action="store_true", help="print the full report as JSON")
    ep.set_defaults(func=cmd_evaluate)

    cp = sub.add_parser("compare", help="train several model configs on the same split and tabulate them")
    cp.add_argument("--configs", nargs="+", metavar="JSON", help="model config files (or inline JSON)")
    cp.add_argument("--backbones", help="comma-separated backbones, each with the default config")
    _add_data_args(cp)
    _add_prep_args(cp)
    _add_model_args(cp)
    add_train_args(cp, classes=True)
    cp.add_argument("--out", default="runs/face/compare", help="comparison folder (default runs/face/compare)")
    cp.set_defaults(func=cmd_compare)


def _split_from_args(args) -> Split:
    return load_split(args.data, val_split=args.val_split, val_subjects=args.val_subjects,
                      val_data=args.val_data, limit=args.limit, val_limit=args.val_limit,
                      seed=args.seed or 0, classes=classes_arg(args))


def cmd_preprocess(args) -> int:
    prep = prep_config_from_args(args)
    records = read_faces(args.data)
    arrays = prepare_faces(records, prep, progress=not args.json)
    from collections import Counter

    summary = {"data": args.data, "records": len(records), "faces": len(arrays),
               "labels": dict(Counter(arrays.labels)), "shape": list(arrays.images.shape[1:]),
               "no_face": arrays.no_face, "unreadable": [{"file": f, "error": e} for f, e in arrays.failed],
               "from_cache": arrays.from_cache, "preprocessing": prep.to_dict()}
    if args.out:
        from emotion_keras.data.cache import save_arrays

        export = {"images": arrays.images, "labels": np.asarray(arrays.labels, str),
                  "names": np.asarray(arrays.names, str),
                  "subjects": np.asarray([s or "" for s in arrays.subjects], str)}
        if arrays.geometry is not None:
            export["geometry"] = arrays.geometry
        save_arrays(Path(args.out), export)
        summary["out"] = args.out
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.data}: {len(records):,} images -> {len(arrays):,} faces of shape "
              f"{tuple(arrays.images.shape[1:])}{' (cached)' if arrays.from_cache else ''}")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["labels"].items())))
        if arrays.no_face:
            print(f"  no face found in {len(arrays.no_face)} image(s) (listed above)")
        if args.out:
            print(f"  arrays written to {args.out}")
    return 0


def _default_run_dir(args, split: Split, prep, model: dict, train: TrainConfig) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    if args.name:
        return Path("runs/face") / args.name
    ds = (split.train[0].dataset if split.train else "data").replace("/", "_")
    tag = cache_key(split.protocol, prep.to_dict(), model, train.to_dict())[:8]
    return Path("runs/face") / f"{ds}-{model.get('backbone', 'default')}-{tag}"


def cmd_train(args) -> int:
    prep = prep_config_from_args(args)
    train = train_config_from_args(args)
    model = model_config_dict_from_args(args)
    if args.init_from and not model:  # fine-tuning: the source's architecture and preprocessing
        from emotion_keras.models.store import read_card

        card = read_card(Path(args.init_from))
        model = dict(card["model_config"])
        if not args.prep_config:
            prep = FacePrepConfig.from_dict(card["preprocessing"])
    split = _split_from_args(args)
    run_dir = _default_run_dir(args, split, prep, model, train)
    if skip_finished_run(run_dir, args.force):
        return 0
    if args.force:
        shutil.rmtree(run_dir / "resume", ignore_errors=True)  # a killed run's state: start afresh
    print(f"run directory: {run_dir}\nprotocol: {split.protocol}", file=sys.stderr)
    res = train_face(split, prep, model, train, run_dir, out=args.out, name=args.name,
                     classes=classes_arg(args), init_from=args.init_from)
    print(saved_line(res))
    return 0


def cmd_evaluate(args) -> int:
    from emotion_keras.models.store import default_model_dir

    report = evaluate_face(args.model or default_model_dir("face"), args.data, split=args.split,
                           tta_flip=args.tta_flip, out=args.out, limit=args.limit, progress=not args.json,
                           perturb=perturb_arg(args), seed=args.seed, tta=args.tta)
    print_evaluation(report, args.json)
    return 0


def cmd_compare(args) -> int:
    prep = prep_config_from_args(args)
    train = train_config_from_args(args)
    entries = compare_entries(args.configs, args.backbones, model_config_dict_from_args(args))
    split = _split_from_args(args)
    table = compare_faces(split, prep, entries, train, args.out)
    print(Path(args.out, "comparison.md").read_text())
    return 0 if table["rows"] else 1


__all__ = ["Split", "load_split", "train_face", "evaluate_face", "compare_faces", "register",
           "predict_arrays"]
