"""The face GPU job: train the shipped face configuration and a small search around it, on one CUDA
GPU with the JAX backend, in a fixed wall-clock budget (default 11 minutes, compilation included).

Two steps, because the GPU machine sees only what is carried to it (no corpora, 64 MiB):

1. ``pack`` (here, CPU): FER+ training faces as uint8 with their vote distributions (float16), FER+
   Valid with majority labels and FER2013 PublicTest with the original labels, in one compressed
   ``.npz`` (about 45 MB for all of FER+).
2. ``run`` (there): every configuration trains through ``train.fit`` with a ``time_budget`` share
   (bf16 on the GPU, XLA), is scored on FER+ Valid (majority labels, the selection set) and FER2013
   PublicTest (original labels), both with ten-crop TTA; the base configuration and the best one are
   saved with their cards under ``--out``, with ``report.json``, ``report.md`` and the per-model
   training logs. At most 8 files come back from the device, so only those are kept.

::

    python tuning/gpu_face.py pack --ferplus ../shared/data/ferplus --fer2013 ../shared/data/fer2013 \\
        --out .gpu/faces.npz
    KERAS_BACKEND=jax python tuning/gpu_face.py run --arrays .gpu/faces.npz --out "$OUT" --minutes 11

``--tiny`` runs the same code on a few hundred faces with width-4 models (the CPU test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
# The shipped configuration (saved_models/face/card.json's recipe) and its neighbours.
BASE_MODEL = {"backbone": "vgg", "width": 16, "depth": 4, "attention": True, "crop": 40, "max_shift": 0.1,
              "erase": 0.25}
BASE_TRAIN = {"learning_rate": 0.002, "label_smoothing": 0.05, "class_weights": False, "early_stopping": 0,
              "monitor": "val_accuracy", "batch_size": 128, "ema": 0.999}
SEARCH = [
    ("base", {}, {}),
    ("width32", {"width": 32}, {}),
    ("width48-mixup", {"width": 48}, {"mixup": 0.2}),
    ("width32-sgd", {"width": 32}, {"optimizer": "sgd", "learning_rate": 0.05, "mixup": 0.2}),
]


# ---------------------------------------------------------------- pack (CPU side)

def pack(ferplus: str, fer2013: str, out: Path, limit: int | None = None) -> Path:
    """Write the compact arrays the GPU job reads (uint8 faces, float16 targets)."""
    from emotion_keras.pipelines.splits import load_face_split
    from emotion_keras.data.cache import save_arrays
    from emotion_keras.data.faces import read_faces
    from emotion_keras.data.ferplus import soft_targets
    from emotion_keras.labels import to_indices
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    prep = FacePrepConfig()
    split = load_face_split(f"ferplus-probability:{ferplus}", limit=limit, val_limit=limit, classes=CLASSES)
    tr = prepare_faces(split.train, prep)
    va = prepare_faces(split.val, prep)
    y_tr = soft_targets(split.train, tr.names, CLASSES)
    arrays = {"x_train": tr.images, "y_train": y_tr.astype(np.float16), "x_val": va.images,
              "y_val": to_indices(va.labels, CLASSES).astype(np.int8)}
    pub = [r for r in read_faces(f"fer2013:{fer2013}") if r.split == "validation" and r.label in CLASSES]
    if limit:
        pub = pub[:limit]
    pt = prepare_faces(pub, prep)
    arrays.update(x_test=pt.images, y_test=to_indices(pt.labels, CLASSES).astype(np.int8))
    meta = {"classes": CLASSES, "prep": prep.to_dict(), "train_protocol": split.protocol,
            "data": split.data, "test": f"FER2013 PublicTest ({len(pt):,} faces, original labels)"}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_arrays(out, arrays)
    print(f"packed {len(tr):,} training, {len(va):,} validation, {len(pt):,} test faces into {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)")
    return out


# ---------------------------------------------------------------- run (GPU side)

def _score(model, x, y, crop: int) -> dict:
    from emotion_keras.preprocess.faces import tta_views
    from emotion_keras.evaluate import metrics

    views = tta_views(x, "ten_crop", crop)
    probs = sum(np.asarray(model.predict({"image": v}, batch_size=512, verbose=0), np.float32) for v in views)
    m = metrics(y.astype(int), probs / len(views), CLASSES)
    return {k: round(float(m[k]), 4) for k in ("accuracy", "uar", "macro_f1")}


def run(arrays_path: Path, out: Path, minutes: float, tiny: bool = False, epochs: int | None = None) -> dict:
    import keras

    from emotion_keras import train as trainlib
    from emotion_keras.config import TrainConfig
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text, load_arrays
    from emotion_keras.models import store
    from emotion_keras.models.face import FaceModelConfig, build_face_model
    from emotion_keras.models.io import input_spec

    start = time.perf_counter()
    deadline = start + minutes * 60
    data = load_arrays(arrays_path)
    meta = json.loads(bytes(data["meta"]).decode())
    x_tr, y_tr = data["x_train"], data["y_train"].astype(np.float32)
    y_tr /= y_tr.sum(axis=1, keepdims=True)  # float16 rounding
    x_va, y_va, x_te, y_te = data["x_val"], data["y_val"], data["x_test"], data["y_test"]
    devices = [str(d) for d in keras.distribution.list_devices()] if keras.backend.backend() == "jax" else []
    out.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="gpu_face_")
    search = SEARCH[:2] if tiny else SEARCH
    results, best = [], None
    for i, (name, model_delta, train_delta) in enumerate(search):
        left = deadline - time.perf_counter()
        share = left / (len(search) - i) - 20  # the rest: scoring, saving
        if share < 30 and not tiny:
            print(f"[{name}] skipped: {left:.0f} s left", file=sys.stderr)
            continue
        model_cfg = FaceModelConfig.from_dict({**BASE_MODEL, **model_delta,
                                               **({"width": 4, "depth": 2, "attention_after": 1} if tiny else {})})
        tc = {**BASE_TRAIN, **train_delta, "verbose": 2}
        tc = TrainConfig.from_dict(tc, **({"epochs": epochs} if epochs else {"time_budget": max(share, 10.0)}))
        keras.utils.clear_session()
        policy = trainlib.configure_precision(tc)
        net = build_face_model(model_cfg, CLASSES)
        run_dir = Path(scratch) / name  # checkpoints stay off $OUT: the device returns 8 files at most
        t0 = time.perf_counter()
        fit = trainlib.fit(net, {"image": x_tr}, y_tr, {"image": x_va}, y_va, CLASSES, tc, run_dir)
        seconds = time.perf_counter() - t0
        scores = {"ferplus_valid": _score(net, x_va, y_va, model_cfg.crop),
                  "fer2013_publictest": _score(net, x_te, y_te, model_cfg.crop)}
        row = {"name": name, "model_config": model_cfg.to_dict(), "train_config": fit["train_config"],
               "parameters": int(net.count_params()), "epochs_run": fit["epochs_run"],
               "train_seconds": round(seconds, 1), "images_per_second": fit["samples_per_second"],
               "dtype_policy": policy, "history": fit["history"], **scores}
        results.append(row)
        print(json.dumps({k: row[k] for k in ("name", "epochs_run", "train_seconds", "ferplus_valid",
                                             "fer2013_publictest")}), file=sys.stderr)
        if best is None or name == "base" or row["ferplus_valid"]["accuracy"] > best["ferplus_valid"]["accuracy"]:
            protocol = (f"{meta['train_protocol']}; GPU job tuning/gpu_face.py, {tc.time_budget or 0:.0f} s "
                        f"budget, ten-crop TTA")
            card = {"task": "face", "name": f"ferplus-{name}", "classes": CLASSES, "inputs": input_spec(net),
                    "preprocessing": meta["prep"], "model_config": model_cfg.to_dict(),
                    "train_config": fit["train_config"], "data": meta["data"],
                    "metrics": {"validation": {**scores["ferplus_valid"], "protocol": protocol},
                                "fer2013_publictest": {**scores["fer2013_publictest"],
                                                       "protocol": meta["test"] + ", ten-crop TTA"}},
                    "training": {"seconds": row["train_seconds"], "epochs_run": row["epochs_run"],
                                 "samples_per_second": row["images_per_second"], "dtype_policy": policy,
                                 "devices": devices, "targets": "vote distributions"},
                    "history": row["history"]}
            store.save(net, out / ("model_base" if name == "base" else "model_best"), card)
            best = row
    report = {"minutes_budget": minutes, "wall_seconds": round(time.perf_counter() - start, 1),
              "backend": keras.backend.backend(), "devices": devices, "arrays": str(arrays_path),
              "train_protocol": meta["train_protocol"], "test": meta["test"], "rows": results,
              "best": best["name"] if best else None}
    atomic_write_json(out / "report.json", report)
    lines = ["# Face GPU job", "", f"Backend {report['backend']} on {', '.join(devices) or 'CPU'}; "
             f"{report['wall_seconds']:.0f} s of a {minutes:g}-minute budget. Training: "
             f"{meta['train_protocol']}. Scores with ten-crop TTA.", "",
             "| config | params | epochs | train s | img/s | FER+ Valid acc (UAR) | PublicTest acc (UAR) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        f, p = r["ferplus_valid"], r["fer2013_publictest"]
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['epochs_run']} | {r['train_seconds']:.0f} | "
                     f"{r['images_per_second'] or 0:.0f} | {f['accuracy']:.3f} ({f['uar']:.3f}) | "
                     f"{p['accuracy']:.3f} ({p['uar']:.3f}) |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack", help="write the compact arrays (CPU side)")
    p.add_argument("--ferplus", required=True)
    p.add_argument("--fer2013", required=True)
    p.add_argument("--out", type=Path, default=ROOT / ".gpu" / "faces.npz")
    p.add_argument("--limit", type=int, help="stratified subset (tests)")
    r = sub.add_parser("run", help="train and search on the GPU (JAX backend)")
    r.add_argument("--arrays", type=Path, default=ROOT / ".gpu" / "faces.npz")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_face_out")))
    r.add_argument("--minutes", type=float, default=11.0)
    r.add_argument("--tiny", action="store_true", help="width-4 models, two configs (CPU test)")
    r.add_argument("--epochs", type=int, help="fixed epochs instead of time budgets (tests)")
    args = ap.parse_args(argv)
    if args.verb == "pack":
        pack(args.ferplus, args.fer2013, args.out, args.limit)
    else:
        run(args.arrays, args.out, args.minutes, args.tiny, args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
