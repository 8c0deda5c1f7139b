"""Speech pipeline benchmark -> docs/benchmarks/speech.{json,md}.

Measures, on this machine:

1. feature extraction throughput: clips/s over RAVDESS actors 1-20 (decode FLAC, resample, trim,
   windows, log-mel), all cores (loky processes) and one process, uncached;
2. CPU inference real-time factor of the shipped model (``saved_models/speech``) per backend, after
   warm-up: seconds of compute per second of audio for whole files (decode + features + model, one
   batched model call per clip) and for the model call alone; target <= 0.05;
3. training throughput per backend: windows/s of the shipped architecture on real RAVDESS features,
   measured on the epochs after the first (compile excluded).

Backends run in subprocesses (Keras picks its backend once per process). The load average is
recorded because the machine may be shared: figures are wall-clock.

    .venv/bin/python benchmarks/speech_bench.py [--data ../shared/data/ravdess_speech] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess_speech"


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# ---------------------------------------------------------------- 1. features

def bench_features(data: Path, quick: bool) -> dict:
    from emotion_keras.data.speech import read_ravdess
    from emotion_keras.preprocess.audio import SpeechFeatureConfig, audio_duration, compute_features, mel_basis

    records = read_ravdess(data)
    if quick:
        records = records[::6]
    config = SpeechFeatureConfig()
    mel_basis(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)  # librosa import outside
    seconds = sum(audio_duration(r.path) or 0 for r in records)
    out = {"clips": len(records), "audio_seconds": round(seconds, 1), "config": config.to_dict(),
           "cores": os.cpu_count()}
    compute_features(records[:64], config, workers=os.cpu_count(), progress=False)  # start the worker pool
    for name, workers, subset in (("all_cores", os.cpu_count(), records),
                                  ("one_process", 1, records[: max(60, len(records) // 5)])):
        load = _load()
        t0 = time.perf_counter()
        res = compute_features(subset, config, workers=workers, progress=False)
        dt = time.perf_counter() - t0
        out[name] = {"workers": workers, "clips": len(subset), "seconds": round(dt, 2),
                     "clips_per_second": round(len(subset) / dt, 1), "windows": int(len(res["x"])),
                     "failed": int(len(res["failed"])), "load_before": load}
    return out


# ---------------------------------------------------------------- 2. inference (subprocess)

def worker_infer(data: Path, model_dir: Path, quick: bool) -> dict:
    from emotion_keras.preprocess.audio import audio_duration, load_audio
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    rec = SpeechEmotionRecognizer(model_dir)
    files = sorted(data.glob("Actor_1[7-9]/*.flac")) + sorted(data.glob("Actor_20/*.flac"))
    files = files[::4 if not quick else 12]
    rec.warmup()
    for f in files[:5]:  # warm-up on real clips too (every batch size they need)
        rec.predict_file(f)
    audio_s = sum(audio_duration(f) for f in files)
    load = _load()
    t0 = time.perf_counter()
    for f in files:
        rec.predict_file(f)
    total = time.perf_counter() - t0
    feats = [rec.waveform_inputs(load_audio(f, rec.config.sr), f)[0] for f in files]  # all model inputs
    t0 = time.perf_counter()
    for x in feats:
        rec.predict_inputs(x)
    model_only = time.perf_counter() - t0
    one = {k: v[:1] for k, v in feats[0].items()}
    t0 = time.perf_counter()
    for _ in range(20):
        rec.predict_inputs(one)
    per_window_ms = (time.perf_counter() - t0) / 20 * 1000
    windows = int(sum(len(x["features"]) for x in feats))
    return {"files": len(files), "audio_seconds": round(audio_s, 1), "windows": windows,
            "seconds": round(total, 3), "rtf": round(total / audio_s, 4),
            "model_only_seconds": round(model_only, 3), "rtf_model_only": round(model_only / audio_s, 4),
            "ms_per_window_batch1": round(per_window_ms, 1), "load_before": load,
            "model": str(model_dir), "parameters": int(rec.model.count_params())}


# ---------------------------------------------------------------- 3. training (subprocess)

def worker_train(data: Path, model_dir: Path, quick: bool) -> dict:
    import keras
    import numpy as np

    from emotion_keras.data.speech import read_ravdess
    from emotion_keras.labels import class_list
    from emotion_keras.models import store
    from emotion_keras.models.speech import SOLVED, SpeechModelConfig, adapt, build_speech_model, fit_lda
    from emotion_keras.preprocess.audio import SpeechFeatureConfig, speech_features

    card = store.read_card(model_dir)
    fcfg = SpeechFeatureConfig.from_dict(card["preprocessing"])
    mcfg = SpeechModelConfig.from_dict(card["model_config"])
    records = read_ravdess(data)[::2 if not quick else 6]
    arrays = speech_features(records, fcfg, progress=False)
    classes = class_list([r.label for r in records])
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[records[i].label] for i in arrays["clip"]])
    x = arrays["x"].astype("float32")
    inputs = {"features": x, **({"prosody": arrays["prosody"].astype("float32")} if "prosody" in arrays else {})}
    model = build_speech_model(mcfg, classes, fcfg.input_shape)
    load = _load()
    if mcfg.architecture in SOLVED:  # no epochs: time the closed-form solve (standardisation + heads)
        t0 = time.perf_counter()
        adapt(model, inputs)
        fit_lda(model, inputs, y, mcfg.shrinkage)
        dt = time.perf_counter() - t0
        return {"windows": int(len(x)), "batch_size": None, "epochs": 0, "first_epoch_seconds": round(dt, 2),
                "windows_per_second": round(len(x) / dt, 1), "architecture": mcfg.architecture,
                "parameters": int(model.count_params()), "load_before": load, "solved": True}
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    epochs = 3 if not quick else 2
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(inputs, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[Timer()])
    steady = times[1:]
    return {"windows": int(len(x)), "batch_size": 32, "epochs": epochs,
            "first_epoch_seconds": round(times[0], 2),
            "windows_per_second": round(len(x) * len(steady) / sum(steady), 1),
            "architecture": mcfg.architecture, "parameters": int(model.count_params()), "load_before": load}


def run_worker(kind: str, backend: str, args) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(args.data), "--model", str(args.model)]
    if args.quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def write_docs(report: dict, out: Path) -> None:
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    atomic_write_json(out / "speech.json", report)
    f = report["features"]
    lines = [
        "# Speech benchmark", "",
        f"Measured {report['date']} on {report['machine']['cpus']} CPU cores ({report['machine']['processor']}), "
        f"wall-clock, by `benchmarks/speech_bench.py`. The machine was shared with other jobs: load "
        f"average {report['machine']['load_start']} at the start and {report['machine']['load_end']} at the "
        "end, so these are conservative figures.", "",
        "## Feature extraction (RAVDESS actors 1-20)", "",
        f"{f['clips']:,} FLAC clips ({f['audio_seconds']:,} s of audio): decode, resample to 16 kHz, trim, "
        f"3 s windows, {f['config']['n_mels']}-band log-mel (hop {f['config']['hop_length']}), uncached.", "",
        "| processes | clips | seconds | clips/s |", "|---|---:|---:|---:|",
    ]
    for key in ("all_cores", "one_process"):
        r = f[key]
        lines.append(f"| {r['workers']} | {r['clips']:,} | {r['seconds']} | {r['clips_per_second']} |")
    lines += ["", "## CPU inference real-time factor (shipped model, after warm-up)", "",
              "Whole files (decode + features + one batched model call per clip) on RAVDESS actors 17-20; "
              "RTF = compute seconds / audio seconds (target <= 0.05).", "",
              "| backend | files | audio s | RTF (file) | RTF (model only) | ms per window (batch 1) |",
              "|---|---:|---:|---:|---:|---:|"]
    for b, r in report["inference"].items():
        if "error" in r:
            lines.append(f"| {b} | error: {r['error']} | | | | |")
        else:
            lines.append(f"| {b} | {r['files']} | {r['audio_seconds']} | {r['rtf']} | {r['rtf_model_only']} | "
                         f"{r['ms_per_window_batch1']} |")
    lines += ["", "## Training throughput (shipped architecture, real RAVDESS features, batch 32; a solved "
              "model: its closed-form solve, 'first epoch' = the whole solve)", "",
              "| backend | architecture | params | windows | first epoch s (compile) | windows/s after |",
              "|---|---|---:|---:|---:|---:|"]
    for b, r in report["training"].items():
        if "error" in r:
            lines.append(f"| {b} | error: {r['error']} | | | | |")
        else:
            lines.append(f"| {b} | {r['architecture']} | {r['parameters']:,} | {r['windows']:,} | "
                         f"{r['first_epoch_seconds']} | {r['windows_per_second']} |")
    if report.get("model_card"):
        c = report["model_card"]
        lines += ["", "## Shipped model", "",
                  f"`saved_models/speech` ({c['name']}, {c['architecture']}, {c['parameters']:,} parameters, "
                  f"{c['size_bytes'] / 1e6:.1f} MB): accuracy {c['accuracy']:.3f}, UAR {c['uar']:.3f}, "
                  f"macro-F1 {c['macro_f1']:.3f}; protocol: {c['protocol']}."]
    atomic_write_text(out / "speech.md", "\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model", type=Path, default=ROOT / "saved_models" / "speech")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    p.add_argument("--backends", default="tensorflow,jax")
    p.add_argument("--quick", action="store_true", help="subsets, for a smoke run")
    p.add_argument("--worker", choices=("infer", "train"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = worker_infer if args.worker == "infer" else worker_train
        print(json.dumps(fn(args.data, args.model, args.quick)))
        return 0
    import datetime as dt

    from emotion_keras.models.store import read_card, versions

    report = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "load_start": _load()},
              "versions": versions(), "quick": args.quick}
    print("features ...", file=sys.stderr)
    report["features"] = bench_features(args.data, args.quick)
    report["inference"], report["training"] = {}, {}
    for b in args.backends.split(","):
        print(f"inference {b} ...", file=sys.stderr)
        report["inference"][b] = run_worker("infer", b, args)
        print(f"training {b} ...", file=sys.stderr)
        report["training"][b] = run_worker("train", b, args)
    card = read_card(args.model)
    m = card["metrics"].get("validation") or card["metrics"]["cv5"]  # a model solved on all speakers: its folds
    report["model_card"] = {"name": card["name"], "architecture": card["model_config"]["architecture"],
                            "parameters": card["parameters"], "size_bytes": card["size_bytes"],
                            **{k: m[k] for k in ("accuracy", "uar", "macro_f1", "protocol")}}
    report["machine"]["load_end"] = _load()
    write_docs(report, args.out)
    print((args.out / "speech.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
