"""A face model on every labelled set here -> docs/benchmarks/face_eval.md (+ one report folder each).

Protocol: ``face evaluate`` (the library function behind it) on

* FER+ ``FER2013Valid`` with majority labels (the FER+ paper's protocol; the validation set of models
  trained on FER+ Train),
* FER2013 PublicTest with the original labels (the same faces as FER2013Valid),
* CK+48, all 981 images (contempt is not a class of a 7-class model and is left out): cross-corpus,
* ``wild_faces``, 370 web photos through detection and alignment: cross-corpus,

each with the TTA given (default ten-crop, which falls back to shifted views for models without a
crop) and the card's prior correction (``--balance`` to choose another); a second table gives every
set at each balance of ``--sweep`` (the same predictions: only the decision rule changes). The
held-out test splits (FER2013 PrivateTest, FER+ Test) are not here: they are measured
independently.

    python benchmarks/face_eval.py [--model saved_models/face] [--tta ten_crop] [--data ../shared/data]
                                   [--balance B] [--sweep 0,0.25,0.5,0.75,1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))

SETS = [("ferplus_valid", "ferplus", "validation", "FER+ FER2013Valid, majority labels"),
        ("fer2013_publictest", "fer2013", "validation", "FER2013 PublicTest, original labels"),
        ("ckplus48", "ckplus48", "all", "CK+48 (cross-corpus)"),
        ("wild_faces", "wild_faces", "all", "wild_faces web photos (cross-corpus)")]
# The accuracy targets on each set (one model for the two validation splits).
TARGETS = {"ferplus_valid": 0.85, "fer2013_publictest": 0.70, "ckplus48": 0.80, "wild_faces": 0.55}


def evaluate_sets(model: Path, data: Path, tta: str, out: Path, balance: float | None = None,
                  sweep=()):
    """``(key, label, report or None, path)`` for each set of :data:`SETS`: ``face evaluate``'s report
    of ``model`` on it (one report folder under ``out``), or None where the set is not under ``data``."""
    from emotion_keras.pipelines.face import evaluate_face

    for key, folder, split, label in SETS:
        path = data / folder
        if not path.exists():
            yield key, label, None, path
            continue
        spec = f"{'ckplus' if folder == 'ckplus48' else 'csv' if folder == 'wild_faces' else folder}:{path}"
        yield key, label, evaluate_face(model, spec, split=split, out=out / key, tta=tta, progress=False,
                                        balance=balance, balances=sweep), path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "saved_models" / "face")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--tta", default="ten_crop", choices=("none", "flip", "ten_crop"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "face_eval",
                    help="writes OUT.md and one report folder per set under OUT/ (default docs/benchmarks/face_eval)")
    ap.add_argument("--no-card", action="store_true", help="do not record the figures on the model's card")
    ap.add_argument("--balance", type=float, help="prior correction (default: the card's)")
    ap.add_argument("--sweep", default="0,0.25,0.5,0.75,1", help="balances of the second table ('' for none)")
    args = ap.parse_args()

    from emotion_keras.backend import active_backend
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text
    from emotion_keras.models.store import CARD_FILE, read_card

    card = read_card(args.model)
    sweep = [float(b) for b in args.sweep.split(",") if b.strip()]
    shipped = args.model.resolve() == (ROOT / "saved_models" / "face").resolve()
    flags = (("" if shipped else f"--model {args.model} ") + f"--tta {args.tta}"
             + (f" --balance {args.balance:g}" if args.balance is not None else ""))
    lines = [f"# {card.get('name', args.model.name)} on every labelled face set here", "",
             f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/face_eval.py {flags}` "
             f"(protocol in its docstring), backend {active_backend()}. Model: {card.get('name')} "
             f"({card.get('parameters', 0):,} parameters), trained on {(card.get('data') or {}).get('corpus')}.", "",
             "| set | faces | accuracy | UAR | macro-F1 | balance | protocol |", "|---|---:|---:|---:|---:|---:|---|"]
    figures, swept = {}, []
    for key, label, rep, path in evaluate_sets(args.model, args.data, args.tta, args.out, args.balance, sweep):
        if rep is None:
            lines.append(f"| {label} | | | | | | not found at {path} |")
            continue
        lines.append(f"| {label} | {rep['n']:,} | {rep['accuracy']:.3f} | {rep['uar']:.3f} | "
                     f"{rep['macro_f1']:.3f} | {rep['balance']:g} | {rep['protocol']} |")
        print(lines[-1], flush=True)
        figures[f"{key}_{args.tta}"] = {k: rep[k] for k in ("accuracy", "uar", "macro_f1", "n", "balance")} | {
            "protocol": f"{rep['protocol']}; prior correction balance {rep['balance']:g} (benchmarks/face_eval.py)"}
        swept.append((label, rep.get("balance_sweep", [])))
    if sweep and swept:
        lines += ["", "## The prior correction: accuracy (UAR) at each balance", "",
                  "The same predictions with the decision moved from the training class frequencies (balance 0) "
                  "towards equal ones (balance 1): `p / prior ** balance` on the calibrated probabilities "
                  "(emotion_keras.calibration). FER+ Valid has the training corpus's frequencies; CK+ has no "
                  "neutral faces and wild_faces about equal classes.", "",
                  "| set | " + " | ".join(f"balance {b:g}" for b in sweep) + " |",
                  "|---|" + "---:|" * len(sweep)]
        for label, rows in swept:
            lines.append(f"| {label} | " + " | ".join(f"{r['accuracy']:.3f} ({r['uar']:.3f})" for r in rows) + " |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    if figures and not args.no_card:  # the card carries the cross-corpus figures next to its validation
        card.setdefault("metrics", {}).update(figures)  # evaluate_face with ``out`` left the card as read
        atomic_write_json(args.model / CARD_FILE, card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
