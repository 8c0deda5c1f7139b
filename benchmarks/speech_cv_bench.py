"""Speaker normalisation, augmentation and features compared on the same 5 speaker folds
-> docs/benchmarks/speech_cv.{json,md}.

Protocol (every row): RAVDESS actors 1-20, 1,200 clips, 8 classes; 5 folds over actors (1-4, 5-8, ...,
17-20), each held out once and reported; inside each fold the next fold's 4 actors are the inner
validation set (epoch choice by val_uar, early stopping) and the remaining 12 actors train; with
speaker normalisation each training speaker is standardised with their own statistics, and each
inner-validation or held-out speaker with the statistics of their own clips (labels unused: the
enrolment setting), always by the speaker's own mean and their variance shrunk towards the typical
training speaker's (``speaker_norm.group_stats``; rows measured from 2026-12-04 on); the "per file"
columns score the same models with each held-out clip normalised by its own statistics, shrunk
towards the typical speaker's (one clip of an unknown speaker). Clip-level accuracy, UAR and macro-F1,
mean ± std over the 5 folds. The same folds, order and seed for every row.

Rows: MFCC+deltas and log-mel, speaker normalisation on/off, waveform augmentation (audiomentations:
speed, pitch, noise at 5/10/20/30 dB SNR, pyroomacoustics reverberation, gain; cached) on top of
SpecAugment, the prosody second input (Praat via parselmouth, or the builtin NumPy measures); and the
eGeMAPS functionals baseline through ``opensmile`` when that optional extra is installed (skipped
otherwise, never required).

Each fold's run lives in ``runs/speech/cv_bench/<row>/fold<i>``: a killed benchmark resumes, finished
rows and folds are read back.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/speech_cv_bench.py [--rows a,b] [--epochs 25]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from emotion_keras.pipelines.speech import FAMILIES  # noqa: E402
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess_speech"

BASE_FEATURES = {"hop_length": 320}
BASE_MODEL = {"architecture": "cnn1d", "filters": 64}
LINEAR, FUNCTIONALS = FAMILIES["linear"]
LDA = {"architecture": "lda", "shrinkage": 0.6}
LINEAR_TRAIN = {"epochs": 100, "learning_rate": 0.003, "label_smoothing": 0.0, "early_stopping": 0}
ROWS = {
    "mfcc": ({"feature": "mfcc"}, {}, None),
    "mfcc+speaker": ({"feature": "mfcc", "speaker_norm": "speaker"}, {}, None),
    "mfcc+speaker+augment": ({"feature": "mfcc", "speaker_norm": "speaker"}, {}, {"copies": 1}),
    "mfcc+speaker+prosody": ({"feature": "mfcc", "speaker_norm": "speaker", "prosody": "praat"}, {}, None),
    "logmel+speaker": ({"feature": "logmel", "speaker_norm": "speaker"}, {}, None),
    "logmel": ({"feature": "logmel"}, {}, None),
    "mfcc+prosody": ({"feature": "mfcc", "prosody": "praat"}, {}, None),
    "mfcc+augment": ({"feature": "mfcc"}, {}, {"copies": 1}),
    "logmel+augment": ({"feature": "logmel"}, {}, {"copies": 1}),
    # the shipped model's configuration (saved_models/speech card: CRNN, 16 filters, GRU 64 + attention)
    # one vector of statistics per window, logistic regression (features at 32 ms frames, 10 ms hop)
    "functionals": (FUNCTIONALS, LINEAR, None),
    "functionals+speaker": ({**FUNCTIONALS, "speaker_norm": "speaker"}, LINEAR, None),
    "functionals+prosody": ({**FUNCTIONALS, "prosody": "praat"}, LINEAR, None),
    "functionals+prosody+speaker": ({**FUNCTIONALS, "speaker_norm": "speaker", "prosody": "praat"}, LINEAR, None),
    "functionals+speaker+augment": ({**FUNCTIONALS, "speaker_norm": "speaker"}, LINEAR, {"copies": 1}),
    "functionals+prosody+speaker+augment": ({**FUNCTIONALS, "speaker_norm": "speaker", "prosody": "praat"}, LINEAR,
                                            {"copies": 1}),
    # shrinkage LDA over the same statistics: the classifier solved, not trained
    "functionals+speaker+lda": ({**FUNCTIONALS, "speaker_norm": "speaker"}, LDA, None),
    "functionals+prosody+speaker+lda": ({**FUNCTIONALS, "speaker_norm": "speaker", "prosody": "praat"}, LDA, None),
    "functionals+lda": (FUNCTIONALS, LDA, None),
    "functionals+prosody+lda": ({**FUNCTIONALS, "prosody": "praat"}, LDA, None),
    # the same prosody measured without Praat (prosody "builtin": NumPy only, the default install)
    "functionals+builtin-prosody+speaker": ({**FUNCTIONALS, "speaker_norm": "speaker", "prosody": "builtin"},
                                            LINEAR, None),
    "functionals+builtin-prosody+speaker+lda": ({**FUNCTIONALS, "speaker_norm": "speaker", "prosody": "builtin"},
                                                LDA, None),
    "functionals+builtin-prosody+lda": ({**FUNCTIONALS, "prosody": "builtin"}, LDA, None),
    "crnn": ({"feature": "logmel"}, {"architecture": "crnn", "filters": 16, "conv_blocks": 3, "kernel_size": 3,
                                     "rnn": "gru", "rnn_units": 64, "attention_units": 64, "dropout": 0.3,
                                     "embedding_dim": 128, "bn_momentum": 0.99}, None),
}
# the LDA rows at other shrinkages, and rows that pick one per fold on the inner validation speakers
SHRINKAGES = (0.2, 0.4, 0.6, 0.8)
LDA_BASES = ("functionals+speaker+lda", "functionals+prosody+speaker+lda",
             "functionals+builtin-prosody+speaker+lda")
INNER = {}
for _base in LDA_BASES:
    _at = {v: _base if v == LDA["shrinkage"] else f"{_base}@{v}" for v in SHRINKAGES}
    ROWS.update({name: (ROWS[_base][0], {**LDA, "shrinkage": v}, None) for v, name in _at.items() if name != _base})
    # the lda default: every shrinkage, posteriors averaged
    ROWS[f"{_base} (shrinkage ensemble)"] = (ROWS[_base][0], {**LDA, "shrinkage": list(SHRINKAGES)}, None)
    INNER[f"{_base} (shrinkage by inner validation)"] = list(_at.values())
# rows trained with their own schedule instead of the common one (the shipped card's: 24 epochs, batch 32,
# no early stopping; the epoch is still chosen by val_uar on the inner validation speakers)
ROW_TRAIN = {"crnn": {"epochs": 24, "batch_size": 32, "early_stopping": 0},
             **{name: LINEAR_TRAIN for name, (_, model, _) in ROWS.items() if model is LINEAR}}


def train_seconds(row_dir: Path) -> float:
    """A row's folds' training time, also when other processes trained them (``--folds``): the
    epochs' seconds, or a solved model's solve."""
    total = 0.0
    for fold in row_dir.glob("fold*"):
        if (fold / "history.csv").exists():
            epochs = csv.DictReader((fold / "history.csv").read_text().splitlines())
            total += sum(float(e["epoch_seconds"]) for e in epochs)
        elif (fold / "train_result.json").exists():  # solved (lda): no epochs
            total += float(json.loads((fold / "train_result.json").read_text())["training"]["seconds"])
    return round(total, 1)


def run_row(name, records, epochs, out_root, backend):
    from emotion_keras.pipelines.speech import crossvalidate_speech
    from emotion_keras.config import TrainConfig
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    feats, model, aug = ROWS[name]
    fcfg = SpeechFeatureConfig.from_dict({**BASE_FEATURES, **feats})
    train = TrainConfig(**{"epochs": epochs, "batch_size": 64, "early_stopping": 6, "verbose": 0, "seed": 0,
                           **ROW_TRAIN.get(name, {})})
    t0 = time.perf_counter()
    rep = crossvalidate_speech(records, 5, fcfg, {**BASE_MODEL, **model}, train, out_root / name,
                               progress=False, augment=AudioAugmentConfig.from_dict(aug) if aug else None)
    return {"name": name, "features": fcfg.feature, "train_seconds": train_seconds(out_root / name),
            "feature_config": {k: v for k, v in feats.items() if k not in ("feature", "speaker_norm", "prosody")},
            "speaker_norm": fcfg.speaker_norm,
            "prosody": fcfg.prosody, "augmentation": aug or {}, "model": {**BASE_MODEL, **model},
            "accuracy": rep["accuracy"], "uar": rep["uar"], "macro_f1": rep["macro_f1"],
            "folds": rep["folds"], "protocol": rep["protocol"], "per_file": rep.get("per_file"),
            "seconds": round(time.perf_counter() - t0, 1), "measured": time.strftime("%Y-%m-%d"),
            "backend": backend, **({"train": ROW_TRAIN[name]} if name in ROW_TRAIN else {})}


def train_folds(name, records, epochs, out_root, fold_ids):
    """Train some folds of a row only (``--folds 5,4``), so that processes can share a slow row's folds
    (give each its own folds); a ``--rows`` run afterwards reads the finished folds back. Finished folds
    are skipped, a killed fold resumes."""
    from emotion_keras.pipelines.speech import train_speech
    from emotion_keras.pipelines.splits import inner_split, speech_kfold_splits as kfold_splits
    from emotion_keras.config import TrainConfig
    from emotion_keras.labels import class_list
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    feats, model, aug = ROWS[name]
    fcfg = SpeechFeatureConfig.from_dict({**BASE_FEATURES, **feats})
    train = TrainConfig(**{"epochs": epochs, "batch_size": 64, "early_stopping": 6, "verbose": 0, "seed": 0,
                           **ROW_TRAIN.get(name, {})})
    folds = kfold_splits(records, 5)
    classes = class_list([r.label for r in records])
    for i in fold_ids:
        fold_dir = out_root / name / f"fold{i}"
        if (fold_dir / "test_result.json").exists():
            continue
        split = folds[i - 1]
        print(f"[fold {i}/5] {split.protocol}", file=sys.stderr, flush=True)
        train_speech(inner_split(split, i - 1, folds), fcfg, {**BASE_MODEL, **model}, train, fold_dir,
                     classes=classes, progress=False, augment=AudioAugmentConfig.from_dict(aug) if aug else None,
                     test=split.val, test_protocol=split.protocol)


def inner_row(name, out_root, backend, run):
    """A row that picks, in each fold, the candidate row (``INNER[name]``, trained first with ``run``)
    whose model scored best (UAR) on that fold's inner validation speakers, and reports the chosen
    model on the held-out fold: the choice never sees the fold it reports."""
    import numpy as np

    candidates = INNER[name]
    for c in candidates:
        run(c)
    folds, chosen = [], []
    for i in range(1, 6):
        results = [(c, json.loads((out_root / c / f"fold{i}" / "test_result.json").read_text())) for c in candidates]
        best, d = max(results, key=lambda cr: cr[1]["validation"]["uar"])
        chosen.append(ROWS[best][1]["shrinkage"])
        folds.append({"fold": i, **{k: round(d["metrics"][k], 4) for k in ("accuracy", "uar", "macro_f1")},
                      "n": d["metrics"]["n"], "chosen": best,
                      **({"per_file": {k: round(d["per_file"][k], 4) for k in ("accuracy", "uar")}}
                         if d.get("per_file") else {})})

    def summ(vals):
        return {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4)}

    feats, model, _ = ROWS[candidates[0]]
    row = {"name": name, "features": feats.get("feature"), "speaker_norm": feats.get("speaker_norm", "none"),
           "prosody": feats.get("prosody", "none"), "augmentation": {},
           "model": {**model, "shrinkage": "chosen per fold from " + ", ".join(map(str, SHRINKAGES))},
           **{k: summ([f[k] for f in folds]) for k in ("accuracy", "uar", "macro_f1")}, "folds": folds,
           "chosen_shrinkage": chosen, "backend": backend, "measured": time.strftime("%Y-%m-%d"),
           "train_seconds": round(sum(train_seconds(out_root / c) for c in candidates), 1),
           "protocol": "as above; in each fold the shrinkage is the one whose model scored the best UAR on "
                       f"the inner validation speakers (chosen: {', '.join(map(str, chosen))})"}
    if all("per_file" in f for f in folds):
        row["per_file"] = {k: summ([f["per_file"][k] for f in folds]) for k in ("accuracy", "uar")}
    return row


def card_cv5(row, model_dir):
    """Put a finished row's 5-fold figure on a saved model's card as ``metrics.cv5`` (the row must be
    that model's configuration): means as the headline numbers, stds and folds beside them."""
    from emotion_keras.models import store

    card = store.read_card(model_dir)
    if "(partial" in row["name"]:
        raise SystemExit(f"row {row['name']!r} is partial: no 5-fold figure to put on the card")
    if row["model"]["architecture"] != card["model_config"]["architecture"]:
        raise SystemExit(f"row {row['name']!r} is a {row['model']['architecture']}, the card's model a "
                         f"{card['model_config']['architecture']}")
    cv5 = {**{k: row[k]["mean"] for k in ("accuracy", "uar", "macro_f1")},
           **{f"{k}_std": row[k]["std"] for k in ("accuracy", "uar", "macro_f1")},
           "folds": row["folds"], "n": sum(f["n"] for f in row["folds"]),
           "protocol": row["protocol"] + "; this card's configuration (model, features, schedule) retrained "
           "once per fold; the shipped weights themselves are not among the fold models, so this estimates "
           "the configuration on new speakers", "source": f"docs/benchmarks/speech_cv.md, row {row['name']}"}
    store.update_card(model_dir, metrics={**card["metrics"], "cv5": cv5})
    print(f"{model_dir}: metrics.cv5 = accuracy {cv5['accuracy']:.3f} ± {cv5['accuracy_std']:.3f}, "
          f"UAR {cv5['uar']:.3f} ± {cv5['uar_std']:.3f}", file=sys.stderr)


def partial_row(name, out_root, backend):
    """A row from the folds finished so far (``--report-only``): marked partial when under 5."""
    import numpy as np

    feats, model, aug = ROWS[name]
    folds = []
    for i in range(1, 6):
        path = out_root / name / f"fold{i}" / "test_result.json"
        if path.exists():
            d = json.loads(path.read_text())
            folds.append({"fold": i, **{k: round(d["metrics"][k], 4) for k in ("accuracy", "uar", "macro_f1")},
                          "n": d["metrics"]["n"], **({"per_file": {k: round(d["per_file"][k], 4)
                                                                  for k in ("accuracy", "uar")}}
                                                     if d.get("per_file") else {})})
    if not folds:
        return None

    def summ(vals):
        return {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4)}

    row = {"name": name if len(folds) == 5 else f"{name} (partial: folds {', '.join(str(f['fold']) for f in folds)})",
           "features": feats.get("feature"), "speaker_norm": feats.get("speaker_norm", "none"),
           "prosody": feats.get("prosody", "none"), "augmentation": aug or {}, "model": {**BASE_MODEL, **model},
           **{k: summ([f[k] for f in folds]) for k in ("accuracy", "uar", "macro_f1")}, "folds": folds,
           **({"train": ROW_TRAIN[name]} if name in ROW_TRAIN else {}),
           "backend": backend, "protocol": "as above" + ("" if len(folds) == 5 else
                                                        f"; only {len(folds)} of 5 folds finished in the time")}
    if all("per_file" in f for f in folds):
        row["per_file"] = {k: summ([f["per_file"][k] for f in folds]) for k in ("accuracy", "uar")}
    return row


def egemaps_row(records):
    """eGeMAPS v02 functionals + logistic regression on the same 5 folds (inner folds unused: the
    regression has no epochs; C fixed at 1). Skipped when opensmile is not installed."""
    try:
        import opensmile
    except ImportError:
        return {"name": "eGeMAPS functionals (opensmile)", "skipped": "opensmile not installed "
                "(optional extra, research/non-commercial licence)"}
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from emotion_keras.data.records import group_kfold
    from emotion_keras.evaluate import metrics
    from emotion_keras.labels import class_list

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    index = {id(r): i for i, r in enumerate(records)}
    x = np.stack([smile.process_file(str(r.path)).to_numpy().ravel() for r in records])
    classes = class_list([r.label for r in records])
    rows = []
    for train, test in group_kfold(records, 5):
        tr = [index[id(r)] for r in train]
        te = [index[id(r)] for r in test]
        scaler = StandardScaler().fit(x[tr])
        clf = LogisticRegression(max_iter=2000).fit(scaler.transform(x[tr]), [r.label for r in train])
        probs = clf.predict_proba(scaler.transform(x[te]))
        order = [list(clf.classes_).index(c) for c in classes]
        y = np.asarray([classes.index(r.label) for r in test])
        rows.append(metrics(y, probs[:, order], classes))
    summ = {k: {"mean": round(float(np.mean([m[k] for m in rows])), 4),
                "std": round(float(np.std([m[k] for m in rows])), 4)} for k in ("accuracy", "uar", "macro_f1")}
    return {"name": "eGeMAPS functionals (opensmile)", "features": "eGeMAPSv02 functionals",
            "model": "logistic regression", **summ}


def pf(row, key) -> str:
    m = (row.get("per_file") or {}).get(key)
    return f"{m['mean']:.3f} ± {m['std']:.3f}" if m else "(same)"


def write(out_dir: Path, rows, meta):
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    atomic_write_json(out_dir / "speech_cv.json", {**meta, "rows": rows})
    lines = ["# Speech: normalisation, augmentation and features on the same 5 speaker folds", "",
             f"Protocol: {meta['protocol']}", "",
             f"Command: `{meta['command']}`. Machine: {meta['machine']}; backend per row (time column); "
             f"model: 1D CNN over time (`{json.dumps(BASE_MODEL)}`), features `{json.dumps(BASE_FEATURES)}` "
             f"(3 s windows, 20 ms hop), up to {meta['epochs']} epochs (early stopping after 6 without "
             "inner-validation gain), batch 64, AdamW + cosine, label "
             "smoothing 0.1, class weights, SpecAugment in every row.", ""]
    for r in rows:  # rows with their own model or schedule (e.g. the shipped CRNN's)
        if "skipped" not in r and (r.get("model", BASE_MODEL) != BASE_MODEL or r.get("train")):
            solved = r["model"].get("architecture") == "lda"
            lines += [f"Row `{r['name']}`: model `{json.dumps(r['model'])}`"
                      + (f", features `{json.dumps(r['feature_config'])}`" if r.get("feature_config") else "")
                      + (f", schedule `{json.dumps(r['train'])}` instead of the common one" if r.get("train") else "")
                      + ("; weights solved in closed form on the 12 training speakers (no epochs), the inner "
                         "validation speakers only scored." if solved else
                         "; the epoch is chosen by val_uar on the inner validation speakers as in every row."), ""]
    lines += ["Two settings for the speaker-normalised rows: the main columns are *enrolment* (each held-out "
              "speaker standardised with the statistics of their own 60 unlabelled clips, about 4 minutes of "
              "speech: a user analysing many recordings, or a long recording, of one person), the per-file "
              "columns a single clip of an unknown speaker. Rows without speaker normalisation need neither.",
              ""]
    lines += [
             "| row | features | speaker norm | waveform augmentation | prosody input | accuracy | UAR | "
             "macro-F1 | per file: accuracy | per file: UAR | time (backend, measured) |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | | | | | skipped: {r['skipped']} | | | | | |")
            continue
        f = lambda k: f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}"  # noqa: E731
        aug = ", ".join(f"{k}={v}" for k, v in r.get("augmentation", {}).items()) or "none"
        lines.append(f"| {r['name']} | {r.get('features', '')} | {r.get('speaker_norm', '')} | {aug} | "
                     f"{r.get('prosody', '')} | {f('accuracy')} | {f('uar')} | {f('macro_f1')} | "
                     f"{pf(r, 'accuracy')} | {pf(r, 'uar')} | {r.get('train_seconds', r.get('seconds', ''))} s "
                     f"({r.get('backend', '')}{', ' + r['measured'] if r.get('measured') else ''}) |")
    scored = [r for r in rows if "skipped" not in r and "(partial" not in r["name"] and "accuracy" in r]
    if scored:
        best = max(scored, key=lambda r: r["accuracy"]["mean"])
        lines += ["", f"Best row by 5-fold mean accuracy: `{best['name']}` ({best['accuracy']['mean']:.3f} ± "
                  f"{best['accuracy']['std']:.3f}{', enrolment setting' if best.get('per_file') else ''}); "
                  "rows are compared by their mean over all 5 folds, so no fold "
                  "chooses what it reports, but the comparison of rows itself is made on these folds."]
    lines += ["", "Time: the folds' summed epoch seconds where recorded (`train_seconds`; folds of one row may "
              "have run in parallel processes, `--folds`), else the row's wall time; the CPU was shared."]
    lines += ["", "Per fold (accuracy):", ""]
    for r in rows:
        if "folds" in r:
            lines.append(f"- {r['name']}: " + ", ".join(f"{x['accuracy']:.3f}" for x in r["folds"]))
    atomic_write_text(out_dir / "speech_cv.md", "\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--rows", default=",".join([*ROWS, *INNER]) + ",egemaps")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "speech" / "cv_bench"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: tabulate the folds finished so far (partial rows marked)")
    ap.add_argument("--folds", default="",
                    help="train only these folds of the --rows (e.g. 5,4) and write no table: a second process "
                         "sharing a slow row's folds; the --rows run reads them back")
    ap.add_argument("--card", default="", metavar="ROW:MODEL_DIR",
                    help="train nothing: put ROW's 5-fold figure (from the json) on MODEL_DIR's card as metrics.cv5")
    args = ap.parse_args(argv)
    if args.card:
        name, model_dir = args.card.split(":", 1)
        saved = {r["name"]: r for r in json.loads((Path(args.out) / "speech_cv.json").read_text())["rows"]}
        if name not in saved:
            raise SystemExit(f"no row {name!r} in {Path(args.out) / 'speech_cv.json'}")
        return card_cv5(saved[name], model_dir)
    import keras

    from emotion_keras.pipelines.splits import read_speech_records

    records = read_speech_records(f"ravdess:{args.data}")
    if args.folds:
        for name in [n.strip() for n in args.rows.split(",") if n.strip()]:
            train_folds(name, records, args.epochs, Path(args.runs), [int(f) for f in args.folds.split(",")])
        return
    out_dir = Path(args.out)
    prev, prev_cmd = {}, ""
    if (out_dir / "speech_cv.json").exists():
        saved = json.loads((out_dir / "speech_cv.json").read_text())
        prev, prev_cmd = {r["name"]: r for r in saved.get("rows", [])}, saved.get("command", "")
    meta = {"protocol": __doc__.split("\n\n")[1].replace("\n", " ").removeprefix("Protocol (every row): "),
            "command": "KERAS_BACKEND=jax python benchmarks/speech_cv_bench.py " + " ".join(argv or sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs)",
            "backend": keras.backend.backend(), "epochs": args.epochs}
    if args.report_only or meta["command"] in prev_cmd:  # earlier rows' commands stay on record
        meta["command"] = prev_cmd or meta["command"]
    elif prev_cmd:
        meta["command"] = f"{prev_cmd}; {meta['command']}"
    rows = dict(prev)

    def merged(mine):  # rows another bench process finished meanwhile are kept, not overwritten
        path = out_dir / "speech_cv.json"
        disk = {r["name"]: r for r in json.loads(path.read_text()).get("rows", [])} if path.exists() else {}
        return {**disk, **mine}

    mine = {}
    for name in [n.strip() for n in args.rows.split(",") if n.strip()]:
        print(f"[{name}]", file=sys.stderr, flush=True)
        if name == "egemaps":
            row = egemaps_row(records)
            rows[row["name"]] = mine[row["name"]] = row
        elif name in INNER:
            def candidate(c):  # each shrinkage's own row is kept in the table too
                rows[c] = mine[c] = run_row(c, records, args.epochs, Path(args.runs), keras.backend.backend())

            row = inner_row(name, Path(args.runs), keras.backend.backend(), candidate)
            rows[name] = mine[name] = row
            print(f"  accuracy {row['accuracy']}  uar {row['uar']}  shrinkage {row['chosen_shrinkage']}",
                  file=sys.stderr, flush=True)
        elif args.report_only:
            row = None if name in rows else partial_row(name, Path(args.runs), keras.backend.backend())
            if row is not None:  # finished rows keep their full record
                rows = {k: v for k, v in rows.items() if not k.startswith(name + " (partial")}
                rows[row["name"]] = mine[row["name"]] = row
        else:
            rows[name] = mine[name] = run_row(name, records, args.epochs, Path(args.runs), keras.backend.backend())
            print(f"  accuracy {rows[name]['accuracy']}  uar {rows[name]['uar']}", file=sys.stderr, flush=True)
        rows = merged(mine)
        rows = {k: v for k, v in rows.items()
                if not any(k.startswith(m + " (partial") for m in mine if " (partial" not in m)}
        write(out_dir, list(rows.values()), meta)


if __name__ == "__main__":
    main()
