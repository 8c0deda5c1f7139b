"""Train the shipped speech model from a cross-validated configuration -> saved_models/speech and
docs/benchmarks/speech_ship.{json,md}.

The configuration is a row of ``docs/benchmarks/speech_cv.json`` (``--row``, default: the row with the
best mean 5-fold UAR). Its epoch count is the median of the epochs its 5 folds chose on their inner
validation speakers, so nothing about the final model is chosen on data it is scored on. It trains on
all 20 RAVDESS actors for that fixed schedule (last epoch kept), then is scored, as a cross-corpus
check that chose nothing, on the CREMA-D clips in ``../shared/data/cremad_av/resampled`` (the 6 classes CREMA-D
shares with RAVDESS; 12 clips of 2 actors: indicative only). The card carries the 5-fold figure with
its protocol as ``metrics.cv5`` and the CREMA-D figure as ``metrics.validation``.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/speech_ship.py [--row mfcc+speaker] [--out saved_models/speech]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def fold_epochs(run_dir: Path) -> list[int]:
    """The epoch each fold kept: argmax of val_uar in its history (1-based)."""
    out = []
    for fold in sorted(run_dir.glob("fold*")):
        with open(fold / "history.csv") as f:
            uar = [float(r["val_uar"]) for r in csv.DictReader(f)]
        if uar:
            out.append(int(max(range(len(uar)), key=uar.__getitem__)) + 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--row", help="row of docs/benchmarks/speech_cv.json (default: best mean UAR)")
    ap.add_argument("--out", default=str(ROOT / "saved_models" / "speech"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "speech"))
    ap.add_argument("--name", default="ravdess-speech")
    args = ap.parse_args(argv)

    from benchmarks.speech_cv_bench import BASE_FEATURES, BASE_MODEL, ROWS
    from emotion_keras.commands.common import Split
    from emotion_keras.commands.speech import read_records, train_speech
    from emotion_keras.config import TrainConfig
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.data.records import subjects_of
    from emotion_keras.data.speech import corpus_licence
    from emotion_keras.models import store
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    cv = json.loads((ROOT / "docs" / "benchmarks" / "speech_cv.json").read_text())
    rows = {r["name"]: r for r in cv["rows"] if "uar" in r and r["name"] in ROWS}
    name = args.row or max(rows, key=lambda n: rows[n]["uar"]["mean"])
    row = rows[name]
    feats, model, aug = ROWS[name]
    fcfg = SpeechFeatureConfig.from_dict({**BASE_FEATURES, **feats})
    epochs_chosen = fold_epochs(Path(args.runs) / "cv_bench" / name)
    epochs = max(1, int(statistics.median(epochs_chosen)))
    train_cfg = TrainConfig(epochs=epochs, batch_size=64, early_stopping=0, verbose=2, seed=0)

    classes = cv.get("classes") or ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "calm"]
    ravdess = read_records(f"ravdess:{DATA / 'ravdess_speech'}")
    classes = sorted({r.label for r in ravdess}, key=lambda c: [*classes, c].index(c))
    cremad = [r for r in read_records(f"cremad:{DATA / 'cremad_av' / 'resampled'}") if r.label in classes]
    shared = sorted({r.label for r in cremad})
    protocol = (f"cross-corpus: CREMA-D actors {', '.join(subjects_of(cremad))} ({len(cremad)} clips, the classes "
                f"it shares with RAVDESS: {', '.join(shared)}; English, other speakers and recording set-up); "
                f"trained on RAVDESS actors 1-20 for a fixed {epochs} epochs (median of the epochs the 5 folds "
                f"chose on inner validation speakers: {epochs_chosen}), last epoch kept: nothing was chosen on "
                "these clips; clip-level scores over the model's 8 outputs")
    split = Split(ravdess, cremad, protocol, {
        "corpus": "RAVDESS", "spec": "ravdess:../shared/data/ravdess_speech",
        "licence": corpus_licence(ravdess), "train_speakers": subjects_of(ravdess),
        "validation_speakers": subjects_of(cremad), "validation_corpus": "CREMA-D (cremad_av)",
        "train_clips": len(ravdess), "validation_clips": len(cremad)})
    augment = AudioAugmentConfig.from_dict(aug) if aug else None
    res = train_speech(split, fcfg, {**BASE_MODEL, **model}, train_cfg, Path(args.runs) / "ship" / name,
                       out=args.out, name=args.name, classes=classes, augment=augment, select_epoch=False)
    card = store.read_card(args.out)
    cv5 = {k: row[k] for k in ("accuracy", "uar", "macro_f1")}
    card["metrics"]["cv5"] = {**cv5, "folds": row["folds"], "protocol": row["protocol"],
                              "configuration": name, "report": "docs/benchmarks/speech_cv.md"}
    card["metrics"]["validation"]["protocol"] = protocol
    atomic_write_json(Path(args.out) / "card.json", card)
    val = res["metrics"]
    report = {"configuration": name, "epochs": epochs, "fold_epochs": epochs_chosen, "cv5": card["metrics"]["cv5"],
              "cremad": {k: val[k] for k in ("n", "accuracy", "uar", "macro_f1", "per_class_recall")},
              "cremad_protocol": protocol, "parameters": card["parameters"], "size_bytes": card["size_bytes"],
              "backend": card["backend"], "train_seconds": card["training"]["seconds"]}
    atomic_write_json(ROOT / "docs" / "benchmarks" / "speech_ship.json", report)
    f = lambda m: f"{m['mean']:.3f} ± {m['std']:.3f}"  # noqa: E731
    lines = ["# Shipped speech model", "", f"Command: `KERAS_BACKEND=jax python benchmarks/speech_ship.py"
             f"{' --row ' + args.row if args.row else ''}`. Configuration `{name}` of "
             "[speech_cv.md](speech_cv.md) (the best mean 5-fold UAR there unless `--row` says otherwise).", "",
             "| set | protocol | clips | accuracy | UAR | macro-F1 |", "|---|---|---:|---:|---:|---:|",
             f"| RAVDESS actors 1-20, 5 folds | {row['protocol']} | 1,200 | {f(cv5['accuracy'])} | {f(cv5['uar'])} | "
             f"{f(cv5['macro_f1'])} |",
             f"| CREMA-D (cross-corpus) | {protocol} | {val['n']} | {val['accuracy']:.3f} | {val['uar']:.3f} | "
             f"{val['macro_f1']:.3f} |", "",
             f"Final model: {card['parameters']:,} parameters, {card['size_bytes'] / 1e6:.1f} MB, trained in "
             f"{card['training']['seconds']:.0f} s ({card['backend']}, 2 shared CPU cores)."]
    atomic_write_text(ROOT / "docs" / "benchmarks" / "speech_ship.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
