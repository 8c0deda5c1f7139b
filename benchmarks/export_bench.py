"""Keras vs ONNX Runtime for the shipped models -> docs/benchmarks/export.{json,md}.

Protocol: the shipped face and speech models are exported to ONNX (``emotion_keras.export``) into a
temporary folder. Each runtime then runs in ``--repeats`` fresh subprocesses (Keras on TensorFlow,
Keras on JAX, ONNX Runtime), on the same inputs (``samples/face.jpg`` and ``samples/speech.wav``):

* **start-up**: from process start (interpreter launch included) to the first face result:
  imports, model load, first ``predict`` of the sample's aligned face crop. Median over repeats.
* **latency** (in the last subprocess, after 5 warm-up calls): the face model on one aligned crop
  (``FaceEmotionRecognizer._run``, 200 calls), the speech model on the clip's feature windows
  (``predict_features``, 100 calls), and ``predict_file`` of the sample photo end to end (detection
  included, 20 calls): median milliseconds. Also which heavy frameworks the process imported.

    python benchmarks/export_bench.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
t0 = float(sys.argv[1]); runtime = sys.argv[2]; models = sys.argv[3]; root = sys.argv[4]
from emotion_keras.recognizers.face import FaceEmotionRecognizer
from emotion_keras.recognizers.speech import SpeechEmotionRecognizer
from emotion_keras.preprocess.images import load_image
rt = "onnx" if runtime == "onnx" else "keras"
face = FaceEmotionRecognizer(models + "/face", runtime=rt)
rgb = load_image(root + "/samples/face.jpg")
_, crops, geo, _ = face._prepare(rgb)
face._run(crops, geo)
startup = time.time() - t0
speech = SpeechEmotionRecognizer(models + "/speech", runtime=rt)
from emotion_keras.preprocess import audio
feats, _ = speech.waveform_inputs(audio.load_audio(root + "/samples/speech.wav", speech.config.sr))

def median_ms(fn, n):
    for _ in range(5):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort()
    return round(1000 * ts[len(ts) // 2], 3)

out = {"startup_s": round(startup, 3)}
if len(sys.argv) > 5:
    out.update(face_crop_ms=median_ms(lambda: face._run(crops, geo), 200),
               speech_windows_ms=median_ms(lambda: speech.predict_features(feats), 100),
               photo_end_to_end_ms=median_ms(lambda: face.predict(rgb), 20),
               speech_windows=len(feats["features"]))
out["imported"] = [m for m in ("tensorflow", "jax", "keras", "onnxruntime") if m in sys.modules]
print(json.dumps(out))
"""


def run(runtime: str, models: Path, latency: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    if runtime.startswith("keras-"):
        env["KERAS_BACKEND"] = runtime.split("-", 1)[1]
    args = [sys.executable, "-c", CHILD, repr(time.time()), runtime, str(models), str(ROOT)]
    args[3] = str(time.time())
    out = subprocess.run(args + (["latency"] if latency else []), capture_output=True, text=True, env=env,
                         timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.export import export_model

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        for task in ("face", "speech"):
            export_model(ROOT / "saved_models" / task, "onnx", models / task)
            for f in (ROOT / "saved_models" / task).iterdir():
                if f.name == "model.keras":
                    (models / task / f.name).symlink_to(f)
        for runtime in ("keras-tensorflow", "keras-jax", "onnx"):
            runs = [run(runtime, models, latency=(i == args.repeats - 1)) for i in range(args.repeats)]
            results[runtime] = {**runs[-1], "startup_s": statistics.median(r["startup_s"] for r in runs),
                                "startup_runs_s": [r["startup_s"] for r in runs]}
            print(runtime, results[runtime], file=sys.stderr)
    load = os.getloadavg()[0]
    atomic_write_json(ROOT / "docs" / "benchmarks" / "export.json",
                      {"cpus": os.cpu_count(), "load_1min": round(load, 2), "repeats": args.repeats,
                       "results": results})
    md = ["# Keras vs ONNX Runtime (shipped models)", "",
          f"Machine: {os.cpu_count()} CPU cores (shared; 1-minute load {load:.1f} at the end), no GPU. "
          "Reproduce: `python benchmarks/export_bench.py` (protocol in its docstring). Inputs: "
          "`samples/face.jpg` (its aligned face crop) and `samples/speech.wav` "
          f"({results['onnx'].get('speech_windows', '?')} feature window(s)).", "",
          "| runtime | start-up to first result (s, median) | face crop (ms) | speech windows (ms) | "
          "photo end to end (ms) | frameworks imported |", "|---|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        md.append(f"| {name} | {r['startup_s']:.2f} | {r['face_crop_ms']:.2f} | {r['speech_windows_ms']:.2f} | "
                  f"{r['photo_end_to_end_ms']:.1f} | {', '.join(r['imported'])} |")
    atomic_write_text(ROOT / "docs" / "benchmarks" / "export.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
