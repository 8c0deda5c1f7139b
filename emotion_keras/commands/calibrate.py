"""``emotion-keras calibrate --model DIR``: fit the temperature of a saved face or speech model.

By default the validation split recorded on the model's card is used (FER2013 PublicTest for a
FER2013 model: ``data.validation``; RAVDESS actors 17-20: ``data.validation_speakers``), read from
the card's ``data.spec``; ``--data``/``--split``/``--speakers`` choose another. The temperature, the
ECE and NLL before and after are written on the card (``calibration``), which every recogniser and
the ONNX runtime path apply; ``calibration_reliability.png`` is drawn beside the card.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError


def calibrate_model(model_dir: str | Path, data: str | None = None, split: str | None = None,
                    speakers: str | None = None, limit: int | None = None, seed: int = 0,
                    progress: bool = True) -> dict[str, Any]:
    """Fit and store a saved model's temperature; returns the card's new ``calibration`` entry."""
    from emotion_keras.calibration import plot_reliability, reliability, apply_temperature, pool
    from emotion_keras.commands.common import calibration_fields
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
        from emotion_keras.commands.face import _ds_name, _split_name, corpus_faces, predict_arrays

        split = split or info.get("validation")
        if not split:
            raise ConfigError(f"{model_dir}: the card names no validation split; pass --split NAME")
        model, card = store.load(model_dir)
        got = corpus_faces(model, card, data, split, limit, seed, progress)
        probs, y = predict_arrays(model, got["arrays"]), got["y"]
        protocol = (f"{_ds_name(got['records'])} {_split_name(got['records'], got['split'])} "
                    f"({len(y):,} faces" + (f", stratified subset of {limit}" if limit else "") + ")")
    else:
        from emotion_keras.commands.speech import (_ds_name, _speaker_list, _speaker_word, corpus_clips,
                                                   window_probabilities)

        speakers = speakers or ",".join(info.get("validation_speakers") or [])
        if not speakers:
            raise ConfigError(f"{model_dir}: the card names no validation speakers; pass --speakers IDS")
        model, card = store.load(model_dir)
        records, ws = corpus_clips(card, data, speakers, progress)
        probs, y, groups = window_probabilities(model, ws.x), ws.clip_targets(card["classes"]), ws.clip
        protocol = (f"{_ds_name(records)} {_speaker_word(records)} {_speaker_list(speakers.split(','))} "
                    f"({len(y):,} clips, clip level: windows calibrated, then averaged)")
    entry = calibration_fields(protocol, probs, y, groups)
    cal = apply_temperature(probs, entry["temperature"])
    bins = reliability(pool(cal, groups) if groups is not None else cal, y)["bins"]
    plot_reliability(bins, model_dir / "calibration_reliability.png",
                     f"{card.get('name')}: {protocol}\nT = {entry['temperature']:.3g}; ECE before "
                     f"{entry['ece_before']:.3f}", entry["ece_after"])
    store.update_card(model_dir, calibration=entry)
    return entry


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="fit a saved model's temperature on its validation split",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="saved face or speech model directory")
    p.add_argument("--data", metavar="SPEC", help="corpus (default: the card's data.spec)")
    p.add_argument("--split", help="face corpus split (default: the card's validation split)")
    p.add_argument("--speakers", metavar="IDS", help="speech speakers (default: the card's validation speakers)")
    p.add_argument("--limit", type=int, help="faces: a stratified subset of N images")
    p.add_argument("--json", action="store_true", help="print the calibration entry as JSON")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    entry = calibrate_model(args.model, args.data, args.split, args.speakers, args.limit,
                            progress=not args.json)
    if args.json:
        print(json.dumps(entry))
    else:
        print(f"{args.model}: temperature {entry['temperature']:.4g} fitted on {entry['fitted_on']}\n"
              f"  ECE {entry['ece_before']:.4f} -> {entry['ece_after']:.4f}, NLL {entry['nll_before']:.4f} -> "
              f"{entry['nll_after']:.4f}; a perfectly calibrated model would show ECE ~{entry['ece_noise_floor']:.4f} "
              f"on this many samples", file=sys.stdout)
    return 0
