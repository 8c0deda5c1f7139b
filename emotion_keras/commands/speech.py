"""``emotion-keras speech {preprocess,train,evaluate,compare}``: the speech pipeline from a corpus to a
saved, evaluated model, and the comparison of model families.

Evaluation is speaker-independent by default: ``--val-speakers 0.2`` holds out a fifth of the
speakers, ``--val-speakers 17,18,19,20`` names them, ``--folds 5`` runs speaker-grouped k-fold
cross-validation (RAVDESS actors 1-4, 5-8, ... in turn). There is no random clip split. Every number
is reported at clip level (the mean of a clip's window probabilities) with its protocol sentence.

The work is done by plain functions (:func:`load_split`, :func:`train_speech`,
:func:`crossvalidate_speech`, :func:`evaluate_speech`, :func:`compare_speech`) that tests and
benchmarks call directly; ``cmd_*`` functions only parse arguments. Keras is imported inside
functions, after ``--backend`` has been applied.
"""

from __future__ import annotations

import dataclasses
import json
import sys
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
from emotion_keras.data.cache import atomic_write_json, atomic_write_text, cache_key
from emotion_keras.data.records import Record, group_kfold, group_split, subjects_of
from emotion_keras.data.speech import corpus_licence, read_speech, select_classes
from emotion_keras.errors import InputError
from emotion_keras.preprocess.audio import SpeechFeatureConfig, speech_features

DATASET_NAMES = {"ravdess": "RAVDESS", "cremad": "CREMA-D", "tess": "TESS", "savee": "SAVEE",
                 "emodb": "EmoDB"}
SPEAKER_WORD = {"ravdess": "actors", "cremad": "actors"}
# Per-family defaults for `compare`: the 1D CNN reads MFCC(+deltas) sequences, the others log-mel.
FAMILIES = {
    "crnn": ({"architecture": "crnn"}, {}),
    "cnn2d": ({"architecture": "cnn2d", "conv_blocks": 4}, {}),
    "cnn1d": ({"architecture": "cnn1d", "filters": 64}, {"feature": "mfcc"}),
    "transformer": ({"architecture": "transformer"}, {}),
}


# ---------------------------------------------------------------- splits

def _ds_name(records) -> str:
    return dataset_name(records, DATASET_NAMES)


def _speaker_word(records) -> str:
    ds = {r.dataset for r in records}
    return SPEAKER_WORD.get(next(iter(ds)), "speakers") if len(ds) == 1 else "speakers"


def _norm_id(s: str) -> str:
    s = str(s).strip()
    prefix, _, rest = s.rpartition(":")
    rest = rest.lstrip("0") or "0" if rest.isdigit() else rest.upper()
    return f"{prefix}:{rest}" if prefix else rest


def _speaker_list(ids) -> str:
    """``01, 02, 03, 04`` -> ``1-4`` style ranges where the ids are numbers."""
    try:
        nums = sorted(int(str(s).rpartition(":")[2]) for s in ids)
    except ValueError:
        return ", ".join(sorted(map(str, ids)))
    parts, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def parse_speakers(value: str | float | None, records) -> tuple[float | None, list[str] | None]:
    """``"0.2"`` -> fraction; ``"17,18,19,20"`` or ``"1001"`` -> the matching subject ids."""
    if value is None or value == "":
        return None, None
    text = str(value).strip()
    try:
        frac = float(text)
        if "," not in text and "." in text:
            if not 0 < frac < 1:
                raise ConfigError(f"--val-speakers fraction must be between 0 and 1, not {text}")
            return frac, None
    except ValueError:
        pass
    wanted = [t for t in text.split(",") if t.strip()]
    available = {}
    for s in subjects_of(records):
        available.setdefault(_norm_id(s), s)
        available.setdefault(_norm_id(s.rpartition(":")[2]), s)
    missing = [w for w in wanted if _norm_id(w) not in available]
    if missing:
        raise ConfigError(f"--val-speakers: no speaker {missing} in the data; speakers are "
                          f"{', '.join(subjects_of(records))}")
    return None, sorted({available[_norm_id(w)] for w in wanted}, key=lambda s: (len(s), s))


def read_records(data: str, classes: list[str] | None = None, include_calm: bool = True,
                 limit_speakers: str | None = None) -> list[Record]:
    records = read_speech(data, include_calm=include_calm)
    if classes:
        records = select_classes(records, classes)
    if limit_speakers:
        _, keep = parse_speakers(limit_speakers, records)
        records = [r for r in records if r.subject in set(keep or ())]
    if not records:
        raise InputError(data, "no clips left after selecting classes and speakers")
    return records


def load_split(data: str | list[Record], val_speakers: str | float | None = 0.2,
               val_data: str | None = None, classes: list[str] | None = None, include_calm: bool = True,
               speakers: str | None = None, seed: int = 0) -> Split:
    """Read ``data`` and hold out validation speakers (a fraction or a list), or validate on another
    corpus (``val_data``). No speaker is ever on both sides."""
    records = data if isinstance(data, list) else read_records(data, classes, include_calm, speakers)
    spec = "<records>" if isinstance(data, list) else str(data)
    ds, word = _ds_name(records), _speaker_word(records)
    if val_data:
        val = read_records(val_data, classes, include_calm)
        train = records
        how = f"validated on {_ds_name(val)} ({len(val):,} clips, {len(subjects_of(val))} speakers)"
    else:
        frac, ids = parse_speakers(val_speakers if val_speakers is not None else 0.2, records)
        if ids:
            held = set(ids)
            train = [r for r in records if r.subject not in held]
            val = [r for r in records if r.subject in held]
        else:
            try:
                train, val = group_split(records, frac, seed=seed)
            except ValueError as e:
                raise InputError(spec, f"cannot split by speaker: {e}") from None
        how = (f"speaker-independent hold-out: validated on {word} {_speaker_list(subjects_of(val))} "
               f"({len(val):,} clips)" + ("" if ids else f", drawn at random with seed {seed}"))
    if not train or not val:
        raise InputError(spec, f"empty side after the split ({len(train)} train, {len(val)} validation)")
    overlap = set(subjects_of(train)) & set(subjects_of(val))
    if overlap:  # cannot happen by construction; guard the protocol's promise anyway
        raise InputError(spec, f"speakers {sorted(overlap)} on both sides of the split")
    protocol = (f"{ds} {how}, trained on the other {len(subjects_of(train))} {word} "
                f"({len(train):,} clips); clip-level scores")
    info = {"corpus": ds, "spec": spec, "licence": corpus_licence(records),
            "train_speakers": subjects_of(train), "validation_speakers": subjects_of(val),
            "train_clips": len(train), "validation_clips": len(val)}
    return Split(train, val, protocol, info)


def kfold_splits(records: list[Record], k: int = 5, seed: int | None = None) -> list[Split]:
    """Speaker-grouped k folds (sorted speakers, e.g. RAVDESS actors 1-4, 5-8, ... for k=5)."""
    try:
        folds = group_kfold(records, k, seed=seed)
    except ValueError as e:
        raise InputError(_ds_name(records), f"cannot make {k} speaker folds: {e}") from None
    ds, word = _ds_name(records), _speaker_word(records)
    out = []
    for i, (train, val) in enumerate(folds):
        protocol = (f"{ds} speaker-grouped {k}-fold cross-validation, fold {i + 1}: validated on {word} "
                    f"{_speaker_list(subjects_of(val))} ({len(val):,} clips), trained on the other "
                    f"{len(subjects_of(train))} ({len(train):,} clips); clip-level scores")
        out.append(Split(train, val, protocol, {
            "corpus": ds, "licence": corpus_licence(records), "fold": i + 1, "folds": k,
            "train_speakers": subjects_of(train), "validation_speakers": subjects_of(val),
            "train_clips": len(train), "validation_clips": len(val)}))
    return out


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
        speaker's own) or 'clip' (one file's, shrunk towards ``prior`` as the recogniser does);
        'none' returns the set unchanged."""
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
        return WindowSet(normalise_groups(self.x, groups), self.clip, self.records, self.failed,
                         None if self.prosody is None else normalise_groups(self.prosody, groups))

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
                     progress: bool = True) -> WindowSet:
    """Training windows: the clips, their augmented copies (cached), speaker-normalised per speaker."""
    ws = window_set(records, config, progress)
    if augment is not None and augment.copies > 0:
        ws = ws.concat(window_set(records, config, progress, augment=augment))
    return ws.normalised(config.speaker_norm, "speaker")


def scoring_windows(records: list[Record], config: SpeechFeatureConfig, progress: bool = True,
                    per: str = "speaker", prior: dict | None = None) -> WindowSet:
    """Windows of clips to score. With speaker normalisation, ``per="speaker"`` standardises each
    (held-out) speaker with the statistics of their own clips, labels unused: the enrolment setting,
    where several utterances of a speaker are seen; ``per="clip"`` uses one file's statistics only."""
    return window_set(records, config, progress).normalised(config.speaker_norm, per, prior)


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
    from emotion_keras.models.speech import build_speech_model

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir
    tr = training_windows(split.train, features, augment, progress)
    va = scoring_windows(split.val, features, progress)
    prior = window_set(split.train, features, False).speaker_prior() if features.speaker_norm != "none" else None
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
    last = _LastWeights() if not select_epoch else None
    result = trainlib.fit(net, x_tr, tr.targets(classes), x_va, va.targets(classes), classes, train, run_dir,
                          extra_callbacks=[last.callback()] if last else None)
    if last is not None and last.weights is not None:
        net.set_weights(last.weights)
    probs = net.predict(x_va, batch_size=train.batch_size, verbose=0)
    if select_epoch:  # fit restores the best epoch by ``train.monitor`` on this same validation set: say so
        protocol = f"{split.protocol}; epoch chosen by {train.monitor} on the validation speakers"
    else:
        protocol = f"{split.protocol}; fixed schedule of {train.epochs} epochs, last epoch kept (nothing chosen on these clips)"
    val_metrics = {**va.clip_metrics(probs, classes), "protocol": protocol}
    all_metrics = {"validation": val_metrics}
    if test:
        te = scoring_windows(test, features, progress).keep(classes)
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
    card = {
        "task": "speech",
        "name": name,
        "classes": classes,
        "inputs": {"features": list(features.input_shape)},
        "preprocessing": features.to_dict(),
        "model_config": model_cfg.to_dict(),
        "train_config": train.to_dict(),
        "data": {**split.data, "train_windows": int(len(tr.x)), "validation_windows": int(len(va.x)),
                 "unreadable": [f for f, _ in tr.failed + va.failed]},
        "metrics": all_metrics,
        "augmentation": augment.to_dict() if augment is not None else None,
        "speaker_norm_prior": prior,
        "training": {"seconds": result["train_seconds"], "windows_per_second": result["samples_per_second"],
                     "epochs_run": result["epochs_run"], "dtype_policy": policy,
                     "window_level_validation": {k: result["validation"][k]
                                                 for k in ("accuracy", "uar", "macro_f1")}},
        "history": history_dict(run_dir, result["history"]),
    }
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


def inner_split(split: Split, fold: int, folds: list[Split]) -> Split:
    """The inner validation of outer fold ``fold`` (0-based): the next fold's speakers, taken out of
    its training speakers, so epochs are chosen without looking at the speakers the fold reports."""
    inner = set(folds[(fold + 1) % len(folds)].data["validation_speakers"])
    train = [r for r in split.train if r.subject not in inner]
    val = [r for r in split.train if r.subject in inner]
    word, ds = _speaker_word(split.train), _ds_name(split.train)
    protocol = (f"{ds} inner validation on {word} {_speaker_list(inner)} ({len(val):,} clips), trained on "
                f"{_speaker_list(subjects_of(train))} ({len(train):,} clips)")
    inner_ids = sorted(inner, key=lambda s: (len(s), s))
    return Split(train, val, protocol, {**split.data, "train_speakers": subjects_of(train),
                                        "validation_speakers": inner_ids, "inner_validation_speakers": inner_ids,
                                        "test_speakers": split.data["validation_speakers"],
                                        "train_clips": len(train), "validation_clips": len(val),
                                        "test_clips": len(split.val)})


def crossvalidate_speech(records: list[Record], k: int, features: SpeechFeatureConfig,
                         model: dict[str, Any], train: TrainConfig, run_dir: str | Path,
                         classes: list[str] | None = None, progress: bool = True, augment=None,
                         inner: bool = True) -> dict[str, Any]:
    """Speaker-grouped k-fold CV: one model per fold in ``run_dir/fold<i>``; writes ``cv.json``/``cv.md``.

    With ``inner`` (the default) each fold trains on k-2 speaker groups, chooses its epoch on the next
    group (:func:`inner_split`) and reports the held-out group it never looked at; without it, the
    epoch is chosen on the reported group (optimistic; kept for comparison with older figures).
    Folds already finished are read back, not retrained.
    """
    from emotion_keras.labels import class_list

    run_dir = Path(run_dir)
    classes = list(classes) if classes else class_list([r.label for r in records])
    folds = kfold_splits(records, k)
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
    chosen = ("each fold's epoch chosen by {m} on inner validation speakers (the next fold's group, "
              "out of its training speakers), never on the speakers it reports" if inner else
              "each fold's epoch chosen by {m} on its held-out speakers").format(m=train.monitor)
    protocol = (f"{_ds_name(records)} speaker-grouped {k}-fold cross-validation ({_speaker_word(records)} "
                + "; ".join(_speaker_list(r["validation_speakers"]) for r in rows)
                + f" held out in turn; {len(records):,} clips); {chosen}; speaker normalisation "
                f"{features.speaker_norm!r} (training speakers with their own statistics; inner-validation "
                "and held-out speakers each with the statistics of their own unlabelled clips); "
                "clip-level scores, mean ± std over folds")
    report = {"task": "speech", "protocol": protocol, "classes": classes,
              **{key: _summary([r[key] for r in rows]) for key in ("accuracy", "uar", "macro_f1")},
              "folds": rows, "preprocessing": features.to_dict(), "model_config": model,
              "train_config": train.to_dict(), "augmentation": augment.to_dict() if augment else None}
    if all("per_file" in r for r in rows):  # speaker-normalised models scored one clip at a time
        report["per_file"] = {key: _summary([r["per_file"][key] for r in rows]) for key in ("accuracy", "uar")}
    atomic_write_json(run_dir / "cv.json", report)
    lines = ["# Speech cross-validation", "", f"Protocol: {protocol}.", "",
             "| fold | held-out speakers | clips | accuracy | UAR | macro-F1 |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['fold']} | {_speaker_list(r['validation_speakers'])} | {r['n']} | {r['accuracy']:.3f} | "
              f"{r['uar']:.3f} | {r['macro_f1']:.3f} |" for r in rows]
    lines.append(f"| mean ± std | | | {report['accuracy']['mean']:.3f} ± {report['accuracy']['std']:.3f} | "
                 f"{report['uar']['mean']:.3f} ± {report['uar']['std']:.3f} | "
                 f"{report['macro_f1']['mean']:.3f} ± {report['macro_f1']['std']:.3f} |")
    atomic_write_text(run_dir / "cv.md", "\n".join(lines) + "\n")
    return report


# ---------------------------------------------------------------- evaluation

def corpus_clips(card: dict[str, Any], data: str, speakers: str | None = None,
                 progress: bool = True) -> tuple[list[Record], WindowSet]:
    """The clips of ``data`` (optionally some speakers) with the model's classes, and their cached
    feature windows as the card's preprocessing makes them."""
    classes = list(card["classes"])
    config = SpeechFeatureConfig.from_dict(card.get("preprocessing") or {})
    records = read_records(data, limit_speakers=speakers)
    outside = sorted({r.label for r in records} - set(classes))
    records = [r for r in records if r.label in classes]
    if outside:
        print(f"note: leaving out clips labelled {outside}: not among the model's classes {classes}",
              file=sys.stderr)
    if not records:
        raise InputError(data, f"no clips with the model's classes {classes}")
    ws = scoring_windows(records, config, progress)
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
                      temperature: float = 1.0, progress: bool = True) -> list[dict[str, Any]]:
    """Clip-level accuracy, UAR and ECE per waveform perturbation and strength. Clips are decoded
    once; features are recomputed from each perturbed waveform (not cached)."""
    from emotion_keras import perturb
    from emotion_keras.calibration import apply_temperature, ece, pool
    from emotion_keras.evaluate import metrics
    from emotion_keras.preprocess import audio

    classes = list(card["classes"])
    config = SpeechFeatureConfig.from_dict(card.get("preprocessing") or {})
    basis = audio.mel_basis(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
    clips = [int(i) for i in np.unique(ws.clip)]
    waves = {i: audio.load_audio(ws.records[i].path, config.sr) for i in clips}
    rows = []
    for kind in kinds:
        strengths, unit = perturb.SPEECH[kind]
        for strength in strengths:
            feats, owner, silent = [], [], set()
            for k, i in enumerate(clips):
                wave = perturb.perturb_audio(waves[i], config.sr, kind, strength, seed + k)
                try:
                    f, _ = audio.waveform_windows(wave, config, ws.records[i].name, basis)
                except InputError:  # e.g. made silent by -20 dB gain: counted as a uniform guess
                    silent.add(k)
                    continue
                feats.append(f)
                owner += [k] * len(f)
            pooled = np.full((len(clips), len(classes)), 1.0 / len(classes), np.float32)
            if feats:
                p = apply_temperature(window_probabilities(net, np.concatenate(feats)), temperature)
                pooled[np.unique(owner)] = pool(p, owner)
            probs_a = pooled
            y_a = np.asarray([classes.index(ws.records[i].label) for i in clips])
            m = metrics(y_a, probs_a, classes)
            rows.append({"perturbation": kind, "strength": strength, "unit": unit,
                         "accuracy": m["accuracy"], "uar": m["uar"], "ece": ece(probs_a, y_a),
                         "unusable_clips": len(silent)})
            if progress:
                print(f"  {kind:>7s} {strength:<6g} accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}",
                      file=sys.stderr)
    return rows


def evaluate_speech(model_dir: str | Path, data: str, speakers: str | None = None,
                    out: str | Path | None = None, progress: bool = True, perturb: list[str] | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """Clip-level metrics, calibration (ECE, reliability) and, with ``perturb``, the robustness table
    of a saved model on ``data`` (optionally some speakers only).

    The protocol says whether the evaluated speakers were in the model's training data (from its card).
    """
    from emotion_keras import calibration
    from emotion_keras.models import store
    from emotion_keras.perturb import SPEECH, expand

    kinds = expand(perturb or [], SPEECH)
    model_dir = Path(model_dir)
    net, card = store.load(model_dir)
    classes = list(card["classes"])
    records, ws = corpus_clips(card, data, speakers, progress)
    raw = window_probabilities(net, ws.inputs())
    temperature = calibration.temperature_of(card)
    probs = calibration.apply_temperature(raw, temperature)
    m = ws.clip_metrics(probs, classes)
    seen = set(card.get("data", {}).get("train_speakers", []))
    evaluated = subjects_of(records)
    both = sorted(set(evaluated) & seen)
    if not seen:
        note = "the model card does not list its training speakers"
    elif both:
        note = (f"NOT speaker-independent: {len(both)} of {len(evaluated)} evaluated speakers "
                f"({_speaker_list(both)}) were in the training data")
    else:
        note = "speaker-independent: none of these speakers were in the training data"
    protocol = (f"{_ds_name(records)} {_speaker_word(records)} {_speaker_list(evaluated)} "
                f"({m['n']:,} clips); {note}; clip-level scores")
    y = ws.clip_targets(classes)
    report = {"task": "speech", "name": card.get("name"), "model": str(model_dir), "data": str(data),
              "backend": active_backend(), **m, "protocol": protocol,
              "unreadable": [{"file": f, "error": e} for f, e in ws.failed],
              "calibration": calibration.report_section(calibration.pool(raw, ws.clip),
                                                        calibration.pool(probs, ws.clip), y, temperature)}
    if kinds:
        rows = robustness_speech(net, card, ws, kinds, seed, temperature, progress)
        report["robustness"] = robustness_section(protocol, m, report["calibration"]["ece"], rows, seed,
                                                  "perturbations applied to the 16 kHz waveform before features")
    report = write_evaluation(report, Path(out) if out else model_dir)
    if "robustness" in report and (model_dir / store.CARD_FILE).exists() and out is None:
        record_robustness(model_dir, report["robustness"])
    return report


# ---------------------------------------------------------------- comparison

def compare_entries(families: str | None, configs: list[str] | None = None,
                    base_model: dict | None = None) -> list[dict[str, Any]]:
    """Entries ``{"name", "model", "features"}``: the named families (default all four) plus configs.

    A config file (or inline JSON) holds ``{"name", "model": {...}, "features": {...}, "train": {...}}``.
    """
    entries = []
    for fam in (families or ",".join(FAMILIES) if not configs else families or "").split(","):
        fam = fam.strip()
        if not fam:
            continue
        if fam not in FAMILIES:
            raise ConfigError(f"unknown model family {fam!r}; known: {', '.join(FAMILIES)}")
        model, feats = FAMILIES[fam]
        entries.append({"name": fam, "model": {**(base_model or {}), **model}, "features": feats, "train": {}})
    for i, spec in enumerate(configs or (), 1):
        data = json_arg(spec, "--configs")
        extra = sorted(set(data) - {"name", "model", "features", "train"})
        if extra:
            raise ConfigError(f"{spec}: unknown keys {extra}; expected name, model, features, train")
        entries.append({"name": data.get("name", f"config{i}"), "model": data.get("model", {}),
                        "features": data.get("features", {}), "train": data.get("train", {})})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"compared models need distinct names, got {names}")
    return entries


def compare_speech(split: Split, features: SpeechFeatureConfig, entries: list[dict[str, Any]],
                   train: TrainConfig, out: str | Path, classes: list[str] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Train every entry on the same speaker split; write ``comparison.json`` and ``comparison.md``.

    Each model's run lives in ``out/<name>``; an entry whose ``result.json`` matches its config is
    skipped, so rerunning after an interruption continues where it stopped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in entries:
        run = out / entry["name"]
        fcfg = features.replace(**entry.get("features", {}))
        tcfg = train.replace(**entry.get("train", {}))
        digest = cache_key(split.protocol, fcfg.to_dict(), entry["model"], tcfg.to_dict())
        if (row := finished_row(run, entry["name"], digest)) is not None:
            rows.append(row)
            continue
        print(f"[{entry['name']}] training {entry['model']} on {fcfg.feature}", file=sys.stderr)
        res = train_speech(split, fcfg, entry["model"], tcfg, run, name=entry["name"], classes=classes,
                           progress=progress)
        card, m = res["card"], res["metrics"]
        row = {"name": entry["name"], "architecture": card["model_config"]["architecture"],
               "feature": fcfg.feature, "parameters": card["parameters"],
               "accuracy": round(m["accuracy"], 4), "uar": round(m["uar"], 4),
               "macro_f1": round(m["macro_f1"], 4), "train_seconds": card["training"]["seconds"],
               "epochs": card["training"]["epochs_run"],
               "windows_per_second": card["training"]["windows_per_second"], "backend": card["backend"],
               "size_bytes": card["size_bytes"], "model_config": card["model_config"],
               "preprocessing": card["preprocessing"], "train_config": card["train_config"],
               "digest": digest, "path": str(run)}
        atomic_write_json(run / "result.json", row)
        rows.append(row)
        write_comparison(out, split, rows)
    return write_comparison(out, split, rows)


def write_comparison(out: Path, split: Split, rows: list[dict[str, Any]]) -> dict:
    """``comparison.json`` / ``comparison.md`` of the speech models compared so far."""
    return _write_table(out, "speech", "Speech model comparison", split, rows,
                        [("architecture", lambda r: r["architecture"]), ("features", lambda r: r["feature"])])


# ---------------------------------------------------------------- arguments -> configs

def feature_config_from_args(args) -> SpeechFeatureConfig:
    base = json_arg(getattr(args, "feature_config", None), "--feature-config")
    return SpeechFeatureConfig.from_dict(
        base, feature=getattr(args, "feature", None), n_mels=getattr(args, "n_mels", None),
        window_seconds=getattr(args, "window_seconds", None), hop_seconds=getattr(args, "hop_seconds", None),
        speaker_norm=getattr(args, "speaker_norm", None), prosody=getattr(args, "prosody", None))


def augment_config_from_args(args):
    """``--augment-copies N`` -> an AudioAugmentConfig (None: no waveform augmentation)."""
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    copies = getattr(args, "augment_copies", None)
    return AudioAugmentConfig(copies=copies) if copies else None


def model_config_dict_from_args(args) -> dict[str, Any]:
    base = json_arg(getattr(args, "model_config", None), "--model-config")
    for key in ("architecture", "rnn", "filters", "conv_blocks"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return base


def _add_data_args(p, split: bool = True):
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="corpus: ravdess:/path, cremad:/path, tess:/path, savee:/path, emodb:/path, "
                        "folder:/path, csv:/path/manifest.csv, or a path (kind guessed); "
                        "several joined by commas")
    p.add_argument("--speakers", metavar="IDS", help="use only these speakers (e.g. 1,2,3,4)")
    p.add_argument("--no-calm", action="store_true", help="leave RAVDESS 'calm' out (7 classes)")
    p.add_argument("--classes", help="comma-separated class list (default: the training labels)")
    if split:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--val-speakers", default=None, metavar="FRACTION|IDS",
                       help="held-out speakers: a fraction (default 0.2) or ids like 17,18,19,20")
        g.add_argument("--folds", type=int, metavar="K",
                       help="speaker-grouped K-fold cross-validation instead of one hold-out")
        g.add_argument("--val-data", metavar="SPEC", help="validate on another corpus")


def _add_feature_args(p):
    g = p.add_argument_group("features")
    g.add_argument("--feature-config", metavar="JSON|FILE", help="SpeechFeatureConfig as JSON or a JSON file")
    g.add_argument("--feature", choices=("logmel", "mfcc"), help="log-mel (default) or MFCC+deltas")
    g.add_argument("--n-mels", type=int, help="mel bands (default 64)")
    g.add_argument("--window-seconds", type=float, help="window length (default 3.0)")
    g.add_argument("--hop-seconds", type=float, help="hop between windows of long clips (default 1.5)")
    g.add_argument("--speaker-norm", choices=("none", "speaker"),
                   help="speaker: standardise per training speaker (per file at inference); default none")
    g.add_argument("--prosody", choices=("none", "praat"),
                   help="praat: prosody (F0, voicing, intensity, jitter, shimmer, HNR) as a second input")
    g.add_argument("--workers", type=int, help="feature processes (default: all cores)")


def _add_model_args(p):
    from emotion_keras.models.speech import ARCHITECTURES

    g = p.add_argument_group("model")
    g.add_argument("--model-config", metavar="JSON|FILE", help="SpeechModelConfig as JSON or a JSON file")
    g.add_argument("--architecture", "--arch", choices=ARCHITECTURES, help="model family (default crnn)")
    g.add_argument("--rnn", choices=("gru", "lstm"), help="CRNN recurrent layer (default gru)")
    g.add_argument("--filters", type=int, help="filters of the first conv block (default 32)")
    g.add_argument("--conv-blocks", type=int, help="conv blocks (default 3)")


def register(subparsers) -> None:
    p = subparsers.add_parser("speech", help="speech corpora: preprocess, train, evaluate, compare models",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="speech_verb", metavar="ACTION", required=True)

    pp = sub.add_parser("preprocess", help="compute and cache a corpus's features; list unreadable clips")
    _add_data_args(pp, split=False)
    _add_feature_args(pp)
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pp.set_defaults(func=cmd_preprocess)

    tp = sub.add_parser("train", help="train a speech model (speaker-independent) and save it with its card")
    _add_data_args(tp)
    _add_feature_args(tp)
    _add_model_args(tp)
    add_train_args(tp)
    tp.add_argument("--augment-copies", type=int, metavar="N",
                    help="N augmented copies per training clip (speed, pitch, noise, reverb, gain; cached)")
    tp.add_argument("--no-inner", action="store_true",
                    help="with --folds: choose epochs on the reported fold (older, optimistic protocol)")
    add_run_args(tp, "speech")
    tp.set_defaults(func=cmd_train)

    ep = sub.add_parser("evaluate", help="clip-level accuracy, UAR, macro-F1 and confusion of a saved model")
    ep.add_argument("--model", default=None, help="model directory (default saved_models/speech)")
    _add_data_args(ep, split=False)
    ep.add_argument("--out", help="report folder (default: the model directory)")
    add_perturb_arg(ep, "noise, reverb, codec, gain")
    ep.add_argument("--json", action="store_true", help="print the full report as JSON")
    ep.set_defaults(func=cmd_evaluate)

    cp = sub.add_parser("compare", help="train several model families on the same speaker split; tabulate")
    cp.add_argument("--families", help="comma-separated: crnn,cnn2d,cnn1d,transformer (default: all)")
    cp.add_argument("--configs", nargs="+", metavar="JSON", help="entries {name, model, features, train}")
    _add_data_args(cp)
    _add_feature_args(cp)
    _add_model_args(cp)
    add_train_args(cp)
    cp.add_argument("--out", default="runs/speech/compare", help="comparison folder (default runs/speech/compare)")
    cp.set_defaults(func=cmd_compare)


def _split_from_args(args) -> Split:
    return load_split(args.data, val_speakers=args.val_speakers, val_data=args.val_data,
                      classes=classes_arg(args), include_calm=not args.no_calm, speakers=args.speakers,
                      seed=args.seed or 0)


def cmd_preprocess(args) -> int:
    config = feature_config_from_args(args)
    records = read_records(args.data, classes_arg(args), not args.no_calm, args.speakers)
    ws = window_set(records, config, progress=not args.json, workers=args.workers)
    n_ok = len(records) - len(ws.failed)
    summary = {"data": args.data, "clips": len(records), "usable_clips": n_ok, "windows": int(len(ws.x)),
               "shape": list(config.input_shape), "labels": dict(Counter(r.label for r in records)),
               "speakers": len(subjects_of(records)),
               "unreadable": [{"file": f, "error": e} for f, e in ws.failed], "features": config.to_dict()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.data}: {len(records):,} clips from {summary['speakers']} speakers -> {len(ws.x):,} "
              f"windows of {tuple(config.input_shape)} {config.feature} features (cached)")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["labels"].items())))
        if ws.failed:
            print(f"  {len(ws.failed)} clip(s) unreadable (listed above)")
    return 0


def _default_run_dir(args, tag_parts) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    if args.name:
        return Path("runs/speech") / args.name
    return Path("runs/speech") / f"speech-{cache_key(*tag_parts)[:8]}"


def cmd_train(args) -> int:
    features = feature_config_from_args(args)
    train = train_config_from_args(args)
    model = model_config_dict_from_args(args)
    classes = classes_arg(args)
    if args.folds:
        records = read_records(args.data, classes, not args.no_calm, args.speakers)
        run_dir = _default_run_dir(args, (args.data, args.folds, features.to_dict(), model, train.to_dict(),
                                          args.augment_copies, args.no_inner))
        report = crossvalidate_speech(records, args.folds, features, model, train, run_dir, classes,
                                      augment=augment_config_from_args(args), inner=not args.no_inner)
        print(f"{report['protocol']}\n  accuracy {report['accuracy']['mean']:.3f} ± "
              f"{report['accuracy']['std']:.3f}  UAR {report['uar']['mean']:.3f} ± {report['uar']['std']:.3f}"
              f"  macro-F1 {report['macro_f1']['mean']:.3f} ± {report['macro_f1']['std']:.3f}\n"
              f"report: {run_dir / 'cv.json'}")
        return 0
    split = _split_from_args(args)
    run_dir = _default_run_dir(args, (split.protocol, features.to_dict(), model, train.to_dict()))
    if skip_finished_run(run_dir, args.force):
        return 0
    print(f"run directory: {run_dir}\nprotocol: {split.protocol}", file=sys.stderr)
    res = train_speech(split, features, model, train, run_dir, out=args.out, name=args.name, classes=classes,
                       augment=augment_config_from_args(args))
    print(saved_line(res))
    return 0


def cmd_evaluate(args) -> int:
    from emotion_keras.models.store import default_model_dir

    report = evaluate_speech(args.model or default_model_dir("speech"), args.data, speakers=args.speakers,
                             out=args.out, progress=not args.json, perturb=perturb_arg(args), seed=args.seed)
    print_evaluation(report, args.json)
    return 0


def cmd_compare(args) -> int:
    if args.folds:
        raise ConfigError("speech compare uses one speaker hold-out (--val-speakers); run "
                          "`speech train --folds K` per family for cross-validation")
    features = feature_config_from_args(args)
    train = train_config_from_args(args)
    entries = compare_entries(args.families, args.configs, model_config_dict_from_args(args))
    split = _split_from_args(args)
    table = compare_speech(split, features, entries, train, args.out, classes=classes_arg(args))
    print(Path(args.out, "comparison.md").read_text())
    return 0 if table["rows"] else 1


__all__ = ["Split", "load_split", "kfold_splits", "train_speech", "crossvalidate_speech", "evaluate_speech",
           "compare_speech", "register", "WindowSet", "window_set"]
