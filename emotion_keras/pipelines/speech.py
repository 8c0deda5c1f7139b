"""The speech pipeline: cached feature windows (:class:`WindowSet`), training on windows with
clip-level scores (:func:`train_speech`), speaker-grouped cross-validation
(:func:`crossvalidate_speech`), evaluation of a saved model with robustness (:func:`evaluate_speech`)
and the comparison of model families (:func:`compare_speech`). Keras is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.backend import active_backend
from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json, atomic_write_text
from emotion_keras.data.records import Record, subjects_of
from emotion_keras.errors import InputError
from emotion_keras.models.card import ModelCard
from emotion_keras.models.io import input_spec
from emotion_keras.pipelines.common import (ComparisonSpec, compare_models, finish_evaluation, history_dict,
                                           members_prior, save_trained, training_prior)
from emotion_keras.pipelines.splits import (Split, inner_split, read_speech_records, speaker_list,
                                            speaker_word, speech_dataset_name, speech_kfold_splits)
from emotion_keras.preprocess.audio import SpeechFeatureConfig, speech_features

# Per-family defaults for `compare`: the 1D CNN reads MFCC(+deltas) sequences, the others log-mel.
FAMILIES = {
    "crnn": ({"architecture": "crnn"}, {}),
    "cnn2d": ({"architecture": "cnn2d", "conv_blocks": 4}, {}),
    "cnn1d": ({"architecture": "cnn1d", "filters": 64}, {"feature": "mfcc"}),
    "transformer": ({"architecture": "transformer"}, {}),
    # logistic regression over per-window statistics (docs/benchmarks/speech_cv.md, rows functionals*)
    "linear": ({"architecture": "linear", "l2": 0.05, "dropout": 0.0},
               {"feature": "functionals", "n_fft": 512, "hop_length": 160, "n_mfcc": 20}),
}



# ---------------------------------------------------------------- features and targets

@dataclasses.dataclass
class WindowSet:
    """Feature windows of a list of records, with the clip each window came from."""

    x: np.ndarray  # (windows, frames, n_features) float16
    clip: np.ndarray  # (windows,) index into ``records``
    records: list[Record]
    failed: list[tuple[str, str]]
    prosody: np.ndarray | None = None  # (windows, prosody.DIM) float32 when the features include it

    def inputs(self) -> dict[str, np.ndarray]:
        """The model's named inputs (float32)."""
        x = {"features": self.x.astype(np.float32)}
        if self.prosody is not None:
            x["prosody"] = self.prosody.astype(np.float32)
        return x

    def _subset(self, ok: np.ndarray) -> WindowSet:
        return WindowSet(self.x[ok], self.clip[ok], self.records, self.failed,
                         None if self.prosody is None else self.prosody[ok])

    def concat(self, other: WindowSet) -> WindowSet:
        """Windows of both sets (same ``records``: e.g. a set and its augmented copies)."""
        return WindowSet(np.concatenate([self.x, other.x]), np.concatenate([self.clip, other.clip]),
                         self.records, self.failed,
                         None if self.prosody is None else np.concatenate([self.prosody, other.prosody]))

    def speaker_prior(self) -> dict[str, dict]:
        """The typical speaker's statistics per input (for per-file normalisation at inference)."""
        from emotion_keras.preprocess.speaker_norm import speaker_prior

        groups = np.asarray([str(self.records[i].subject) for i in self.clip])
        out = {"features": speaker_prior(self.x, groups)}
        if self.prosody is not None:
            out["prosody"] = speaker_prior(self.prosody, groups)
        return out

    def normalised(self, mode: str, per: str, prior: dict | None = None) -> WindowSet:
        """Speaker normalisation (``mode`` 'speaker') with statistics per ``per``: 'speaker' (each
        speaker's own mean, their variance shrunk towards ``prior``'s) or 'clip' (one file's mean and
        variance, both shrunk towards ``prior`` as the recogniser does); 'none' returns the set
        unchanged. ``prior``: :meth:`speaker_prior` of the training speakers (None: no shrinkage)."""
        from emotion_keras.preprocess.speaker_norm import normalise_file, normalise_groups

        if mode == "none" or len(self.clip) == 0:
            return self
        if per == "clip" and prior:
            x = np.empty(self.x.shape, np.float32)
            pr = None if self.prosody is None else np.empty(self.prosody.shape, np.float32)
            for c in np.unique(self.clip):
                idx = np.flatnonzero(self.clip == c)
                x[idx] = normalise_file(self.x[idx], prior.get("features"))
                if pr is not None:
                    pr[idx] = normalise_file(self.prosody[idx], prior.get("prosody"))
            return WindowSet(x, self.clip, self.records, self.failed, pr)
        if per == "speaker":
            groups = np.asarray([str(self.records[i].subject) for i in self.clip])
        else:
            groups = self.clip
        prior = prior or {}
        return WindowSet(normalise_groups(self.x, groups, prior.get("features")), self.clip, self.records,
                         self.failed, None if self.prosody is None else
                         normalise_groups(self.prosody, groups, prior.get("prosody")))

    def clip_labels(self) -> list[str]:
        return [r.label for r in self.records]

    def targets(self, classes: list[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes)}
        return np.asarray([index[self.records[i].label] for i in self.clip], np.int32)

    def keep(self, classes: list[str]) -> WindowSet:
        ok = np.asarray([self.records[i].label in classes for i in self.clip], bool)
        return self._subset(ok)

    def clip_targets(self, classes: list[str]) -> np.ndarray:
        """The class index of each clip that has windows, in clip order (as ``calibration.pool``)."""
        index = {c: i for i, c in enumerate(classes)}
        return np.asarray([index[self.records[i].label] for i in np.unique(self.clip)], np.int32)

    def clip_metrics(self, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
        """Metrics over clips: each clip's window probabilities averaged."""
        from emotion_keras.calibration import pool
        from emotion_keras.evaluate import metrics

        pooled = pool(np.asarray(probs), self.clip) if len(self.clip) else np.zeros((0, len(classes)))
        return {**metrics(self.clip_targets(classes), pooled, classes), "windows": int(len(self.clip))}


def window_set(records: list[Record], config: SpeechFeatureConfig, progress: bool = True,
               workers: int | None = None, augment=None) -> WindowSet:
    """Cached features of ``records`` (or of ``augment.copies`` augmented versions of them);
    unreadable clips are listed (and printed), not fatal."""
    arrays = speech_features(records, config, workers=workers, progress=progress, augment=augment)
    failed = [(records[int(i)].name, str(e)) for i, e in zip(arrays["failed"], arrays["errors"])]
    for name, err in failed[:10]:
        print(f"skipped {err}", file=sys.stderr)
    if len(failed) > 10:
        print(f"... and {len(failed) - 10} more unreadable clips", file=sys.stderr)
    return WindowSet(arrays["x"], arrays["clip"], list(records), failed, arrays.get("prosody"))


def training_windows(records: list[Record], config: SpeechFeatureConfig, augment=None,
                     progress: bool = True) -> tuple[WindowSet, dict | None]:
    """Training windows (the clips and their cached augmented copies), speaker-normalised per speaker,
    and the typical training speaker (:meth:`WindowSet.speaker_prior` of the clips, None without
    speaker normalisation) that scoring shrinks statistics towards."""
    ws = window_set(records, config, progress)
    prior = ws.speaker_prior() if config.speaker_norm != "none" and len(ws.x) else None
    if augment is not None and augment.copies > 0:
        ws = ws.concat(window_set(records, config, progress, augment=augment))
    return ws.normalised(config.speaker_norm, "speaker", prior), prior


def scoring_windows(records: list[Record], config: SpeechFeatureConfig, progress: bool = True,
                    per: str = "speaker", prior: dict | None = None) -> WindowSet:
    """Windows of clips to score. With speaker normalisation, ``per="speaker"`` standardises each
    (held-out) speaker with the statistics of their own clips, labels unused: the enrolment setting,
    where several utterances of a speaker are seen; ``per="clip"`` uses one file's statistics only."""
    return window_set(records, config, progress).normalised(config.speaker_norm, per, prior)


def preprocess_speech(data: str, config: SpeechFeatureConfig, classes: list[str] | None = None,
                      include_calm: bool = True, speakers: str | None = None, progress: bool = True,
                      workers: int | None = None) -> tuple[dict[str, Any], WindowSet]:
    """Compute and cache a corpus's feature windows; returns the summary ``speech preprocess`` prints."""
    records = read_speech_records(data, classes, include_calm, speakers)
    ws = window_set(records, config, progress=progress, workers=workers)
    n_ok = len(records) - len(ws.failed)
    summary = {"data": data, "clips": len(records), "usable_clips": n_ok, "windows": int(len(ws.x)),
               "shape": list(config.input_shape), "labels": dict(Counter(r.label for r in records)),
               "speakers": len(subjects_of(records)),
               "unreadable": [{"file": f, "error": e} for f, e in ws.failed], "features": config.to_dict()}
    return summary, ws


# ---------------------------------------------------------------- training

def _model_config(model: dict[str, Any]):
    from emotion_keras.models.speech import SpeechModelConfig

    return SpeechModelConfig.from_dict(model)


def train_speech(split: Split, features: SpeechFeatureConfig, model: dict[str, Any], train: TrainConfig,
                 run_dir: str | Path, out: str | Path | None = None, name: str | None = None,
                 classes: list[str] | None = None, progress: bool = True, augment=None,
                 test: list[Record] | None = None, test_protocol: str | None = None,
                 select_epoch: bool = True) -> dict[str, Any]:
    """Features, build, fit on windows, score the validation clips, save model + card.

    ``augment``: an :class:`~emotion_keras.preprocess.augment_audio.AudioAugmentConfig` (training
    clips get its cached copies). ``test``: clips scored with the chosen model and nothing chosen on
    them (the outer fold of a cross-validation), reported as ``metrics["test"]``. ``select_epoch``
    False keeps the last epoch (a fixed schedule) instead of the best one on the validation clips.
    Returns ``{"card", "metrics", "out", "fit", "model"}``. Rerunning with the same ``run_dir`` after
    a kill resumes from the last finished epoch (``train.fit``).
    """
    from emotion_keras import train as trainlib
    from emotion_keras.labels import class_list
    from emotion_keras.models.speech import SOLVED, adapt, build_speech_model, fit_lda

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    tr, prior = training_windows(split.train, features, augment, progress)
    va = scoring_windows(split.val, features, progress, prior=prior)
    if len(tr.x) == 0 or len(va.x) == 0:
        raise InputError(split.data.get("spec", "?"),
                         f"no usable clips ({len(tr.x)} train windows, {len(va.x)} validation windows)")
    classes = list(classes) if classes else class_list([tr.records[i].label for i in np.unique(tr.clip)])
    tr, va = tr.keep(classes), va.keep(classes)

    policy = trainlib.configure_precision(train)
    if features.prosody != "none":
        from emotion_keras.preprocess.prosody import DIM

        model = {**model, "prosody_dim": DIM}
    model_cfg = _model_config(model)
    net = build_speech_model(model_cfg, classes, features.input_shape)
    x_tr, x_va = tr.inputs(), va.inputs()
    adapt(net, x_tr)
    last = _LastWeights() if not select_epoch else None
    if model_cfg.architecture in SOLVED:  # nothing to train or choose: the validation clips only score
        result = trainlib.fit_solved(net, lambda: fit_lda(net, x_tr, tr.targets(classes), model_cfg.shrinkage,
                                                          train.class_weights),
                                     x_va, va.targets(classes), classes, train, run_dir)
    else:
        result = trainlib.fit(net, x_tr, tr.targets(classes), x_va, va.targets(classes), classes, train,
                              run_dir, extra_callbacks=[last.callback()] if last else None)
    if last is not None and last.weights is not None:
        net.set_weights(last.weights)
    probs = net.predict(x_va, batch_size=train.batch_size, verbose=0)
    if model_cfg.architecture in SOLVED:
        protocol = f"{split.protocol}; weights solved in closed form (nothing chosen on these clips)"
    elif select_epoch:  # fit restores the best epoch by ``train.monitor`` on this same validation set: say so
        protocol = f"{split.protocol}; epoch chosen by {train.monitor} on the validation speakers"
    else:
        protocol = (f"{split.protocol}; fixed schedule of {train.epochs} epochs, last epoch kept "
                    "(nothing chosen on these clips)")
    val_metrics = {**va.clip_metrics(probs, classes), "protocol": protocol}
    all_metrics = {"validation": val_metrics}
    if test:
        te = scoring_windows(test, features, progress, prior=prior).keep(classes)
        te_probs = net.predict(te.inputs(), batch_size=train.batch_size, verbose=0)
        all_metrics["test"] = {**te.clip_metrics(te_probs, classes),
                               "protocol": test_protocol or "held-out test clips; nothing chosen on them"}
        if features.speaker_norm != "none":  # the single-clip case: one file's statistics only
            tc = scoring_windows(test, features, progress, per="clip", prior=prior).keep(classes)
            all_metrics["test_per_file"] = {
                **tc.clip_metrics(net.predict(tc.inputs(), batch_size=train.batch_size, verbose=0), classes),
                "protocol": (test_protocol or "held-out test clips") + "; each clip normalised on its own, "
                            "as the recogniser does (its statistics shrunk towards the typical training speaker's)"}

    name = name or run_dir.name
    card = ModelCard(
        task="speech", name=name, classes=classes, inputs=input_spec(net),
        preprocessing=features.to_dict(), model_config=model_cfg.to_dict(), train_config=train.to_dict(),
        data={**split.data, "train_windows": int(len(tr.x)), "validation_windows": int(len(va.x)),
              "unreadable": [f for f, _ in tr.failed + va.failed]},
        metrics=all_metrics,
        extra={"augmentation": augment.to_dict() if augment is not None else None, "speaker_norm_prior": prior},
        training={**trainlib.training_record(result), "windows_per_second": result["samples_per_second"],
                  "dtype_policy": policy,
                  "window_level_validation": {k: result["validation"][k] for k in ("accuracy", "uar", "macro_f1")}},
        class_prior=training_prior(classes, result["class_prior"], train),
        history=history_dict(run_dir, result["history"]))
    res = save_trained(net, card, val_metrics, out, run_dir, result,
                       calibrate_on=(probs, va.clip_targets(classes), va.clip))
    if "test" in all_metrics:
        atomic_write_json(run_dir / "test_result.json", {"metrics": all_metrics["test"],
                                                         "per_file": all_metrics.get("test_per_file"),
                                                         "validation": val_metrics})
        res["test"] = all_metrics["test"]
    return res


class _LastWeights:
    """Keeps the last epoch's weights (``fit`` restores the best epoch's at the end)."""

    def __init__(self):
        self.weights = None

    def callback(self):
        import keras

        owner = self

        class _Keep(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                owner.weights = self.model.get_weights()

        return _Keep()


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, float)
    return {"mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4)}



def crossvalidate_speech(records: list[Record], k: int, features: SpeechFeatureConfig,
                         model: dict[str, Any], train: TrainConfig, run_dir: str | Path,
                         classes: list[str] | None = None, progress: bool = True, augment=None,
                         inner: bool = True, spec: str | None = None) -> dict[str, Any]:
    """Speaker-grouped k-fold CV: one model per fold in ``run_dir/fold<i>``; writes ``cv.json``/``cv.md``.

    With ``inner`` (the default) each fold trains on k-2 speaker groups, chooses its epoch on the next
    group (:func:`inner_split`) and reports the held-out group it never looked at; without it, the
    epoch is chosen on the reported group (optimistic; kept for comparison with older figures).
    Folds already finished are read back, not retrained. ``spec``: the corpus the records came from,
    kept on the fold cards and in ``cv.json`` (:func:`ensemble_speech` reads the clips again).
    """
    from emotion_keras.labels import class_list

    run_dir = Path(run_dir)
    classes = list(classes) if classes else class_list([r.label for r in records])
    folds = speech_kfold_splits(records, k)
    if spec:
        folds = [dataclasses.replace(f, data={**f.data, "spec": spec}) for f in folds]
    rows = []
    for i, split in enumerate(folds, 1):
        fold_dir = run_dir / f"fold{i}"
        done = fold_dir / ("test_result.json" if inner else "train_result.json")
        per_file = None
        if done.exists():
            saved = json.loads(done.read_text())
            m, per_file = saved["metrics"], saved.get("per_file")
        else:
            print(f"[fold {i}/{k}] {split.protocol}", file=sys.stderr)
            if inner:
                res = train_speech(inner_split(split, i - 1, folds), features, model, train, fold_dir,
                                   classes=classes, progress=progress, augment=augment, test=split.val,
                                   test_protocol=split.protocol)
                m, per_file = res["test"], res["card"]["metrics"].get("test_per_file")
            else:
                m = train_speech(split, features, model, train, fold_dir, classes=classes,
                                 progress=progress, augment=augment)["metrics"]
        rows.append({"fold": i, "validation_speakers": split.data["validation_speakers"],
                     **{key: round(m[key], 4) for key in ("accuracy", "uar", "macro_f1")}, "n": m["n"],
                     **({"per_file": {key: round(per_file[key], 4) for key in ("accuracy", "uar")}}
                        if per_file else {})})
    from emotion_keras.models.speech import SOLVED

    if model.get("architecture") in SOLVED:
        chosen = "each fold's weights solved in closed form on its training speakers, nothing chosen on any fold"
    else:
        chosen = ("each fold's epoch chosen by {m} on inner validation speakers (the next fold's group, "
                  "out of its training speakers), never on the speakers it reports" if inner else
                  "each fold's epoch chosen by {m} on its held-out speakers").format(m=train.monitor)
    protocol = (f"{speech_dataset_name(records)} speaker-grouped {k}-fold cross-validation ({speaker_word(records)} "
                + "; ".join(speaker_list(r["validation_speakers"]) for r in rows)
                + f" held out in turn; {len(records):,} clips); {chosen}; speaker normalisation "
                f"{features.speaker_norm!r} (every speaker standardised by their own mean and their variance "
                "shrunk towards the typical training speaker's: training speakers on their training clips, "
                "inner-validation and held-out speakers on their own unlabelled clips); "
                "clip-level scores, mean ± std over folds")
    report = {"task": "speech", "protocol": protocol, "classes": classes, "spec": spec,
              **{key: _summary([r[key] for r in rows]) for key in ("accuracy", "uar", "macro_f1")},
              "folds": rows, "preprocessing": features.to_dict(), "model_config": model,
              "train_config": train.to_dict(), "augmentation": augment.to_dict() if augment else None}
    if all("per_file" in r for r in rows):  # speaker-normalised models scored one clip at a time
        report["per_file"] = {key: _summary([r["per_file"][key] for r in rows]) for key in ("accuracy", "uar")}
    atomic_write_json(run_dir / "cv.json", report)
    lines = ["# Speech cross-validation", "", f"Protocol: {protocol}.", "",
             "| fold | held-out speakers | clips | accuracy | UAR | macro-F1 |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['fold']} | {speaker_list(r['validation_speakers'])} | {r['n']} | {r['accuracy']:.3f} | "
              f"{r['uar']:.3f} | {r['macro_f1']:.3f} |" for r in rows]
    lines.append(f"| mean ± std | | | {report['accuracy']['mean']:.3f} ± {report['accuracy']['std']:.3f} | "
                 f"{report['uar']['mean']:.3f} ± {report['uar']['std']:.3f} | "
                 f"{report['macro_f1']['mean']:.3f} ± {report['macro_f1']['std']:.3f} |")
    atomic_write_text(run_dir / "cv.md", "\n".join(lines) + "\n")
    return report


def _finished_cv(cv_dir: Path) -> tuple[dict[str, Any], list, list[dict[str, Any]]]:
    """A finished :func:`crossvalidate_speech`: its ``cv.json`` and its fold models with their cards."""
    from emotion_keras.models import store

    if not (cv_dir / "cv.json").exists():
        raise InputError(str(cv_dir), "no cv.json here: run `speech train --folds K` to the end first")
    cv = json.loads((cv_dir / "cv.json").read_text())
    members, cards = [], []
    for row in cv["folds"]:
        fold_dir = cv_dir / f"fold{row['fold']}"
        net, card = store.load(fold_dir)
        if cards and (card["classes"], card["preprocessing"]) != (cards[0]["classes"], cards[0]["preprocessing"]):
            raise ConfigError(f"{fold_dir}: classes or preprocessing differ from {cv_dir / 'fold1'}'s")
        members.append(net)
        cards.append(card)
    return cv, members, cards


def _out_of_fold(cv: dict[str, Any], members: list, cards: list[dict[str, Any]], data: str,
                 progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window probabilities, clip targets and clip groups of every fold's held-out clips, each
    scored by the one fold model that never trained or chose an epoch on its speaker."""
    classes = list(cards[0]["classes"])
    raw, ys, groups, offset = [], [], [], 0
    for row, net, card in zip(cv["folds"], members, cards):
        _, ws = corpus_clips(card, data, ",".join(row["validation_speakers"]), progress)
        raw.append(window_probabilities(net, ws.inputs()))
        ys.append(ws.clip_targets(classes))
        groups.append(np.unique(ws.clip, return_inverse=True)[1] + offset)
        offset += len(ys[-1])
    return np.concatenate(raw), np.concatenate(ys), np.concatenate(groups)


def _cv_card_parts(cv: dict[str, Any], cards: list[dict[str, Any]], data: str | None, what: str) -> dict:
    """What an ensemble's and a refit's cards share: the corpus, the cross-validation figure
    (``metrics.cv5``, its protocol ending with ``what`` the saved model is) and the out-of-fold
    clips that fit its temperature. Returns ``{"data", "cv5", "classes", "first", "spec"}``."""
    first = cards[0]
    spec = data or cv.get("spec") or first["data"].get("spec")
    if not spec:
        raise ConfigError("the folds name no corpus; pass --data SPEC")
    speakers = sorted({s for c in cards for s in c["data"].get("train_speakers", [])
                       + c["data"].get("validation_speakers", [])}, key=lambda v: (len(v), v))
    cv5 = {**{m: cv[m]["mean"] for m in ("accuracy", "uar", "macro_f1")},
           **{f"{m}_std": cv[m]["std"] for m in ("accuracy", "uar", "macro_f1")},
           "folds": cv["folds"], "n": sum(f["n"] for f in cv["folds"]),
           "protocol": f"{cv['protocol']}; {what}"}
    if "per_file" in cv:
        cv5["per_file"] = cv["per_file"]
    data_entry = {**{key: first["data"][key] for key in ("corpus", "licence") if key in first["data"]},
                  "spec": spec, "train_speakers": speakers, "validation_speakers": []}
    return {"data": data_entry, "cv5": cv5, "classes": list(first["classes"]), "first": first, "spec": spec}


def _oof_calibration(cv: dict[str, Any], members, cards, spec: str, progress: bool) -> dict[str, Any]:
    from emotion_keras.pipelines.common import calibration_fields

    raw, ys, groups = _out_of_fold(cv, members, cards, spec, progress)
    return calibration_fields(
        f"{cv['protocol'].split(' (')[0]}: the out-of-fold clips ({len(ys):,}), each scored by the fold "
        "model that never saw its speaker", raw, ys, groups)


def ensemble_speech(cv_dir: str | Path, out: str | Path, name: str | None = None, data: str | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """The fold models of a finished :func:`crossvalidate_speech` as one saved model averaging them
    (:func:`emotion_keras.models.ensemble.build_ensemble`), its card carrying the cross-validation figure.

    Its temperature is fitted on the pooled out-of-fold predictions: each clip scored by the one
    member that never trained or chose an epoch on its speaker. The members' mean is a little less
    confident than one member, so this errs towards under-confidence. No figure of the ensemble
    itself on these speakers exists (each was in training for most members): the cross-validation
    figure is its members'. Returns ``{"card", "out"}``.
    """
    from emotion_keras.models import store
    from emotion_keras.models.ensemble import build_ensemble

    cv_dir, out = Path(cv_dir), Path(out)
    cv, members, cards = _finished_cv(cv_dir)
    k = len(members)
    parts = _cv_card_parts(cv, cards, data, f"the figure of the {k} members, one per fold (each scored on the "
                                            "speakers it never saw); the ensemble itself has no held-out speakers here")
    first, classes = parts["first"], parts["classes"]
    card = ModelCard(
        task="speech", name=name or out.name, classes=classes, inputs=first["inputs"],
        preprocessing=first["preprocessing"],
        model_config={"architecture": "ensemble", "members": k, "member": first["model_config"]},
        train_config=first["train_config"], data=parts["data"], metrics={"cv5": parts["cv5"]},
        class_prior=members_prior(cards, classes),
        extra={"augmentation": first.get("augmentation"), "speaker_norm_prior": first.get("speaker_norm_prior"),
               "ensemble": {"cv_dir": str(cv_dir), "members": [
                   {"member": f"member_{i}", "fold": row["fold"], "held_out_speakers": row["validation_speakers"],
                    "trained_on": c["data"].get("train_speakers"), "held_out_accuracy": row["accuracy"]}
                   for i, (row, c) in enumerate(zip(cv["folds"], cards), 1)]}},
        training={"seconds": round(sum(float(c["training"].get("seconds") or 0) for c in cards), 2),
                  "epochs_run": [c["training"].get("epochs_run") for c in cards]})
    saved = card.to_dict()
    saved["calibration"] = _oof_calibration(cv, members, cards, parts["spec"], progress)
    store.save(build_ensemble(members, name="speech_ensemble"), out, saved)
    return {"card": store.read_card(out), "out": out}


def refit_speech(cv_dir: str | Path, out: str | Path, name: str | None = None, data: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """One model of a finished cross-validation's configuration, solved on all of its speakers, its
    card carrying the cross-validation figure: what to ship when nothing needs choosing on held-out
    speakers (the ``lda`` architectures: no epochs, so no validation split is owed).

    Its temperature is fitted on the folds' out-of-fold predictions, as an ensemble's; solved on
    more speakers, the model should be a little more accurate than its folds, which the card's
    figure (the folds') does not credit. Trained architectures raise ConfigError: their epoch was
    chosen per fold, so use :func:`ensemble_speech`. Returns ``{"card", "out"}``.
    """
    from emotion_keras.models import store
    from emotion_keras.models.speech import SOLVED, adapt, build_speech_model, fit_lda
    from emotion_keras.pipelines.common import training_prior
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig
    from emotion_keras.train import hard_labels

    cv_dir, out = Path(cv_dir), Path(out)
    cv, members, cards = _finished_cv(cv_dir)
    model = cards[0]["model_config"]
    if model.get("architecture") not in SOLVED:
        raise ConfigError(f"{cv_dir}: a {model.get('architecture')!r} model chose its epoch on each fold, so there "
                          "is no epoch to refit all speakers with: save its fold models with `speech ensemble`")
    parts = _cv_card_parts(cv, cards, data, "the figure of the fold models; the saved model, solved on all "
                                            "these speakers, has no held-out speakers here")
    first, classes, speakers = parts["first"], parts["classes"], parts["data"]["train_speakers"]
    features = SpeechFeatureConfig.from_dict(first["preprocessing"])
    train = TrainConfig.from_dict(first["train_config"])
    records = [r for r in read_speech_records(parts["spec"], limit_speakers=",".join(speakers))
               if r.label in classes]
    augment = first.get("augmentation")
    tr, prior = training_windows(records, features, AudioAugmentConfig.from_dict(augment) if augment else None,
                                 progress)
    tr = tr.keep(classes)
    model_cfg = _model_config(model)
    net = build_speech_model(model_cfg, classes, features.input_shape)
    x = tr.inputs()
    adapt(net, x)
    start = time.perf_counter()
    frequencies = fit_lda(net, x, tr.targets(classes), model_cfg.shrinkage, train.class_weights)
    seconds = time.perf_counter() - start
    card = ModelCard(
        task="speech", name=name or out.name, classes=classes, inputs=input_spec(net),
        preprocessing=first["preprocessing"], model_config=model, train_config=first["train_config"],
        data={**parts["data"], "train_clips": len(np.unique(tr.clip)), "train_windows": int(len(tr.x)),
              "refit": f"solved on all {len(speakers)} speakers of the cross-validation in {cv_dir}"},
        metrics={"cv5": parts["cv5"]},
        class_prior=training_prior(classes, [float(v) for v in frequencies], train),
        extra={"augmentation": augment, "speaker_norm_prior": prior},
        training={"seconds": round(seconds, 2), "epochs_run": 0,
                  "train_accuracy": round(float(np.mean(np.argmax(net.predict(x, verbose=0), 1)
                                                        == hard_labels(tr.targets(classes)))), 4)})
    saved = card.to_dict()
    saved["calibration"] = _oof_calibration(cv, members, cards, parts["spec"], progress)
    store.save(net, out, saved)
    return {"card": store.read_card(out), "out": out}


# ---------------------------------------------------------------- evaluation

def corpus_clips(card: dict[str, Any], data: str, speakers: str | None = None,
                 progress: bool = True, per_clip: bool = False) -> tuple[list[Record], WindowSet]:
    """The clips of ``data`` (optionally some speakers) with the model's classes, and their cached
    feature windows as the card's preprocessing makes them (speaker normalisation per speaker, or
    ``per_clip``; see :func:`scoring_windows`)."""
    from emotion_keras.preprocess.preprocessors import SpeechPreprocessor

    classes = list(card["classes"])
    config = SpeechPreprocessor.from_card(card).config
    records = read_speech_records(data, limit_speakers=speakers)
    outside = sorted({r.label for r in records} - set(classes))
    records = [r for r in records if r.label in classes]
    if outside:
        print(f"note: leaving out clips labelled {outside}: not among the model's classes {classes}",
              file=sys.stderr)
    if not records:
        raise InputError(data, f"no clips with the model's classes {classes}")
    ws = scoring_windows(records, config, progress, per="clip" if per_clip else "speaker",
                         prior=card.get("speaker_norm_prior"))
    if len(ws.x) == 0:
        raise InputError(data, "no usable clips")
    return records, ws


def window_probabilities(net, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """Window probabilities for feature windows or named window inputs (``features``, ``prosody``)."""
    from emotion_keras.models.io import model_feed

    inputs = x if isinstance(x, dict) else {"features": x}
    inputs = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    return np.asarray(net.predict(model_feed(net, inputs), batch_size=64, verbose=0), np.float32)


def robustness_speech(net, card: dict[str, Any], ws: WindowSet, kinds: list[str], seed: int = 0,
                      calibrate=None, progress: bool = True, per_clip: bool = False) -> list[dict[str, Any]]:
    """Clip-level accuracy, UAR and ECE per waveform perturbation and strength (window
    probabilities through ``calibrate``, a :class:`~emotion_keras.calibration.Calibration`; None:
    the card's). Clips are decoded once; every input the model reads (features, prosody) is
    recomputed from each perturbed waveform (not cached) and speaker-normalised as the clean clips
    were (each speaker with their own perturbed clips, or each clip alone with ``per_clip``): a
    speaker's enrolment clips come through the same channel as the clips scored."""
    from emotion_keras import perturb
    from emotion_keras.calibration import Calibration, ece, pool
    from emotion_keras.evaluate import metrics
    from emotion_keras.preprocess import audio
    from emotion_keras.preprocess.preprocessors import SpeechPreprocessor

    classes = list(card["classes"])
    calibrate = calibrate or Calibration.of(card)
    pre = SpeechPreprocessor.from_card(card)
    config = pre.config
    clips = np.unique(ws.clip).astype(int)
    waves = {int(i): audio.load_audio(ws.records[i].path, config.sr) for i in clips}
    y = np.asarray([classes.index(ws.records[i].label) for i in clips])
    rows = []
    for kind in kinds:
        strengths, unit = perturb.SPEECH[kind]
        for strength in strengths:
            inputs, owner, silent = [], [], 0
            for k, i in enumerate(clips):
                wave = perturb.perturb_audio(waves[int(i)], config.sr, kind, strength, seed + k)
                try:
                    x, _ = audio.waveform_inputs(wave, config, ws.records[i].name, pre.basis)
                except InputError:  # e.g. made silent by -20 dB gain: counted as a uniform guess
                    silent += 1
                    continue
                inputs.append(x)
                owner += [int(i)] * len(x["features"])
            probs = np.full((len(clips), len(classes)), 1.0 / len(classes), np.float32)
            if inputs:
                seen = WindowSet(np.concatenate([x["features"] for x in inputs]), np.asarray(owner), ws.records,
                                 [], np.concatenate([x["prosody"] for x in inputs]) if "prosody" in inputs[0] else None)
                seen = seen.normalised(config.speaker_norm, "clip" if per_clip else "speaker",
                                       card.get("speaker_norm_prior"))
                p = calibrate(window_probabilities(net, seen.inputs()))
                probs[np.searchsorted(clips, np.unique(seen.clip))] = pool(p, seen.clip)
            m = metrics(y, probs, classes)
            rows.append({"perturbation": kind, "strength": strength, "unit": unit,
                         "accuracy": m["accuracy"], "uar": m["uar"], "ece": ece(probs, y),
                         "unusable_clips": silent})
            if progress:
                print(f"  {kind:>7s} {strength:<6g} accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}",
                      file=sys.stderr)
    return rows


def evaluate_speech(model_dir: str | Path, data: str, speakers: str | None = None,
                    out: str | Path | None = None, progress: bool = True, perturb: list[str] | None = None,
                    seed: int = 0, balance: float | None = None, per_clip: bool = False) -> dict[str, Any]:
    """Clip-level metrics, calibration (ECE, reliability) and, with ``perturb``, the robustness table
    of a saved model on ``data`` (optionally some speakers only). Probabilities are calibrated as the
    recogniser does; ``balance`` replaces the card's prior correction (:mod:`emotion_keras.calibration`).
    A speaker-normalised model standardises each speaker with their own clips (enrolment), or with
    ``per_clip`` each clip alone, shrunk towards the card's typical speaker, as the recogniser does.

    The protocol says whether the evaluated speakers were in the model's training data (from its card).
    """
    from emotion_keras import calibration
    from emotion_keras.models import store
    from emotion_keras.perturb import SPEECH, expand

    kinds = expand(perturb or [], SPEECH)
    model_dir = Path(model_dir)
    net, card = store.load(model_dir)
    classes = list(card["classes"])
    records, ws = corpus_clips(card, data, speakers, progress, per_clip)
    raw = window_probabilities(net, ws.inputs())
    calibrate = calibration.Calibration.of(card, balance)
    probs = calibrate(raw)
    m = ws.clip_metrics(probs, classes)
    seen = set(card.get("data", {}).get("train_speakers", []))
    evaluated = subjects_of(records)
    both = sorted(set(evaluated) & seen)
    if not seen:
        note = "the model card does not list its training speakers"
    elif both:
        note = (f"NOT speaker-independent: {len(both)} of {len(evaluated)} evaluated speakers "
                f"({speaker_list(both)}) were in the training data")
    else:
        note = "speaker-independent: none of these speakers were in the training data"
    protocol = (f"{speech_dataset_name(records)} {speaker_word(records)} {speaker_list(evaluated)} "
                f"({m['n']:,} clips); {note}; clip-level scores")
    if card.get("preprocessing", {}).get("speaker_norm", "none") != "none":
        protocol += ("; speaker-normalised model, each clip standardised alone (no enrolment)" if per_clip else
                     "; speaker-normalised model, each speaker standardised with the statistics of their own "
                     "clips here (labels unused: enrolment)")
    y = ws.clip_targets(classes)
    report = {"task": "speech", "name": card.get("name"), "model": str(model_dir), "data": str(data),
              "backend": active_backend(), **m, "protocol": protocol, "balance": calibrate.balance,
              "unreadable": [{"file": f, "error": e} for f, e in ws.failed],
              "calibration": calibration.report_section(calibration.pool(raw, ws.clip),
                                                        calibration.pool(probs, ws.clip), y, calibrate.temperature)}
    rows = robustness_speech(net, card, ws, kinds, seed, calibrate, progress, per_clip) if kinds else None
    return finish_evaluation(report, model_dir, out, rows, seed,
                             "perturbations applied to the 16 kHz waveform before features")


# ---------------------------------------------------------------- comparison

def compare_speech(split: Split, features: SpeechFeatureConfig, entries: list[dict[str, Any]],
                   train: TrainConfig, out: str | Path, classes: list[str] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Train every entry (``{"name", "model", "features", "train"}``) on the same speaker split; write
    ``comparison.json`` and ``comparison.md`` (:func:`~emotion_keras.pipelines.common.compare_models`)."""
    spec = ComparisonSpec(
        task="speech", title="Speech model comparison",
        columns=[("architecture", lambda r: r["architecture"]), ("features", lambda r: r["feature"])],
        prep=lambda entry: features.replace(**entry.get("features", {})),
        train=lambda split, fcfg, entry, tcfg, run: train_speech(split, fcfg, entry["model"], tcfg, run,
                                                                 name=entry["name"], classes=classes,
                                                                 progress=progress),
        lead=lambda card, fcfg: {"architecture": card["model_config"]["architecture"], "feature": fcfg.feature},
        speed="windows_per_second", tail=lambda card: {"preprocessing": card["preprocessing"]},
        describe=lambda entry, fcfg: f"training {entry['model']} on {fcfg.feature}")
    return compare_models(spec, split, entries, train, out)
