"""``emotion-keras calibrate --model DIR``: fit the temperature of a saved face or speech model.

By default the validation split recorded on the model's card is used (FER2013 PublicTest for a
FER2013 model: ``data.validation``; RAVDESS actors 17-20: ``data.validation_speakers``), read from
the card's ``data.spec``; ``--data``/``--split``/``--speakers`` choose another. The temperature, the
ECE and NLL before and after are written on the card (``calibration``), which every recogniser and
the ONNX runtime path apply; ``calibration_reliability.png`` is drawn beside the card. A card without
a class prior gets one from its training labels; ``--balance`` sets its default prior correction.
"""

from __future__ import annotations

import json
import sys

from emotion_keras.commands.common import add_balance_arg


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="fit a saved model's temperature on its validation split",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="saved face or speech model directory")
    p.add_argument("--data", metavar="SPEC", help="corpus (default: the card's data.spec)")
    p.add_argument("--split", help="face corpus split (default: the card's validation split)")
    p.add_argument("--speakers", metavar="IDS", help="speech speakers (default: the card's validation speakers)")
    p.add_argument("--limit", type=int, help="faces: a stratified subset of N images")
    add_balance_arg(p)
    p.add_argument("--json", action="store_true", help="print the calibration entry as JSON")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from emotion_keras.pipelines.calibrate import calibrate_model

    entry = calibrate_model(args.model, args.data, args.split, args.speakers, args.limit,
                            progress=not args.json, balance=args.balance)
    from emotion_keras.models.store import read_card

    prior = read_card(args.model)["class_prior"]
    if args.json:
        print(json.dumps({**entry, "class_prior": prior}))
    else:
        print(f"{args.model}: temperature {entry['temperature']:.4g} fitted on {entry['fitted_on']}\n"
              f"  ECE {entry['ece_before']:.4f} -> {entry['ece_after']:.4f}, NLL {entry['nll_before']:.4f} -> "
              f"{entry['nll_after']:.4f}; a perfectly calibrated model would show ECE ~{entry['ece_noise_floor']:.4f} "
              f"on this many samples\n  class prior ({prior['source']}): "
              + ", ".join(f"{c} {p:.3f}" for c, p in prior["frequencies"].items())
              + f"; balance {prior['balance']:g}", file=sys.stdout)
    return 0
