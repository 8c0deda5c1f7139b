"""Speaker normalisation, augmentation and features compared on the same 5 speaker folds
-> docs/benchmarks/speech_cv.{json,md}.

Protocol (every row): RAVDESS actors 1-20, 1,200 clips, 8 classes; 5 folds over actors (1-4, 5-8, ...,
17-20), each held out once and reported; inside each fold the next fold's 4 actors are the inner
validation set (epoch choice by val_uar, early stopping) and the remaining 12 actors train; with
speaker normalisation each training speaker is standardised with their own statistics, and each
inner-validation or held-out speaker with the statistics of their own clips (labels unused: the
enrolment setting); the "per file" columns score the same models with each held-out clip normalised
by its own statistics only (one clip of an unknown speaker). Clip-level accuracy, UAR and macro-F1,
mean ± std over the 5 folds. The same folds, order and seed for every row.

Rows: MFCC+deltas and log-mel, speaker normalisation on/off, waveform augmentation (audiomentations:
speed, pitch, noise at 5/10/20/30 dB SNR, pyroomacoustics reverberation, gain; cached) on top of
SpecAugment, the prosody second input (Praat via parselmouth); and the eGeMAPS functionals baseline
through ``opensmile`` when that optional extra is installed (skipped otherwise, never required).

Each fold's run lives in ``runs/speech/cv_bench/<row>/fold<i>``: a killed benchmark resumes, finished
rows and folds are read back.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/speech_cv_bench.py [--rows a,b] [--epochs 25]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess_speech"

BASE_FEATURES = {"hop_length": 320}
BASE_MODEL = {"architecture": "cnn1d", "filters": 64}
ROWS = {
    "mfcc": ({"feature": "mfcc"}, {}, None),
    "mfcc+speaker": ({"feature": "mfcc", "speaker_norm": "speaker"}, {}, None),
    "mfcc+speaker+augment": ({"feature": "mfcc", "speaker_norm": "speaker"}, {}, {"copies": 1}),
    "mfcc+speaker+prosody": ({"feature": "mfcc", "speaker_norm": "speaker", "prosody": "praat"}, {}, None),
    "logmel+speaker": ({"feature": "logmel", "speaker_norm": "speaker"}, {}, None),
    "logmel": ({"feature": "logmel"}, {}, None),
    "mfcc+prosody": ({"feature": "mfcc", "prosody": "praat"}, {}, None),
    "mfcc+augment": ({"feature": "mfcc"}, {}, {"copies": 1}),
}


def run_row(name, records, epochs, out_root, backend):
    from emotion_keras.pipelines.speech import crossvalidate_speech
    from emotion_keras.config import TrainConfig
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    feats, model, aug = ROWS[name]
    fcfg = SpeechFeatureConfig.from_dict({**BASE_FEATURES, **feats})
    train = TrainConfig(epochs=epochs, batch_size=64, early_stopping=6, verbose=0, seed=0)
    t0 = time.perf_counter()
    rep = crossvalidate_speech(records, 5, fcfg, {**BASE_MODEL, **model}, train, out_root / name,
                               progress=False, augment=AudioAugmentConfig.from_dict(aug) if aug else None)
    return {"name": name, "features": fcfg.feature, "speaker_norm": fcfg.speaker_norm,
            "prosody": fcfg.prosody, "augmentation": aug or {}, "model": {**BASE_MODEL, **model},
            "accuracy": rep["accuracy"], "uar": rep["uar"], "macro_f1": rep["macro_f1"],
            "folds": rep["folds"], "protocol": rep["protocol"], "per_file": rep.get("per_file"), "seconds": round(time.perf_counter() - t0, 1),
            "backend": backend}


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
             f"Command: `{meta['command']}`. Machine: {meta['machine']}; backend {meta['backend']}; "
             f"model: 1D CNN over time (`{json.dumps(BASE_MODEL)}`), features `{json.dumps(BASE_FEATURES)}` "
             f"(3 s windows, 20 ms hop), up to {meta['epochs']} epochs (early stopping after 6 without "
             "inner-validation gain), batch 64, AdamW + cosine, label "
             "smoothing 0.1, class weights, SpecAugment in every row.", "",
             "| row | features | speaker norm | waveform augmentation | prosody input | accuracy | UAR | "
             "macro-F1 | per file: accuracy | per file: UAR | time |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | | | | | skipped: {r['skipped']} | | | | | |")
            continue
        f = lambda k: f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}"  # noqa: E731
        aug = ", ".join(f"{k}={v}" for k, v in r.get("augmentation", {}).items()) or "none"
        lines.append(f"| {r['name']} | {r.get('features', '')} | {r.get('speaker_norm', '')} | {aug} | "
                     f"{r.get('prosody', '')} | {f('accuracy')} | {f('uar')} | {f('macro_f1')} | "
                     f"{pf(r, 'accuracy')} | {pf(r, 'uar')} | {r.get('seconds', '')} s |")
    lines += ["", "Per fold (accuracy):", ""]
    for r in rows:
        if "folds" in r:
            lines.append(f"- {r['name']}: " + ", ".join(f"{x['accuracy']:.3f}" for x in r["folds"]))
    atomic_write_text(out_dir / "speech_cv.md", "\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--rows", default=",".join(ROWS) + ",egemaps")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", default=str(ROOT / "runs" / "speech" / "cv_bench"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: tabulate the folds finished so far (partial rows marked)")
    args = ap.parse_args(argv)
    import keras

    from emotion_keras.pipelines.splits import read_speech_records

    records = read_speech_records(f"ravdess:{args.data}")
    out_dir = Path(args.out)
    prev = {}
    if (out_dir / "speech_cv.json").exists():
        prev = {r["name"]: r for r in json.loads((out_dir / "speech_cv.json").read_text()).get("rows", [])}
    meta = {"protocol": __doc__.split("\n\n")[1].replace("\n", " ").removeprefix("Protocol (every row): "),
            "command": "KERAS_BACKEND=jax python benchmarks/speech_cv_bench.py " + " ".join(argv or sys.argv[1:]),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs)",
            "backend": keras.backend.backend(), "epochs": args.epochs}
    rows = dict(prev)
    for name in [n.strip() for n in args.rows.split(",") if n.strip()]:
        print(f"[{name}]", file=sys.stderr, flush=True)
        if name == "egemaps":
            row = egemaps_row(records)
            rows[row["name"]] = row
        elif args.report_only:
            row = None if name in rows else partial_row(name, Path(args.runs), keras.backend.backend())
            if row is not None:  # finished rows keep their full record
                rows = {k: v for k, v in rows.items() if not k.startswith(name + " (partial")}
                rows[row["name"]] = row
        else:
            rows[name] = run_row(name, records, args.epochs, Path(args.runs), keras.backend.backend())
            print(f"  accuracy {rows[name]['accuracy']}  uar {rows[name]['uar']}", file=sys.stderr, flush=True)
        write(out_dir, list(rows.values()), meta)


if __name__ == "__main__":
    main()
