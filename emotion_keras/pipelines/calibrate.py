"""Fit and store a saved face or speech model's temperature on its validation split (the card's
``data.validation`` / ``data.validation_speakers`` on ``data.spec`` by default); the ``calibrate``
verb and ``export --calibrate`` call :func:`calibrate_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError


def calibrate_model(model_dir: str | Path, data: str | None = None, split: str | None = None,
                    speakers: str | None = None, limit: int | None = None, seed: int = 0,
                    progress: bool = True) -> dict[str, Any]:
    """Fit and store a saved model's temperature; returns the card's new ``calibration`` entry."""
    from emotion_keras.calibration import plot_reliability, reliability, apply_temperature, pool
    from emotion_keras.pipelines.common import calibration_fields
    from emotion_keras.models import store

    model_dir = Path(model_dir)
    card = store.read_card(model_dir)
    task, info = card.get("task"), card.get("data") or {}
    if task not in ("face", "speech"):
        raise ConfigError(f"{model_dir}: a {task} model; calibrate the face and speech models (the "
                          "multimodal recogniser applies their temperatures before fusing)")
    data = data or info.get("spec")
    if not data:
        raise ConfigError(f"{model_dir}: the card names no corpus (data.spec); pass --data SPEC")
    groups = None
    if task == "face":
        from emotion_keras.pipelines.face import corpus_faces, predict_arrays
        from emotion_keras.pipelines.splits import face_dataset_name, face_split_name

        split = split or info.get("validation")
        if not split:
            raise ConfigError(f"{model_dir}: the card names no validation split; pass --split NAME")
        model, card = store.load(model_dir)
        got = corpus_faces(model, card, data, split, limit, seed, progress)
        probs, y = predict_arrays(model, got["arrays"]), got["y"]
        protocol = (f"{face_dataset_name(got['records'])} {face_split_name(got['records'], got['split'])} "
                    f"({len(y):,} faces" + (f", stratified subset of {limit}" if limit else "") + ")")
    else:
        from emotion_keras.pipelines.speech import corpus_clips, window_probabilities
        from emotion_keras.pipelines.splits import speaker_list, speaker_word, speech_dataset_name

        speakers = speakers or ",".join(info.get("validation_speakers") or [])
        if not speakers:
            raise ConfigError(f"{model_dir}: the card names no validation speakers; pass --speakers IDS")
        model, card = store.load(model_dir)
        records, ws = corpus_clips(card, data, speakers, progress)
        probs, y, groups = window_probabilities(model, ws.x), ws.clip_targets(card["classes"]), ws.clip
        protocol = (f"{speech_dataset_name(records)} {speaker_word(records)} {speaker_list(speakers.split(','))} "
                    f"({len(y):,} clips, clip level: windows calibrated, then averaged)")
    entry = calibration_fields(protocol, probs, y, groups)
    cal = apply_temperature(probs, entry["temperature"])
    bins = reliability(pool(cal, groups) if groups is not None else cal, y)["bins"]
    plot_reliability(bins, model_dir / "calibration_reliability.png",
                     f"{card.get('name')}: {protocol}\nT = {entry['temperature']:.3g}; ECE before "
                     f"{entry['ece_before']:.3f}", entry["ece_after"])
    store.update_card(model_dir, calibration=entry)
    return entry
