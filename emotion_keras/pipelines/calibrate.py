"""Fit and store a saved face or speech model's temperature on its validation split (the card's
``data.validation`` / ``data.validation_speakers`` on ``data.spec`` by default), and its class prior
(from the training split's labels, for cards saved before trainers recorded it); the ``calibrate``
verb and ``export --calibrate`` call :func:`calibrate_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from emotion_keras.calibration import check_balance
from emotion_keras.config import ConfigError


def calibrate_model(model_dir: str | Path, data: str | None = None, split: str | None = None,
                    speakers: str | None = None, limit: int | None = None, seed: int = 0,
                    progress: bool = True, balance: float | None = None) -> dict[str, Any]:
    """Fit and store a saved model's temperature; returns the card's new ``calibration`` entry. A card
    without a class prior gets one from its training split; ``balance`` sets the card's default prior
    correction (:mod:`emotion_keras.calibration`)."""
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
        from emotion_keras.models.card import face_views
        from emotion_keras.pipelines.face import corpus_faces, predict_arrays
        from emotion_keras.pipelines.splits import face_dataset_name, face_split_name

        split = split or info.get("validation")
        if not split:
            raise ConfigError(f"{model_dir}: the card names no validation split; pass --split NAME")
        model, card = store.load(model_dir)
        got = corpus_faces(model, card, data, split, limit, seed, progress)
        # the probabilities the recogniser calibrates: averaged over the card's test-time views
        tta, crop = face_views(card)
        probs = predict_arrays(model, got["arrays"], tta=tta, crop=crop)
        y = got["y"]
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
    # the prior comes from the training data (the card's spec), whatever split the temperature is fitted on
    prior = card.get("class_prior") or training_prior_of(card, info.get("spec") or data)
    if balance is not None:
        prior = {**prior, "balance": check_balance(balance)}
    store.update_card(model_dir, calibration=entry, class_prior=prior)
    return entry


def training_prior_of(card: dict[str, Any], data: str, corpus: Sequence | None = None) -> dict[str, Any]:
    """The ``class_prior`` a trainer records (:func:`emotion_keras.pipelines.common.training_prior`),
    rebuilt from the labels of the card's training split on ``data``: FER+ vote distributions where
    the corpus has them, the card's class weights applied. ``corpus``: the face corpus ``data``'s
    records, where the caller has read them already."""
    from emotion_keras.calibration import class_prior
    from emotion_keras.config import TrainConfig
    from emotion_keras.pipelines.common import training_prior
    from emotion_keras.train import as_distributions, config_class_weights

    classes, info = list(card["classes"]), card.get("data") or {}
    if card["task"] == "face":
        from emotion_keras.data.faces import read_faces
        from emotion_keras.data.ferplus import soft_targets

        records = [r for r in (read_faces(data) if corpus is None else corpus)
                   if r.split == "train" and r.label in classes]
        what = "training split"
        soft = soft_targets(records, [r.name for r in records], classes)
        targets = soft if soft is not None else as_distributions([classes.index(r.label) for r in records],
                                                                len(classes))
    else:
        from emotion_keras.pipelines.splits import read_speech_records

        ids = set(info.get("train_speakers") or [])
        records = [r for r in read_speech_records(data) if r.subject in ids and r.label in classes]
        what = "training speakers' clips"
        targets = as_distributions([classes.index(r.label) for r in records], len(classes))
    if not records:
        raise ConfigError(f"{data}: no training records with the model's classes to take its class prior from")
    train = TrainConfig.from_dict({k: v for k, v in (card.get("train_config") or {}).items()
                                   if k in TrainConfig.__dataclass_fields__})
    weights = config_class_weights(targets, len(classes), train)
    return training_prior(classes, class_prior(targets, len(classes), weights), train,
                          f"mean training target over the {what} ({len(records):,}; rebuilt by "
                          "`emotion-keras calibrate` from the card's training data)")
