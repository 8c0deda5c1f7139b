"""``emotion-keras export --model DIR --format onnx|tflite|saved_model [--out PATH]``.

Writes the exported model and a copy of its card (with the export record and the calibration
temperature) beside it; see :mod:`emotion_keras.export`. A face or speech model without a
calibration is calibrated first on the validation split its card names, when that corpus is here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emotion_keras.export import FORMATS


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a saved model to ONNX, LiteRT (TFLite) or a SavedModel",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="saved model directory (face, speech or fusion)")
    p.add_argument("--format", required=True, choices=tuple(FORMATS))
    p.add_argument("--out", help=f"output file or folder (default: the model directory, as "
                                 f"{', '.join(FORMATS.values())})")
    p.add_argument("--no-calibrate", action="store_true",
                   help="do not fit a temperature first when the card has none")
    p.add_argument("--json", action="store_true", help="print the export record as JSON")
    p.set_defaults(func=cmd_export)


def _calibrate_if_needed(model_dir: Path, quiet: bool) -> None:
    from emotion_keras.pipelines.calibrate import calibrate_model
    from emotion_keras.models import store

    card = store.read_card(model_dir)
    if card.get("calibration") or card.get("task") not in ("face", "speech"):
        return
    spec = (card.get("data") or {}).get("spec") or ""
    first = spec.split(",")[0]
    kind, _, rest = first.partition(":")
    path = Path(rest if rest and kind.isalpha() and len(kind) > 1 else first) if spec else None
    if path is None or not path.exists():
        print(f"note: {model_dir} has no calibration and its validation data ({spec or 'not named'}) is not "
              "here: probabilities stay uncalibrated; run `emotion-keras calibrate` first", file=sys.stderr)
        return
    entry = calibrate_model(model_dir, progress=not quiet)
    print(f"calibrated first: temperature {entry['temperature']:.4g}, ECE {entry['ece_before']:.3f} -> "
          f"{entry['ece_after']:.3f}", file=sys.stderr)


def cmd_export(args) -> int:
    from emotion_keras.export import export_model

    model_dir = Path(args.model)
    if not args.no_calibrate:
        _calibrate_if_needed(model_dir, args.json)
    record = export_model(model_dir, args.format, args.out)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"exported {record['path']} ({args.format}; outputs {', '.join(record['outputs'])}; max |diff| "
              f"vs Keras {record['parity_max_abs_diff']:.2e}); card: {record['card']}")
    return 0
