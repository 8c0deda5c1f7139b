"""The RAVDESS paired benchmark: face-only, speech-only, late fusion and the fusion model, speaker-independent.

Data: ``ravdess_face_au/au.csv`` (the face side of each RAVDESS clip as 35 OpenFace action-unit
features: clip means of 17 intensities and 18 presences) paired with the same clip's audio in
``ravdess_speech`` (16 kHz FLAC), actors 1-20, 8 classes.

Protocol (written next to every number):
- 5 folds over actors (1-4, 5-8, ..., 17-20), each held out once; nothing learned ever sees a held-out
  actor: within each fold, 4 of the 16 training actors (chosen by a seeded grouped split) are an inner
  validation set for early stopping and for tuning the late-fusion weight, and the models train on the
  other 12;
- speech side: utterance-level acoustic functionals (mean/std/percentiles of MFCC + deltas, log-mel,
  energy and zero-crossing rate over the trimmed clip) computed by fixed signal processing, so no speech
  encoder has seen any actor; the heads on top are trained within the fold;
- face-only = MLP on the AUs; speech-only = MLP on the functionals; late fusion = weighted average of
  those two models' probabilities, weight tuned on the inner validation actors; fusion model =
  ``build_fusion_model`` with the AU vector as face descriptor and the functionals as speech input,
  trained jointly; fusion (embeddings) = a new head on the frozen face-only and speech-only models'
  ``"embedding"`` outputs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

FUNCTIONALS_VERSION = 1
METHODS = ("face_only", "speech_only", "late_fusion", "fusion", "fusion_embeddings")


# ---------------------------------------------------------------- speech functionals

def _functionals_one(path: str) -> np.ndarray:
    from emotion_keras.preprocess.audio import SpeechFeatureConfig, load_audio, speech_bounds

    mfcc_cfg = SpeechFeatureConfig(feature="mfcc", n_mfcc=40, deltas=True, normalize="none")
    mel_cfg = SpeechFeatureConfig(feature="logmel", n_mels=64, normalize="none")
    y = load_audio(path, 16000)
    bounds = speech_bounds(y, mfcc_cfg)
    if bounds is not None:
        y = y[bounds[0]:bounds[1]]
    return speech_functionals(y, 16000, mfcc_cfg, mel_cfg)


def speech_functionals(y: np.ndarray, sr: int = 16000, mfcc_cfg=None, mel_cfg=None) -> np.ndarray:
    """A fixed-length utterance descriptor (no learned parameters): statistics over frames of MFCC +
    deltas, log-mel, frame energy and zero-crossing rate, plus the duration."""
    from emotion_keras.preprocess.audio import SpeechFeatureConfig, spectral_features

    mfcc_cfg = mfcc_cfg or SpeechFeatureConfig(feature="mfcc", n_mfcc=40, deltas=True, normalize="none")
    mel_cfg = mel_cfg or SpeechFeatureConfig(feature="logmel", n_mels=64, normalize="none")
    mfcc = spectral_features(y, mfcc_cfg)
    mel = spectral_features(y, mel_cfg)
    frames = np.lib.stride_tricks.sliding_window_view(
        np.pad(y, (0, max(0, 400 - len(y)))), 400)[::160]
    energy = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-10)
    zcr = np.mean(np.abs(np.diff(np.sign(frames), axis=1)) > 0, axis=1)
    parts = [mfcc.mean(0), mfcc.std(0), np.percentile(mfcc[:, :13], [10, 50, 90], axis=0).ravel(),
             mel.mean(0), mel.std(0)]
    for v in (energy, zcr):
        parts.append(np.asarray([v.mean(), v.std(), *np.percentile(v, [10, 50, 90])]))
    parts.append(np.asarray([len(y) / sr]))
    return np.concatenate(parts).astype(np.float32)


def compute_functionals(records, progress: bool = True) -> np.ndarray:
    """Functionals for every record (cached by records fingerprint)."""
    from tqdm.auto import tqdm

    from emotion_keras.data.cache import cache_key, cached
    from emotion_keras.data.records import fingerprint

    def compute():
        from joblib import Parallel, delayed

        paths = [str(r.path) for r in records]
        run = Parallel(n_jobs=2, backend="loky", return_as="generator", batch_size=16)
        out = []
        for x in tqdm(run(delayed(_functionals_one)(p) for p in paths), total=len(paths),
                      desc="speech functionals", unit="clip", disable=not progress):
            out.append(x)
        return {"x": np.stack(out)}

    key = cache_key("speech-functionals", FUNCTIONALS_VERSION, fingerprint(records))
    return cached("functionals", key, compute)["x"]


# ---------------------------------------------------------------- training helpers

@dataclasses.dataclass
class BenchSettings:
    folds: int = 5
    epochs: int = 80
    batch_size: int = 32
    learning_rate: float = 2e-3
    patience: int = 15
    inner_val: float = 0.25
    seed: int = 0
    max_folds: int | None = None  # run only the first N folds (tests)


def _train(config, classes, x_tr, y_tr, x_va, y_va, settings: BenchSettings, seed: int):
    import keras

    from emotion_keras.config import TrainConfig
    from emotion_keras.models.fusion import adapt, build_fusion_model
    from emotion_keras.train import fit

    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = build_fusion_model(config, classes)
    adapt(model, x_tr)
    tc = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                     learning_rate=settings.learning_rate, early_stopping=settings.patience,
                     label_smoothing=0.1, warmup_epochs=2, mixed_precision="off", seed=seed, verbose=0)
    with tempfile.TemporaryDirectory() as run_dir:
        result = fit(model, x_tr, y_tr, x_va, y_va, classes, tc, run_dir)
    return model, result


def _predict(model, x):
    return model.predict(x, batch_size=256, verbose=0)


def run_benchmark(au_csv: str | Path, speech_root: str | Path | None = None,
                  settings: BenchSettings | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every method over the folds; returns the report dict (per fold and mean metrics)."""
    import keras

    from emotion_keras.data.records import group_kfold, group_split, subjects_of
    from emotion_keras.data.video import read_ravdess_au
    from emotion_keras.evaluate import metrics
    from emotion_keras.labels import class_list, to_indices
    from emotion_keras.models.fusion import FusionConfig, embedding_model, late_fusion, tune_late_weight

    settings = settings or BenchSettings()
    start = time.perf_counter()
    records, au, au_cols = read_ravdess_au(au_csv, speech_root)
    speech = compute_functionals(records, progress)
    classes = class_list([r.label for r in records])
    y_all = to_indices([r.label for r in records], classes)
    index = {id(r): i for i, r in enumerate(records)}
    feat_seconds = time.perf_counter() - start

    face_cfg = FusionConfig(modalities=("face",), face_input="descriptor", face_dim=au.shape[1],
                            projection=64, hidden=128, embedding_dim=64, dropout=0.3)
    speech_cfg = FusionConfig(modalities=("speech",), speech_dim=speech.shape[1], projection=128,
                              hidden=128, embedding_dim=64, dropout=0.4)
    fusion_cfg = FusionConfig(modalities=("face", "speech"), face_input="descriptor", face_dim=au.shape[1],
                              speech_dim=speech.shape[1], projection=64, hidden=128, embedding_dim=64,
                              dropout=0.4, modality_dropout=0.2)
    emb_cfg = FusionConfig(modalities=("face", "speech"), face_input="descriptor", face_dim=64,
                           speech_dim=64, projection=32, hidden=64, embedding_dim=32, dropout=0.3,
                           modality_dropout=0.2)

    folds = group_kfold(records, k=settings.folds)
    if settings.max_folds:
        folds = folds[:settings.max_folds]
    per_fold = {m: [] for m in METHODS}
    fold_info = []
    for f, (train, test) in enumerate(folds):
        t0 = time.perf_counter()
        inner_tr, inner_va = group_split(train, test_size=settings.inner_val, seed=settings.seed + f)
        idx = {name: np.asarray([index[id(r)] for r in rs]) for name, rs in
               (("tr", inner_tr), ("va", inner_va), ("te", test))}
        X = {k: {"face": au[i], "speech": speech[i]} for k, i in idx.items()}
        Y = {k: y_all[i] for k, i in idx.items()}
        seed = settings.seed + 100 * f

        face_model, _ = _train(face_cfg, classes, {"face": X["tr"]["face"]}, Y["tr"],
                               {"face": X["va"]["face"]}, Y["va"], settings, seed)
        p_face = {k: _predict(face_model, {"face": X[k]["face"]}) for k in ("va", "te")}
        speech_model, _ = _train(speech_cfg, classes, {"speech": X["tr"]["speech"]}, Y["tr"],
                                 {"speech": X["va"]["speech"]}, Y["va"], settings, seed + 1)
        p_speech = {k: _predict(speech_model, {"speech": X[k]["speech"]}) for k in ("va", "te")}
        weight, _ = tune_late_weight(p_face["va"], p_speech["va"], Y["va"], classes)

        # a new head on the frozen unimodal models' embeddings
        fe = embedding_model(face_model)
        se = embedding_model(speech_model)
        E = {k: {"face": _predict(fe, {"face": X[k]["face"]}), "speech": _predict(se, {"speech": X[k]["speech"]})}
             for k in ("tr", "va", "te")}
        emb_model, _ = _train(emb_cfg, classes, E["tr"], Y["tr"], E["va"], Y["va"], settings, seed + 2)
        fusion_model, _ = _train(fusion_cfg, classes, X["tr"], Y["tr"], X["va"], Y["va"], settings, seed + 3)

        preds = {
            "face_only": p_face["te"], "speech_only": p_speech["te"],
            "late_fusion": late_fusion(p_face["te"], p_speech["te"], weight),
            "fusion": _predict(fusion_model, X["te"]),
            "fusion_embeddings": _predict(emb_model, E["te"]),
        }
        for m, p in preds.items():
            per_fold[m].append(metrics(Y["te"], p, classes))
        fold_info.append({"fold": f + 1, "test_actors": subjects_of(test),
                          "inner_validation_actors": subjects_of(inner_va),
                          "train_actors": subjects_of(inner_tr), "late_fusion_face_weight": weight,
                          "seconds": round(time.perf_counter() - t0, 1)})
        if progress:
            print(f"fold {f + 1}/{len(folds)} actors {subjects_of(test)}: " + ", ".join(
                f"{m} {per_fold[m][-1]['accuracy']:.3f}" for m in METHODS), flush=True)
        keras.utils.clear_session()

    summary = {}
    for m in METHODS:
        summary[m] = {}
        for key in ("accuracy", "uar", "macro_f1"):
            vals = [r[key] for r in per_fold[m]]
            summary[m][key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                               "per_fold": [round(v, 4) for v in vals]}
        cm = np.sum([np.asarray(r["confusion_matrix"]) for r in per_fold[m]], axis=0)
        summary[m]["confusion_matrix"] = cm.tolist()
    return {
        "benchmark": "RAVDESS paired (face action units + speech), speaker-independent",
        "protocol": PROTOCOL.format(k=settings.folds, n=len(records)),
        "classes": classes,
        "n_clips": len(records),
        "face_features": f"{len(au_cols)} OpenFace action units (clip means): {', '.join(au_cols)}",
        "speech_features": f"{speech.shape[1]} utterance functionals (fixed signal processing, "
                           "emotion_keras.fusion_benchmark.speech_functionals)",
        "settings": dataclasses.asdict(settings),
        "model_configs": {"face_only": face_cfg.to_dict(), "speech_only": speech_cfg.to_dict(),
                          "fusion": fusion_cfg.to_dict(), "fusion_embeddings": emb_cfg.to_dict()},
        "folds": fold_info,
        "results": summary,
        "feature_seconds": round(feat_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "backend": keras.backend.backend(),
    }


PROTOCOL = ("RAVDESS actors 1-20, {n} clips, 8 classes; {k} folds over actors (1-4, 5-8, ...), each "
            "held out once (speaker-independent); within each fold 4 of the 16 training actors are an "
            "inner validation set (early stopping, late-fusion weight) and models train on the other 12; "
            "speech features are fixed functionals (no encoder has seen any actor); mean and std over folds")


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """``fusion.json`` and ``fusion.md`` (table with protocol) in ``out_dir``."""
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    names = {"face_only": "face only (AU MLP)", "speech_only": "speech only (functionals MLP)",
             "late_fusion": "late fusion (weighted average)", "fusion": "fusion model (joint)",
             "fusion_embeddings": "fusion head on frozen unimodal embeddings"}
    res = report["results"]
    lines = [
        "# Fusion benchmark: RAVDESS face action units + speech",
        "",
        f"Protocol: {report['protocol']}.",
        "",
        f"Face: {report['face_features']}.",
        f"Speech: {report['speech_features']}.",
        "",
        "| method | accuracy | UAR | macro-F1 | accuracy per fold |",
        "|---|---|---|---|---|",
    ]
    for m, label in names.items():
        r = res[m]
        lines.append(f"| {label} | {r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f} | "
                     f"{r['uar']['mean']:.3f} ± {r['uar']['std']:.3f} | "
                     f"{r['macro_f1']['mean']:.3f} ± {r['macro_f1']['std']:.3f} | "
                     f"{' '.join(f'{v:.3f}' for v in r['accuracy']['per_fold'])} |")
    lines += ["", "Folds (test actors, inner validation actors, tuned late-fusion face weight):", ""]
    for f in report["folds"]:
        lines.append(f"- fold {f['fold']}: test {', '.join(f['test_actors'])}; inner validation "
                     f"{', '.join(f['inner_validation_actors'])}; face weight {f['late_fusion_face_weight']:.2f}")
    lines += ["", "Per-fold accuracy differences between methods are paired (same test actors in each "
                  "fold): compare methods fold by fold, not only by mean.", "",
              f"Backend {report['backend']}, CPU only; speech features {report['feature_seconds']} s (0 when "
              f"cached), total {report['total_seconds']} s wall time (on the project's 2-core machine, shared "
              "with other jobs while it ran). Reproduce: `python benchmarks/fusion_bench.py` or "
              "`emotion-keras fusion benchmark`.", ""]
    paths = {"json": atomic_write_json(out_dir / "fusion.json", report),
             "md": atomic_write_text(out_dir / "fusion.md", "\n".join(lines))}
    return paths


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2)
