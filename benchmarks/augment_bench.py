"""In-graph augmentation benchmark -> docs/benchmarks/augment.{json,md}.

Why: Keras' random preprocessing layers (RandomRotation, RandomZoom, RandomTranslation, ...) set
``supports_jit = False``, so a model holding them trains without XLA on JAX (``jit_compile`` resolves
to False for the whole step). ``emotion_keras.models.layers.ImageAugment`` does the same kinds of
augmentation with ``keras.ops``/``keras.random`` and keeps the step compiled.

Protocol (per backend, each in its own subprocess with ``KERAS_BACKEND`` set): the face model of
``FaceModelConfig(backbone="vgg", input_size=48, channels=1, width=16, depth=4, attention=True)``
on synthetic uint8-range images (the speed does not depend on the pixel values), 3 classes, batch
64, ``--steps`` steps per epoch, compiled with Adam and ``jit_compile="auto"``, in three variants:

* ``none``: ``augment=False``;
* ``image_augment``: ``augment=True`` (flip, shift 0.1, rotation 10 deg, zoom 0.1, brightness 0.2,
  contrast 0.2: the defaults);
* ``keras_layers``: ``augment=False`` behind Keras' RandomFlip, RandomTranslation(0.1),
  RandomRotation(10/360), RandomZoom(0.1), RandomBrightness(0.2), RandomContrast(0.2).

One untimed epoch (compilation), then one timed epoch: median wall ms per step (from per-batch
callback times) and process CPU seconds per step, and the resolved ``model.jit_compile``. The
machine is shared: the 1-minute load average is recorded beside each row.

    python benchmarks/augment_bench.py [--steps 20] [--backends tensorflow,jax]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "docs" / "benchmarks" / "augment.json"
OUT_MD = ROOT / "docs" / "benchmarks" / "augment.md"


def _model(variant: str):
    import keras

    from emotion_keras.models.face import FaceModelConfig, build_face_model

    cfg = FaceModelConfig(backbone="vgg", input_size=48, channels=1, width=16, depth=4,
                          attention=True, augment=variant == "image_augment")
    model = build_face_model(cfg, 3)
    if variant != "keras_layers":
        return model
    L = keras.layers
    image = keras.Input(cfg.image_shape, name="image")
    x = L.RandomFlip("horizontal")(image)
    x = L.RandomTranslation(0.1, 0.1)(x)
    x = L.RandomRotation(10 / 360)(x)
    x = L.RandomZoom(0.1)(x)
    x = L.RandomBrightness(0.2, value_range=(0, 255))(x)
    x = L.RandomContrast(0.2, value_range=(0, 255))(x)
    return keras.Model({"image": image}, model({"image": x}))


def worker(steps: int) -> list[dict]:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    n = 64 * steps
    x = {"image": (rng.random((n, 48, 48, 1)) * 255).astype("float32")}
    y = keras.utils.to_categorical(rng.integers(0, 3, n), 3)

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

    rows = []
    for variant in ("none", "image_augment", "keras_layers"):
        keras.utils.set_random_seed(0)
        model = _model(variant)
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # compile
        timer = Timer()
        timer.times = []
        c0 = time.process_time()
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[timer])
        cpu = time.process_time() - c0
        rows.append({"backend": keras.backend.backend(), "variant": variant,
                     "jit_compile": bool(model.jit_compile),
                     "ms_per_step_median": round(1000 * statistics.median(timer.times), 2),
                     "cpu_s_per_step": round(cpu / steps, 4),
                     "load_1min": round(os.getloadavg()[0], 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backends", default="tensorflow,jax")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT))
        print("ROWS " + json.dumps(worker(args.steps)))
        return
    rows = []
    for backend in args.backends.split(","):
        proc = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps)],
                              env={**os.environ, "KERAS_BACKEND": backend}, cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROWS ")][-1]
        rows += json.loads(line[5:])
    import keras  # noqa: F401  (versions only)

    from emotion_keras.models.store import versions

    result = {"protocol": __doc__.split("Protocol")[1].split("    python")[0].strip(),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "versions": versions(), "steps": args.steps, "rows": rows,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    atomic_write_json(OUT_JSON, result)
    md = ["# In-graph augmentation vs Keras random layers", "",
          f"Generated by `benchmarks/augment_bench.py` on {result['date']} "
          f"({os.cpu_count()} CPUs, shared machine). Protocol: see the script's docstring.", "",
          "| backend | augmentation | jit_compile | ms/step (median wall) | CPU s/step | load (1 min) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['backend']} | {r['variant']} | {r['jit_compile']} | "
                  f"{r['ms_per_step_median']} | {r['cpu_s_per_step']} | {r['load_1min']} |")
    atomic_write_text(OUT_MD, "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
