"""Cross-corpus check: RAVDESS-trained speech models on CREMA-D -> docs/benchmarks/speech_crosscorpus.{json,md}.

Protocol: the 12 CREMA-D clips in ``../shared/data/cremad_av/resampled`` (actors 1001-1002, English
sentences, 6 classes: angry, disgust, fear, happy, neutral, sad, all shared with RAVDESS); nothing
is chosen on them. Each row of ``docs/benchmarks/speech_cv.json`` is scored as the mean of its 5 fold
models' probabilities (each trained on 12 RAVDESS actors, epoch chosen on 4 others), next to its
RAVDESS 5-fold figure; the shipped model is scored alone (and, speaker-normalised, also with each
clip standardised alone, next to its per-file 5-fold figure). Speaker-normalised models see each
CREMA-D speaker standardised with their own clips, as in the cross-validation. Twelve clips make this an
indication (one clip is 8 points), not a benchmark.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/speech_crosscorpus.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CREMAD = ROOT.parent / "shared" / "data" / "cremad_av" / "resampled"


def score(model_dirs, records, per="speaker"):
    from emotion_keras.pipelines.speech import scoring_windows
    from emotion_keras.models import store
    from emotion_keras.models.io import model_feed
    from emotion_keras.preprocess.audio import SpeechFeatureConfig

    probs, ws, classes = [], None, None
    for d in model_dirs:
        net, card = store.load(d)
        classes = card["classes"]
        cfg = SpeechFeatureConfig.from_dict(card.get("preprocessing") or {})
        ws = scoring_windows([r for r in records if r.label in classes], cfg, progress=False, per=per,
                             prior=card.get("speaker_norm_prior"))
        probs.append(np.asarray(net.predict(model_feed(net, ws.inputs()), batch_size=64, verbose=0)))
    return ws.clip_metrics(np.mean(probs, 0), classes)


def main():
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.models import store
    from emotion_keras.pipelines.splits import read_speech_records

    records = read_speech_records(f"cremad:{CREMAD}")
    cv = json.loads((ROOT / "docs" / "benchmarks" / "speech_cv.json").read_text())
    out_json = ROOT / "docs" / "benchmarks" / "speech_crosscorpus.json"
    earlier = {r["name"]: r for r in json.loads(out_json.read_text())["rows"]} if out_json.exists() else {}
    rows = []
    shipped = ROOT / "saved_models" / "speech"
    card = json.loads((shipped / "card.json").read_text())
    m = score([shipped], records)
    rav = card["metrics"].get("cv5") or card["metrics"]["validation"]
    if "accuracy_std" in rav:  # the card's 5-fold figure: mean and std
        rav = {**rav, **{k: {"mean": rav[k], "std": rav[f"{k}_std"]} for k in ("accuracy", "uar")}}
    rows.append({"name": f"shipped ({card['name']})", "cremad": m, "ravdess": rav,
                 "ravdess_protocol": rav.get("protocol")})
    protocol = (f"CREMA-D actors 1001-1002 ({m['n']} clips), the 6 classes CREMA-D shares with RAVDESS, scored over "
                "the model's outputs; none of these speakers in training; nothing chosen on them; indicative only "
                "(benchmarks/speech_crosscorpus.py)")
    found = {"cross_corpus_cremad": {**m, "protocol": protocol}}
    if card["preprocessing"].get("speaker_norm", "none") != "none":
        found["cross_corpus_cremad"]["protocol"] += "; each speaker standardised with their own 6 clips (enrolment)"
        alone = score([shipped], records, per="clip")
        found["cross_corpus_cremad_per_clip"] = {**alone, "protocol": protocol + "; each clip standardised alone"}
        per_file = rav.get("per_file") or {}
        rows.append({"name": f"shipped ({card['name']}), each clip normalised alone", "cremad": alone,
                     "ravdess": {k: per_file.get(k, rav[k]) for k in ("accuracy", "uar")},
                     "ravdess_protocol": rav.get("protocol")})
    store.update_card(shipped, metrics={**card["metrics"], **found})
    for name, row in earlier.items():  # a model shipped before keeps its row, under its own name
        if name.startswith("shipped (") and name != rows[0]["name"] and not name.startswith(rows[0]["name"]):
            rows.append({**row, "name": "previously " + name})
        elif name.startswith("previously shipped"):
            rows.append(row)
    for r in cv["rows"]:
        folds = sorted((ROOT / "runs" / "speech" / "cv_bench" / r["name"]).glob("fold*/model.keras"))
        if len(folds) != 5:  # fold models not on this machine: keep the figure measured earlier, if any
            kept = earlier.get(r["name"] + " (5 fold models, mean)")
            if kept:
                rows.append(kept)
            continue
        rows.append({"name": r["name"] + " (5 fold models, mean)", "cremad": score([f.parent for f in folds], records),
                     "ravdess": {k: r[k] for k in ("accuracy", "uar")}, "ravdess_protocol": r["protocol"]})
    atomic_write_json(out_json,
                      {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "rows": rows})

    def fmt(v):
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if isinstance(v, dict) else f"{v:.3f}"

    lines = ["# Speech across corpora: RAVDESS-trained models on CREMA-D", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Command: `KERAS_BACKEND=jax python benchmarks/speech_crosscorpus.py`.", "",
             "| model | RAVDESS accuracy | RAVDESS UAR | CREMA-D clips | CREMA-D accuracy | CREMA-D UAR |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["cremad"]
        lines.append(f"| {r['name']} | {fmt(r['ravdess']['accuracy'])} | {fmt(r['ravdess']['uar'])} | {c['n']} | "
                     f"{c['accuracy']:.3f} | {c['uar']:.3f} |")
    shipped_rav = ("its configuration's 5-fold figure from its card (`metrics.cv5`, the same folds and "
                   "protocol as the rows)" if "cv5" in card["metrics"] else
                   "its card's (one held-out fold of 4 actors, epoch chosen on them: optimistic)")
    lines += ["", f"RAVDESS protocols: the shipped model's figure is {shipped_rav}; the rows' figures are the "
              "5-fold means of [speech_cv.md](speech_cv.md)."]
    atomic_write_text(ROOT / "docs" / "benchmarks" / "speech_crosscorpus.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
