"""The face pipeline: preprocess, build, fit, calibrate and save (:func:`train_face`); score a saved
model on a corpus with test-time augmentation and robustness (:func:`evaluate_face`); train several
configs on one split (:func:`compare_faces`). Keras is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.backend import active_backend
from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.faces import read_faces
from emotion_keras.data.ferplus import training_targets
from emotion_keras.data.records import Record
from emotion_keras.errors import InputError
from emotion_keras.models.card import ModelCard, face_views
from emotion_keras.models.io import input_spec
from emotion_keras.pipelines.common import (ComparisonSpec, compare_models, finish_evaluation, history_dict,
                                           save_trained, training_prior)
from emotion_keras.pipelines.splits import Split, face_dataset_name, face_split_name, stratified_subset
from emotion_keras.preprocess.faces import FaceArrays, FacePrepConfig, prepare_faces


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


# ---------------------------------------------------------------- preprocessing

def preprocess_faces(data: str, prep: FacePrepConfig, out: str | Path | None = None,
                     progress: bool = True) -> tuple[dict[str, Any], FaceArrays]:
    """Detect, align and cache a corpus's faces; with ``out``, also export the arrays (images,
    labels, names, subjects, geometry) as an npz. Returns the summary ``face preprocess`` prints."""
    records = read_faces(data)
    arrays = prepare_faces(records, prep, progress=progress)
    summary = {"data": data, "records": len(records), "faces": len(arrays),
               "labels": dict(Counter(arrays.labels)), "shape": list(arrays.images.shape[1:]),
               "no_face": arrays.no_face, "unreadable": [{"file": f, "error": e} for f, e in arrays.failed],
               "from_cache": arrays.from_cache, "preprocessing": prep.to_dict()}
    if out:
        from emotion_keras.data.cache import save_arrays

        export = {"images": arrays.images, "labels": np.asarray(arrays.labels, str),
                  "names": np.asarray(arrays.names, str),
                  "subjects": np.asarray([s or "" for s in arrays.subjects], str)}
        if arrays.geometry is not None:
            export["geometry"] = arrays.geometry
        save_arrays(Path(out), export)
        summary["out"] = out
    return summary, arrays


# ---------------------------------------------------------------- training

def select_inputs(model, arrays: FaceArrays):
    """The arrays the model takes, arranged as its inputs are declared (a geometry-less model
    ignores geometry; a model that needs geometry the preprocessing lacks is a config error)."""
    from emotion_keras.models import io

    available = arrays.inputs()
    missing = [n for n in io.input_names(model) if n not in available]
    if missing:
        raise ConfigError(f"the model takes inputs {missing} that preprocessing did not produce "
                          "(set geometry: true in the preprocessing config)")
    return io.select_inputs(model, available)


def configs_of(init_from: str | Path, model: dict[str, Any], prep: FacePrepConfig | None):
    """``(model config dict, preprocessing)`` for a run started from a saved model: the source's
    architecture unless ``model`` names one, and its preprocessing unless ``prep`` is given."""
    from emotion_keras.models.store import read_card

    card = read_card(Path(init_from))
    if (card.get("model_config") or {}).get("architecture") == "ensemble":
        raise ConfigError(f"{init_from}: an ensemble cannot be a starting point; start from one of its members")
    return (model or dict(card["model_config"]),
            prep if prep is not None else FacePrepConfig.from_dict(card["preprocessing"]))


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


def check_teacher(teacher: str | Path, prep: FacePrepConfig, classes: list[str] | None = None) -> dict[str, Any]:
    """``teacher``'s card, once it is known to be a face model that reads faces as ``prep`` does and
    knows ``classes`` (where given): read off the card alone, so a wrong teacher is refused before
    any face is prepared."""
    from emotion_keras.models import store
    from emotion_keras.preprocess.preprocessors import FacePreprocessor

    card = store.read_card(teacher)
    if card.get("task") != "face":
        raise ConfigError(f"{teacher}: a {card.get('task')} model cannot teach a face model")
    theirs = list(card.get("classes", []))
    missing = [c for c in classes or () if c not in theirs]
    if missing:
        raise ConfigError(f"{teacher}: the teacher has no class {missing} (its classes: {theirs}); "
                          f"name the student's classes with --classes")
    if FacePreprocessor.from_card(card).config.to_dict() != prep.to_dict():
        raise ConfigError(f"{teacher}: the teacher's preprocessing differs from this run's; distil from a "
                          f"model trained on faces prepared as these are")
    return card


def teacher_predictions(teacher: str | Path, arrays: FaceArrays, classes: list[str],
                        prep: FacePrepConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """A saved face model's (an ensemble's) probabilities for the training faces, in the views its
    recogniser uses, with the columns in ``classes`` order; and what the card records about it.
    It must know the student's classes and read faces as the student does, else its predictions
    describe other inputs."""
    from emotion_keras.models import store

    card = check_teacher(teacher, prep, classes)
    net, _ = store.load(teacher)
    theirs = list(card["classes"])
    tta, crop = face_views(card)
    probs = predict_arrays(net, arrays, tta=tta, crop=crop)[:, [theirs.index(c) for c in classes]]
    probs /= np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return probs, {"name": card.get("name"), "dir": str(teacher), "sha256": store.digest(teacher), "tta": tta}


def distilled_targets(y: np.ndarray, teacher: str | Path, arrays: FaceArrays, classes: list[str],
                      prep: FacePrepConfig, share: float, temperature: float) -> tuple[np.ndarray, dict[str, Any]]:
    """The targets ``y`` (indices or distributions) of ``arrays`` with ``teacher``'s predictions mixed
    in (:func:`emotion_keras.distill.distill_targets`), and the card's record of the teacher: what
    ``face train --teacher`` and ``tune face --teacher`` train on."""
    from emotion_keras.distill import distill_targets

    probs, record = teacher_predictions(teacher, arrays, classes, prep)
    return distill_targets(y, probs, share, temperature), {**record, "share": share, "temperature": temperature}


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
               init_from: str | Path | None = None, teacher: str | Path | None = None) -> dict[str, Any]:
    """Preprocess, build, fit, evaluate on the validation set and save model + card.

    ``init_from`` starts from a saved face model's weights (fine-tuning, or a second, lower-rate
    cosine stage after a budget ran out); its architecture and classes must match. ``teacher``, a
    saved face model (an ensemble, say), is distilled: its predictions join the targets with the
    share ``train.distill`` (:mod:`emotion_keras.distill`).
    Returns ``{"card", "metrics", "out", "fit"}``. Rerunning with the same ``run_dir`` after a kill
    resumes from the last finished epoch (``train.fit``).
    """
    from emotion_keras import train as trainlib
    from emotion_keras.labels import class_list, to_indices
    from emotion_keras.models.face import build_face_model

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    prep = _prep_for_model(prep, model)
    if teacher:
        check_teacher(teacher, prep, classes)
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
    y_tr = training_targets(split.train, tr, classes)
    targets = "vote distributions" if y_tr.ndim == 2 else "class labels"
    distilled = None
    if teacher:
        y_tr, distilled = distilled_targets(y_tr, teacher, tr, classes, prep, train.distill, train.distill_temperature)
        targets += " mixed with a teacher's predictions"
    result = trainlib.fit(net, x_tr, y_tr, x_va, va.targets(classes), classes, train, run_dir,
                          provenance={"teacher": distilled and distilled["sha256"]})

    val_metrics = {**result["validation"], "protocol": split.protocol}
    name = name or run_dir.name
    card = ModelCard(
        task="face", name=name, classes=classes, inputs=input_spec(net), preprocessing=prep.to_dict(),
        model_config=model_cfg.to_dict(),
        train_config=result["train_config"],  # the epochs a time budget chose
        data={**split.data, "train_faces": len(tr), "validation_faces": len(va),
              "no_face": len(tr.no_face) + len(va.no_face), "unreadable": len(tr.failed) + len(va.failed)},
        metrics={"validation": val_metrics},
        training={**trainlib.training_record(result), "samples_per_second": result["samples_per_second"],
                  "dtype_policy": policy,
                  "batchnorm_momentum": bn_momentum, "targets": targets,
                  **({"budget": result["budget"]} if result.get("budget") else {}),
                  **({"init_from": start} if start else {}), **({"teacher": distilled} if distilled else {})},
        class_prior=training_prior(classes, result["class_prior"], train),
        history=history_dict(run_dir, result["history"]))
    return save_trained(net, card, val_metrics, out, run_dir, result,
                        calibrate_on=(predict_arrays(net, va), to_indices(va.labels, classes)))


def predict_arrays(model, arrays: FaceArrays, tta: str | bool = "none", batch_size: int = 256,
                   crop: int = 0) -> np.ndarray:
    """Class probabilities for preprocessed faces, averaged over the :func:`~emotion_keras.preprocess.faces.tta_views`
    (``True`` means ``flip``, as ``--tta-flip`` did)."""
    from emotion_keras.models.io import predict_views

    mode = "flip" if tta is True else "none" if tta is False else tta
    select_inputs(model, arrays)  # the model's inputs exist in the arrays
    return predict_views(model, arrays.inputs(), mode, crop, batch_size)


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
    from emotion_keras.preprocess.preprocessors import FacePreprocessor

    prep = FacePreprocessor.from_card(card).config
    classes = list(card["classes"])
    records, split_used = eval_records(read_faces(data), split)
    if limit:
        records = stratified_subset(records, limit, seed)
    arrays = prepare_faces(records, prep, progress=progress)
    before = Counter(arrays.labels)
    arrays = _keep_classes(arrays, classes, "evaluation set")
    if len(arrays) == 0:
        raise InputError(data, "no faces to evaluate (none found, or no label among the model's classes)")
    return {"records": records, "split": split_used, "arrays": arrays,
            "y": to_indices(arrays.labels, classes),
            "dropped": {k: v for k, v in before.items() if k not in classes}}


def robustness_faces(model, arrays: FaceArrays, y: np.ndarray, classes: list[str], kinds: list[str],
                     tta: str = "none", seed: int = 0, calibrate=None,
                     progress: bool = True, crop: int = 0) -> list[dict[str, Any]]:
    """Accuracy, UAR and ECE per perturbation and strength (:mod:`emotion_keras.perturb`), the
    probabilities through ``calibrate`` (a :class:`~emotion_keras.calibration.Calibration`; None: none)."""
    from emotion_keras import perturb
    from emotion_keras.calibration import Calibration, ece
    from emotion_keras.evaluate import metrics

    calibrate = calibrate or Calibration()
    rows = []
    for kind in kinds:
        strengths, unit = perturb.FACE[kind]
        for strength in strengths:
            images = perturb.perturb_faces(arrays.images, kind, strength, seed)
            probs = calibrate(predict_arrays(model, dataclasses.replace(arrays, images=images), tta=tta,
                                             batch_size=min(256, len(arrays)), crop=crop))
            m = metrics(y, probs, classes)
            rows.append({"perturbation": kind, "strength": strength, "unit": unit,
                         "accuracy": m["accuracy"], "uar": m["uar"], "ece": ece(probs, y)})
            if progress:
                print(f"  {kind:>9s} {strength:<6g} accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}",
                      file=sys.stderr)
    return rows


def _scores(m: dict[str, Any], balance: float) -> dict[str, Any]:
    return {"balance": balance, **{k: m[k] for k in ("accuracy", "uar", "macro_f1")}}


def evaluate_face(model_dir: str | Path, data: str, split: str | None = None, tta_flip: bool = False,
                  out: str | Path | None = None, limit: int | None = None, seed: int = 0,
                  progress: bool = True, perturb: list[str] | None = None,
                  tta: str | None = None, balance: float | None = None,
                  balances: Sequence[float] = ()) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1, confusion, calibration (ECE, reliability) and, with ``perturb``, the
    robustness table of a saved face model on a corpus; writes ``evaluation.json``,
    ``evaluation_confusion.png`` and ``evaluation_reliability.png`` into ``out`` (default: the model
    dir, whose card then also records the robustness table). ``tta`` is ``none``, ``flip`` or
    ``ten_crop`` (``tta_flip`` is the older spelling of ``flip``). Probabilities are calibrated as
    the recogniser does; ``balance`` replaces the card's prior correction, and ``balances`` adds a
    ``balance_sweep`` of the scores at each (:mod:`emotion_keras.calibration`)."""
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
    card_tta, crop = face_views(card)
    tta = tta or ("flip" if tta_flip else card_tta)  # default: the recogniser's views
    raw = predict_arrays(model, arrays, tta=tta, batch_size=min(256, len(arrays)), crop=crop)
    seconds = time.perf_counter() - start
    calibrate = calibration.Calibration.of(card, balance)
    probs = calibrate(raw)
    m = metrics(y, probs, classes)
    ds = face_dataset_name(records)
    protocol = (f"{ds} {face_split_name(records, split_used) if split_used != 'all' else 'all images'} "
                f"({len(arrays):,} faces" + (f" of {len(records):,} images; {len(arrays.no_face)} without a "
                                            f"detected face left out" if arrays.no_face else "")
                + "".join(f"; {n} {lab} image(s) left out: not a class of the model" for lab, n in dropped.items())
                + ")" + (f", stratified subset of {limit} (seed {seed})" if limit else "")
                + {"none": "", "flip": ", horizontal-flip TTA", "ten_crop": ", ten-crop TTA"}[tta]
                + f"; model {card.get('name', model_dir.name)} trained on "
                + f"{(card.get('data') or {}).get('corpus', '?')}")
    report = {"task": "face", "name": card.get("name", model_dir.name), "model_dir": str(model_dir),
              "data": str(data), "split": split_used, "tta": tta, "tta_flip": tta != "none",
              "backend": active_backend(),
              "no_face": arrays.no_face, "unreadable": [f for f, _ in arrays.failed],
              "predict_seconds": round(seconds, 3), **m, "protocol": protocol, "balance": calibrate.balance,
              "calibration": calibration.report_section(raw, probs, y, calibrate.temperature)}
    if balances:
        report["balance_sweep"] = [_scores(metrics(y, dataclasses.replace(calibrate, balance=b)(raw), classes), b)
                                   for b in map(calibration.check_balance, balances)]
    rows = (robustness_faces(model, arrays, y, classes, kinds, tta, seed, calibrate, progress, crop)
            if kinds else None)
    return finish_evaluation(report, model_dir, out, rows, seed, "perturbations applied to the aligned face crops")


# ---------------------------------------------------------------- comparison

def compare_faces(split: Split, prep: FacePrepConfig, entries: list[dict[str, Any]], train: TrainConfig,
                  out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train every entry (``{"name", "model", "train"}``) on the same split and preprocessing; write
    ``comparison.json`` and ``comparison.md`` (:func:`~emotion_keras.pipelines.common.compare_models`)."""
    spec = ComparisonSpec(
        task="face", title="Face model comparison", columns=[("backbone", lambda r: r.get("backbone") or "")],
        prep=lambda entry: prep,
        train=lambda split, prep, entry, tcfg, run: train_face(split, prep, entry["model"], tcfg, run,
                                                               name=entry["name"], progress=progress),
        lead=lambda card, prep: {"backbone": card["model_config"].get("backbone")},
        speed="samples_per_second", extra={"preprocessing": prep.to_dict()})
    return compare_models(spec, split, entries, train, out)
