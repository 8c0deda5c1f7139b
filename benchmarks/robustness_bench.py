"""Robustness of the shipped models -> docs/benchmarks/robustness.{json,md} and the models' cards.

Protocol:

* **Face** (``saved_models/face``): FER2013 PublicTest (the card's validation split), a stratified
  subset of ``--face-limit`` images (seed 0), every perturbation of ``emotion_keras/perturb.py``
  (eye band, mouth patch, random blocks, blur, noise, JPEG, rotation, downscaling; three strengths
  each), applied to the 48x48 crops the model sees, seed 0. Accuracy, UAR and ECE (calibrated
  probabilities, 15 bins) next to the clean figures on the same subset.
* **Speech** (``saved_models/speech``): RAVDESS actors 17-20 (240 clips), white noise (SNR), reverb
  (RT60), telephone codec (8 kHz mu-law bits), gain; clip level. A model solved on all 20 actors is
  measured through its configuration solved on actors 1-16 (:func:`held_out_speech_model`). A
  speaker-normalised model gets two tables: each speaker standardised with their own perturbed clips
  (enrolment: they come through the same channel) and each clip alone (``--per-clip``).

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


def held_out_speech_model(model_dir: Path, spec: str, work: Path) -> tuple[Path, bool]:
    """A model of the shipped speech configuration that never heard actors 17-20: the shipped model
    itself when they are its validation speakers, else (a model solved on all 20 actors) the same
    configuration solved on actors 1-16 in ``work`` (seconds; solved architectures only)."""
    from emotion_keras.models import store
    from emotion_keras.models.speech import SOLVED
    from emotion_keras.pipelines.speech import train_speech
    from emotion_keras.pipelines.splits import load_speech_split
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.config import TrainConfig

    card = store.read_card(model_dir)
    if card["data"].get("validation_speakers") == ["17", "18", "19", "20"]:
        return model_dir, False
    if card["model_config"].get("architecture") not in SOLVED:
        raise SystemExit(f"{model_dir}: trained on actors 17-20 and not a solved model; "
                         "measure its robustness on a model that held them out")
    split = load_speech_split(spec, val_speakers="17,18,19,20", classes=card["classes"])
    train_speech(split, SpeechFeatureConfig.from_dict(card["preprocessing"]), card["model_config"],
                 TrainConfig.from_dict(card["train_config"]), work / "run", out=work / "model",
                 name=f"{card['name']} (actors 1-16)", classes=card["classes"], progress=False)
    return work / "model", True


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
    from emotion_keras.models import store
    from emotion_keras.perturb import FACE, SPEECH

    out = ROOT / "docs" / "benchmarks" / "robustness"
    data = Path(args.data)
    results, md = {}, ["# Robustness of the shipped models", "",
                       f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), no GPU. "
                       "Reproduce: `python benchmarks/robustness_bench.py` (protocol in its docstring).", ""]
    tasks = args.tasks.split(",")
    previous = ROOT / "docs" / "benchmarks" / "robustness.json"
    if previous.exists():  # a subset of tasks keeps the other task's last table
        results = {k: v for k, v in json.loads(previous.read_text()).items() if k.split("_")[0] not in tasks}
        titles = {"face": "Face: saved_models/face", "speech": "Speech: saved_models/speech"}
        md += [robustness_markdown(v, titles.get(k, k)) for k, v in results.items()]
    if "face" in tasks:
        rep = evaluate_face(ROOT / "saved_models" / "face", f"fer2013:{data / 'fer2013'}", split="validation",
                            limit=args.face_limit, out=out / "face", perturb=list(FACE), progress=False)
        record_robustness(ROOT / "saved_models" / "face", rep["robustness"])
        results["face"] = rep["robustness"]
        md.append(robustness_markdown(rep["robustness"], "Face: saved_models/face"))
    if "speech" in tasks:
        model, twin = held_out_speech_model(ROOT / "saved_models" / "speech", f"ravdess:{data / 'ravdess_speech'}",
                                            ROOT / "runs" / "robustness")
        settings = [(False, "speech", "Speech: saved_models/speech")]
        if store.read_card(model).get("preprocessing", {}).get("speaker_norm", "none") != "none":
            settings.append((True, "speech_per_clip", "Speech: saved_models/speech, each clip normalised alone"))
        for per_clip, key, title in settings:
            rep = evaluate_speech(model, f"ravdess:{data / 'ravdess_speech'}", speakers="17,18,19,20",
                                  out=out / key, perturb=list(SPEECH), progress=False, per_clip=per_clip)
            section = rep["robustness"]
            if twin:
                section["protocol"] += ("; measured on the shipped configuration solved on actors 1-16 (the "
                                        "shipped model, solved on all 20 actors, has no held-out speakers)")
            record_robustness(ROOT / "saved_models" / "speech", section)
            results[key] = section
            md.append(robustness_markdown(section, title))
    atomic_write_json(ROOT / "docs" / "benchmarks" / "robustness.json", results)
    atomic_write_text(ROOT / "docs" / "benchmarks" / "robustness.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
