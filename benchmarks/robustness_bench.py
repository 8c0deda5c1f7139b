"""Robustness of the shipped models -> docs/benchmarks/robustness.{json,md} and the models' cards.

Protocol:

* **Face** (``saved_models/face``): FER2013 PublicTest (the card's validation split), a stratified
  subset of ``--face-limit`` images (seed 0), every perturbation of ``emotion_keras/perturb.py``
  (eye band, mouth patch, random blocks, blur, noise, JPEG, rotation, downscaling; three strengths
  each), applied to the 48x48 crops the model sees, seed 0. Accuracy, UAR and ECE (calibrated
  probabilities, 15 bins) next to the clean figures on the same subset.
* **Speech** (``saved_models/speech``): RAVDESS actors 17-20 (the card's validation speakers, 240
  clips), white noise (SNR), reverb (RT60), telephone codec (8 kHz mu-law bits), gain; clip level.

Both run ``face evaluate --perturb`` / ``speech evaluate --perturb`` as library calls (one backend,
``KERAS_BACKEND``, default TensorFlow); each report (JSON, confusion and reliability PNGs) goes to
``docs/benchmarks/robustness/<task>/`` and the robustness table onto the model's card.

    python benchmarks/robustness_bench.py [--data ../shared/data] [--face-limit 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--face-limit", type=int, default=1000)
    ap.add_argument("--tasks", default="face,speech")
    args = ap.parse_args()

    from emotion_keras.pipelines.common import record_robustness, robustness_markdown
    from emotion_keras.pipelines.face import evaluate_face
    from emotion_keras.pipelines.speech import evaluate_speech
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.perturb import FACE, SPEECH

    out = ROOT / "docs" / "benchmarks" / "robustness"
    data = Path(args.data)
    results, md = {}, ["# Robustness of the shipped models", "",
                       f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU. "
                       "Reproduce: `python benchmarks/robustness_bench.py` (protocol in its docstring).", ""]
    tasks = args.tasks.split(",")
    previous = ROOT / "docs" / "benchmarks" / "robustness.json"
    if previous.exists():  # a subset of tasks keeps the other task's last table
        results = {k: v for k, v in json.loads(previous.read_text()).items() if k not in tasks}
        titles = {"face": "Face: saved_models/face", "speech": "Speech: saved_models/speech"}
        md += [robustness_markdown(v, titles.get(k, k)) for k, v in results.items()]
    if "face" in tasks:
        rep = evaluate_face(ROOT / "saved_models" / "face", f"fer2013:{data / 'fer2013'}", split="validation",
                            limit=args.face_limit, out=out / "face", perturb=list(FACE), progress=False)
        record_robustness(ROOT / "saved_models" / "face", rep["robustness"])
        results["face"] = rep["robustness"]
        md.append(robustness_markdown(rep["robustness"], "Face: saved_models/face"))
    if "speech" in tasks:
        rep = evaluate_speech(ROOT / "saved_models" / "speech", f"ravdess:{data / 'ravdess_speech'}",
                              speakers="17,18,19,20", out=out / "speech", perturb=list(SPEECH), progress=False)
        record_robustness(ROOT / "saved_models" / "speech", rep["robustness"])
        results["speech"] = rep["robustness"]
        md.append(robustness_markdown(rep["robustness"], "Speech: saved_models/speech"))
    atomic_write_json(ROOT / "docs" / "benchmarks" / "robustness.json", results)
    atomic_write_text(ROOT / "docs" / "benchmarks" / "robustness.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
