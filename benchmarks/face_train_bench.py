"""Face training throughput per backend, width, batch size and XLA -> docs/benchmarks/face_train.{json,md}.

Protocol: for each setting, a fresh VGG-style face model (depth 4, self-attention after block 2,
48 px grey input, augmentation on; ``--crop`` for the 40 px multi-crop recipe) is compiled as
``train.fit`` does (AdamW + cosine) and trained on real FER+ training faces (uint8, 48x48): one
untimed warm-up call of ``--steps`` steps (compilation), then ``--repeats`` timed calls of ``--steps``
steps: images/s of the fastest call (as timeit does: on this machine one setting ran at about 149 or
about 270 images/s from call to call, with no load beside it), and the slowest beside it.
Achieved GFLOP/s = 3 x forward FLOPs per image (``emotion_keras.flops``) x images/s; the peak is
NumPy's float32 1024x1024 matrix product on all cores, measured in the same process just before.
Each backend runs in its own subprocess (Keras picks one per process). The load average is recorded:
on a shared machine wall-clock figures are pessimistic, so compare settings measured together.

    python benchmarks/face_train_bench.py [--backends tensorflow,jax] [--steps 12] [--repeats 3]
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
DEFAULT_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))

# (width, batch size, jit) per backend; JAX always compiles with XLA.
SETTINGS = {
    "tensorflow": [(16, 64, "on"), (16, 64, "off"), (16, 32, "on"), (16, 128, "on"), (32, 64, "on"),
                   (32, 64, "off")],
    "jax": [(16, 64, "on"), (16, 128, "on"), (32, 64, "on")],
}


def faces(data: Path, n: int):
    import numpy as np

    from emotion_keras.data.faces import read_faces
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    root = data / "ferplus"
    if root.is_dir():
        records = [r for r in read_faces(f"ferplus:{root}") if r.split == "train"][:n]
        return prepare_faces(records, FacePrepConfig(), progress=False).images.astype("float32")
    print(f"note: {root} not found: timing on random pixels", file=sys.stderr)
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48, 1)).astype("float32")


def child(args) -> list[dict]:
    import numpy as np

    from emotion_keras.config import TrainConfig
    from emotion_keras.flops import matmul_peak_gflops, model_flops
    from emotion_keras.models.face import FaceModelConfig, build_face_model
    from emotion_keras.train import compile_model

    backend = os.environ["KERAS_BACKEND"]
    rows = []
    settings = SETTINGS[backend]
    x_all = faces(args.data, max(b for _, b, _ in settings) * args.steps)
    for width, batch, jit in settings:
        import keras

        keras.utils.clear_session()
        model = build_face_model(FaceModelConfig(width=width, crop=args.crop), 7)
        compile_model(model, TrainConfig(epochs=1, jit_compile=jit), args.steps)
        n = batch * args.steps
        x = x_all[:n]
        y = np.eye(7, dtype="float32")[np.arange(n) % 7]
        peak = matmul_peak_gflops()
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        first = time.perf_counter() - t0
        calls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            calls.append(n / (time.perf_counter() - t0))
        ips = max(calls)
        flops = model_flops(model)
        rows.append({"backend": backend, "width": width, "batch_size": batch, "xla": jit == "on" or backend == "jax",
                     "parameters": int(model.count_params()), "crop": args.crop,
                     "first_call_s": round(first, 1), "images_per_second": round(ips, 1),
                     "slowest_images_per_second": round(min(calls), 1),
                     "forward_mflops_per_image": round(flops / 1e6, 1),
                     "achieved_gflops": round(3 * flops * ips / 1e9, 2), "matmul_peak_gflops": round(peak, 1),
                     "load_average": round(os.getloadavg()[0], 2)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backends", default="tensorflow,jax")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--crop", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per setting; the fastest is reported")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend}
        argv = ["--child", "--data", str(args.data), "--steps", str(args.steps), "--crop", str(args.crop),
                "--repeats", str(args.repeats)]
        proc = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{backend}: benchmark failed")
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    doc = ROOT / "docs" / "benchmarks"
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": f"{os.cpu_count()} CPU cores "
              f"({platform.machine()}), no GPU", "steps": args.steps, "repeats": args.repeats, "rows": rows}
    atomic_write_json(doc / "face_train.json", report)
    best = max(rows, key=lambda r: r["images_per_second"] if r["width"] == 16 else 0)
    lines = ["# Face training throughput", "",
             f"Measured {report['date']} on {report['machine']} by `benchmarks/face_train_bench.py` "
             f"(protocol in its docstring): the fastest of {args.repeats} timed calls of {args.steps} steps per "
             "setting after a warm-up call (the slowest beside it), real "
             "FER+ faces, augmentation on. GFLOP/s achieved = 3 x forward FLOPs x images/s; peak = NumPy "
             "float32 1024^2 matmul on all cores, measured in the same process. The machine was shared "
             "(load average per row): compare rows measured together, not across runs.", "",
             "| backend | width | params | batch | XLA | images/s | slowest call | first call s | GFLOP/s | "
             "matmul peak | load |",
             "|---|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['width']} | {r['parameters']:,} | {r['batch_size']} | "
                     f"{'yes' if r['xla'] else 'no'} | {r['images_per_second']:.1f} | "
                     f"{r['slowest_images_per_second']:.1f} | {r['first_call_s']:.1f} | "
                     f"{r['achieved_gflops']:.1f} | {r['matmul_peak_gflops']:.1f} | {r['load_average']:.1f} |")
    lines += ["", f"Fastest width-16 setting here: {best['backend']}, batch {best['batch_size']}, XLA "
              f"{'on' if best['xla'] else 'off'} ({best['images_per_second']:.0f} images/s). `train.fit` compiles "
              "the train step with XLA by default under JAX, and under TensorFlow only on a GPU "
              "(`TrainConfig.jit_compile='auto'`, `train.resolve_jit`).", "",
              f"Command: `python benchmarks/face_train_bench.py --steps {args.steps} --repeats {args.repeats}"
              + (f" --crop {args.crop}" if args.crop else "") + "`", ""]
    atomic_write_text(doc / "face_train.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
