"""Face pipeline benchmark -> docs/benchmarks/face.{json,md}.

Protocol:

* **Latency per photo** (per backend): ``FaceEmotionRecognizer().predict(rgb)`` with the shipped model
  (``saved_models/face``) on a 640x480 photo with one face (``samples/face.jpg``, a CREMA-D frame,
  scaled from 480x360): detection (numpy MTCNN) + alignment + classification, end to end; also the
  detection alone and the classification of the aligned crop alone (``predict_on_batch`` of one
  face). 3 warm-up calls, then ``--runs`` timed calls: median and 90th percentile wall time and the
  median process CPU time (the machine is shared: wall time includes waiting for a core, so the
  1-minute load average is recorded next to it).
* **Preprocessing throughput** (no Keras): ``prepare_faces`` into an empty cache folder on all of
  FER2013 here (Training + PublicTest, 32,298 48x48 JPEGs: decode + resize, 2 threads) and on all
  370 ``wild_faces`` photos (load + MTCNN + alignment + geometry), wall time including writing the
  cache.
* **Training throughput** (per backend): the shipped model's config (``model_config`` on its card,
  augmentation included; its training config without EMA) built fresh and compiled as ``train.fit``
  does, on ``--train-samples`` real FER2013 Training faces, batch 64: one untimed epoch (compilation),
  then one timed epoch: samples/s.

Each backend runs in its own subprocess with ``KERAS_BACKEND`` set.

    python benchmarks/face_bench.py [--data ../shared/data] [--runs 30] [--backends tensorflow,jax]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))
SAMPLE = ROOT / "samples" / "face.jpg"
MODEL_DIR = ROOT / "saved_models" / "face"


def photo_640x480():
    import cv2

    bgr = cv2.imread(str(SAMPLE))
    return cv2.cvtColor(cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)


def timed(fn, runs: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    wall.sort()
    return {"median_ms": round(statistics.median(wall), 1),
            "p90_ms": round(wall[min(len(wall) - 1, int(0.9 * len(wall)))], 1),
            "median_cpu_ms": round(statistics.median(cpu), 1), "runs": runs}


def worker(backend: str, data: Path, runs: int, train_samples: int) -> dict:
    """Runs inside a subprocess whose KERAS_BACKEND is ``backend``."""
    import keras

    from emotion_keras.config import TrainConfig
    from emotion_keras.data.faces import read_faces
    from emotion_keras.models.card import member_config
    from emotion_keras.models.face import FaceModelConfig, build_face_model
    from emotion_keras.preprocess.faces import FacePrepConfig, face_inputs, prepare_faces
    from emotion_keras.models.io import model_feed
    from emotion_keras.recognizers.face import FaceEmotionRecognizer
    from emotion_keras.train import compile_model

    assert keras.backend.backend() == backend
    out: dict = {"backend": backend}
    rec = FaceEmotionRecognizer(MODEL_DIR)
    rgb = photo_640x480()
    faces = rec.predict(rgb)
    out["faces_found"] = len(faces)
    out["latency_end_to_end"] = timed(lambda: rec.predict(rgb), runs)
    out["latency_detection"] = timed(lambda: rec.detector.detect(rgb), runs)
    detected = rec.detector.detect(rgb)[:1]
    crops, _ = face_inputs(rgb, detected, rec.prep)
    out["latency_classification"] = timed(
        lambda: rec.model.predict_on_batch(model_feed(rec.model, {"image": crops})), runs)

    # Training throughput of the shipped configuration on real FER2013 faces.
    records = [r for r in read_faces(f"fer2013:{data / 'fer2013'}") if r.split == "train"]
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(records), size=min(train_samples, len(records)), replace=False))
    arrays = prepare_faces([records[i] for i in pick], FacePrepConfig.from_dict(rec.card["preprocessing"]),
                           progress=False)
    classes = rec.classes
    y = keras.utils.to_categorical(arrays.targets(classes), len(classes))
    cfg = FaceModelConfig.from_dict(member_config(rec.card))  # an ensemble's trains like one member
    # Without EMA: fitting an EMA optimizer outside train.fit's swap callbacks fails under JAX
    # (an uninitialised variable), and EMA's per-step cost is one weight average.
    train = TrainConfig.from_dict(rec.card.get("train_config") or {}).replace(ema=0.0, time_budget=0.0)
    model = build_face_model(cfg, classes)
    batch = 64
    compile_model(model, train.replace(epochs=2, batch_size=batch), int(np.ceil(len(y) / batch)))
    x = model_feed(model, arrays.inputs())
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out["training"] = {"samples": len(y), "batch_size": batch, "first_epoch_seconds": round(first, 1),
                       "epoch_seconds": round(wall, 1), "samples_per_second": round(len(y) / wall, 1),
                       "cpu_seconds": round(cpu, 1), "parameters": int(model.count_params())}
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    return out


def preprocessing(data: Path) -> dict:
    from emotion_keras.data.faces import read_faces
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        fer = read_faces(f"fer2013:{data / 'fer2013'}")
        t0 = time.perf_counter()
        arrays = prepare_faces(fer, FacePrepConfig(), cache_dir=tmp, progress=False)
        dt = time.perf_counter() - t0
        out["fer2013"] = {"images": len(fer), "faces": len(arrays), "seconds": round(dt, 1),
                          "images_per_second": round(len(fer) / dt, 1)}
        t0 = time.perf_counter()
        cached = prepare_faces(fer, FacePrepConfig(), cache_dir=tmp, progress=False)
        out["fer2013"]["cached_load_seconds"] = round(time.perf_counter() - t0, 2)
        assert cached.from_cache
        wild = read_faces(data / "wild_faces")
        t0 = time.perf_counter()
        arrays = prepare_faces(wild, FacePrepConfig(geometry=True), cache_dir=tmp, progress=False)
        dt = time.perf_counter() - t0
        out["wild_faces"] = {"images": len(wild), "faces": len(arrays), "no_face": len(arrays.no_face),
                             "treated_as_crops": int((~arrays.geometry_valid).sum()),
                             "seconds": round(dt, 1), "images_per_second": round(len(wild) / dt, 2)}
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    return out


def markdown(res: dict) -> str:
    card = res["model"]
    lines = [
        "# Face pipeline benchmark", "",
        f"Machine: {res['machine']['cpus']} CPU cores ({res['machine']['processor']}), shared with other "
        "jobs; wall times include waiting for a core (1-minute load average next to each figure). "
        f"Date {res['date']}. Produced by `benchmarks/face_bench.py`.", "",
        f"Model: `saved_models/face` ({card['name']}, {card['parameters']:,} parameters, "
        f"{card['size_bytes'] / 1e6:.1f} MB).", "",
        "## Latency per 640x480 photo with one face", "",
        f"`FaceEmotionRecognizer.predict` on `samples/face.jpg` scaled to 640x480; 3 warm-up calls, "
        f"then {res['runs']} timed calls. Target: end to end <= 150 ms on 2 cores.", "",
        "| backend | end to end median (p90) | CPU median | detection median | classification median | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b in res["backends"]:
        if "error" in b:
            lines.append(f"| {b['backend']} | error: {b['error'][:80]} | | | | |")
            continue
        e, d, c = b["latency_end_to_end"], b["latency_detection"], b["latency_classification"]
        lines.append(f"| {b['backend']} | {e['median_ms']} ms ({e['p90_ms']} ms) | {e['median_cpu_ms']} ms | "
                     f"{d['median_ms']} ms | {c['median_ms']} ms | {b['load_average_1min']} |")
    p = res["preprocessing"]
    lines += [
        "", "## Preprocessing throughput (empty cache)", "",
        "| data | images | faces | seconds | images/s |", "|---|---:|---:|---:|---:|",
        f"| FER2013 Training + PublicTest (decode + resize, 2 threads) | {p['fer2013']['images']:,} | "
        f"{p['fer2013']['faces']:,} | {p['fer2013']['seconds']} | {p['fer2013']['images_per_second']:,} |",
        f"| wild_faces photos (MTCNN + alignment + geometry) | {p['wild_faces']['images']} | "
        f"{p['wild_faces']['faces']} ({p['wild_faces']['no_face']} without a face, "
        f"{p['wild_faces']['treated_as_crops']} small images taken as crops) | {p['wild_faces']['seconds']} | "
        f"{p['wild_faces']['images_per_second']} |",
        "", f"Loading the FER2013 arrays again from the cache: {p['fer2013']['cached_load_seconds']} s. "
        f"Load average {p['load_average_1min']}.",
        "", "## Training throughput of the shipped configuration", "",
        "Fresh model from the card's `model_config` (augmentation on), AdamW + cosine as in `train.fit`, "
        "batch 64, real FER2013 Training faces; one epoch to compile, then one timed epoch.", "",
        "| backend | samples | first epoch s | timed epoch s | samples/s | load |", "|---|---:|---:|---:|---:|---:|",
    ]
    for b in res["backends"]:
        if "error" in b:
            continue
        t = b["training"]
        lines.append(f"| {b['backend']} | {t['samples']:,} | {t['first_epoch_seconds']} | {t['epoch_seconds']} | "
                     f"{t['samples_per_second']} | {b['load_average_1min']} |")
    m = card["metrics"]["validation"]
    lines += ["", "## Accuracy of the shipped model (from its card)", "",
              f"Accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f}, macro-F1 {m['macro_f1']:.3f}: {m['protocol']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--train-samples", type=int, default=2048)
    ap.add_argument("--backends", default="tensorflow,jax")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.data, args.runs, args.train_samples)))
        return 0

    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.models.store import read_card

    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": args.runs,
           "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                       "python": platform.python_version()},
           "model": {k: v for k, v in read_card(MODEL_DIR).items() if k != "history"}}
    print("preprocessing throughput ...", file=sys.stderr)
    res["preprocessing"] = preprocessing(args.data)
    res["backends"] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        print(f"{backend}: latency and training throughput ...", file=sys.stderr)
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with tempfile.TemporaryDirectory() as cache:
            env["EMOTION_KERAS_CACHE"] = cache
            proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--data", str(args.data),
                                   "--runs", str(args.runs), "--train-samples", str(args.train_samples)],
                                  env=env, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            res["backends"].append({"backend": backend, "error": proc.stderr.strip().splitlines()[-1:] or ["?"]})
            print(proc.stderr[-2000:], file=sys.stderr)
        else:
            res["backends"].append(json.loads(line[len("RESULT "):]))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "face.json", res)
    atomic_write_text(args.out / "face.md", markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
