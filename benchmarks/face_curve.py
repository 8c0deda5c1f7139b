"""Validation accuracy against training time of one run -> docs/benchmarks/face_curve.{md,png}.

A run trained in stages (a second stage started with ``face train --init-from`` the first's model)
is given as its run directories in order; their times add up and the table names each stage.
``--compare`` adds other runs (an ensemble's other members, a run on other labels) as curves of their
own, each timed from its start, so one figure shows what each budget bought.
Reads each run directory's ``history.csv`` (``epoch_seconds`` per epoch, written by ``train.fit``) or,
for runs made before that column existed, the epoch times Keras printed with ``--verbose 2``
(``441/441 - 758s - ...``) from ``--log``. The curve is what a CPU budget buys: it shows where the
accuracy stands after each epoch and how much time a target would need at that slope.

``--held-out`` also measures each stage's model as ``benchmarks/face_eval.py`` does (``--tta``,
default flip), on its four sets (the cross-corpus CK+48 and wild_faces among them), against the
minutes that made it, and
estimates the minutes each of the issue's targets would need if accuracy kept rising as it did from
stage to stage: a least-squares line of accuracy on the logarithm of the minutes. The stages differ
in more than time (rate, teacher, start), so the estimate is an order of magnitude, not a promise.

    python benchmarks/face_curve.py --run-dir runs/face/NAME [runs/face/STAGE2 ...] \
        [--log train.log [-]] [--label "..."] [--compare runs/face/OTHER ...] [--held-out [--tta flip]]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def curve(run_dir: Path, log: Path | None = None) -> list[dict]:
    from emotion_keras.train import read_history

    rows = read_history(run_dir)
    seconds = [r.get("epoch_seconds") for r in rows]
    if log is not None and not all(seconds):
        printed = [float(s) for s in re.findall(r"^\d+/\d+ - (\d+)s - ", log.read_text(), re.M)]
        seconds = printed[:len(rows)]
    if len(seconds) < len(rows) or not all(seconds):
        raise SystemExit(f"{run_dir}: no epoch times (history.csv has no epoch_seconds; pass --log)")
    total, out = 0.0, []
    for r, s in zip(rows, seconds):
        total += s
        out.append({"epoch": int(r["epoch"]) + 1, "minutes": round(total / 60, 1),
                    "val_accuracy": r.get("val_accuracy"), "val_uar": r.get("val_uar"),
                    "accuracy": r.get("accuracy")})
    return out


def log_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of the least-squares line of accuracy on ln(minutes) through ``points`` =
    ``[(minutes, accuracy), ...]``; None for fewer than two distinct times."""
    import numpy as np

    x = np.log([m for m, _ in points])
    if len(points) < 2 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, [a for _, a in points], 1)
    return float(slope), float(intercept)


def minutes_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """The minutes at which accuracy reaches ``target`` on :func:`log_fit`'s line (``inf`` beyond
    10^12); None where it does not rise."""
    fit = log_fit(points)
    if not fit or fit[0] <= 1e-9:
        return None
    exponent = (target - fit[1]) / fit[0]
    return math.exp(exponent) if exponent < 12 * math.log(10) else math.inf


def held_out_table(stages: list[tuple[Path, float]], tta: str, data: Path) -> list[str]:
    """Markdown: each stage's model (its run directory, ``minutes`` of training behind it) on
    face_eval.py's sets, and the minutes each target would need at the slope of the stages."""
    import tempfile

    from face_eval import SETS, TARGETS, evaluate_sets

    acc: dict[str, list[tuple[float, float]]] = {key: [] for key, *_ in SETS}
    lines = [f"## Held-out accuracy of each stage's model ({tta} TTA)", "",
             f"Each stage's saved model by `benchmarks/face_eval.py --tta {tta}` (its protocol and the card's "
             "prior correction), against the training minutes of this chain's stages up to it (a teacher's own "
             "training is not counted).", "",
             "| stage | run | minutes | " + " | ".join(label for *_, label in SETS) + " |",
             "|---:|---|---:|" + "---:|" * len(SETS)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (run_dir, minutes) in enumerate(stages, start=1):
            cells = []
            for key, _, rep, _ in evaluate_sets(run_dir, data, tta, Path(tmp) / str(i)):
                cells.append("" if rep is None else f"{rep['accuracy']:.3f}")
                if rep is not None:
                    acc[key].append((minutes, rep["accuracy"]))
            lines.append(f"| {i} | `{run_dir.name}` | {minutes:.0f} | " + " | ".join(cells) + " |")
    lines += ["", "Minutes a target needs if accuracy kept rising with ln(minutes) as from stage to stage "
              "(least squares over the stages; the stages differ in rate, teacher and start too, so this is an "
              "order of magnitude):", "",
              "| set | target | best so far | gain per doubling of the minutes | minutes needed |",
              "|---|---:|---:|---:|---:|"]
    for key, _, _, label in SETS:
        points = acc[key]
        if not points:
            continue
        best = max(a for _, a in points)
        fit = log_fit(points)
        if best >= TARGETS[key]:
            needed = f"reached ({min(m for m, a in points if a >= TARGETS[key]):.0f})"
        else:
            m = minutes_to_reach(points, TARGETS[key])
            needed = ("no estimate: not rising" if m is None else "over a million" if m > 1e6
                      else f"{m:,.0f}")
        per_doubling = "" if fit is None else f"{round(100 * fit[0] * math.log(2), 1) + 0.0:+.1f} points"
        lines.append(f"| {label} | {TARGETS[key]:.2f} | {best:.3f} | {per_doubling} | {needed} |")
    return lines + [""]


def validation_protocol(run_dir: Path) -> str:
    """The protocol sentence of a finished run's validation figure (its card), or ''."""
    import json

    try:
        card = json.loads((run_dir / "card.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(((card.get("metrics") or {}).get("validation") or {}).get("protocol", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, nargs="+", required=True, help="run directories, stage by stage")
    ap.add_argument("--log", nargs="*", default=[],
                    help="each stage's --verbose 2 log, in the same order ('-' for a stage without one)")
    ap.add_argument("--label", default="")
    ap.add_argument("--compare", type=Path, nargs="*", default=[],
                    help="other run directories, each drawn as its own curve (one stage each)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "face_curve")
    ap.add_argument("--held-out", action="store_true", help="also measure each stage's model on face_eval.py's sets")
    ap.add_argument("--tta", default="flip", choices=("none", "flip", "ten_crop"),
                    help="test-time views of --held-out (default flip, what `predict` uses)")
    ap.add_argument("--data", type=Path, default=None, help="where face_eval.py's sets are (its default)")
    args = ap.parse_args()
    logs = [None if x in ("", "-") else Path(x) for x in args.log] + [None] * len(args.run_dir)
    rows, offset, stage_ends = [], 0.0, []
    for stage, (run_dir, log) in enumerate(zip(args.run_dir, logs), start=1):
        part = curve(run_dir, log)
        for r in part:
            r.update(stage=stage, minutes=round(r["minutes"] + offset, 1))
        offset = part[-1]["minutes"] if part else offset
        stage_ends.append((run_dir, offset))
        rows += part
    names = " + ".join(d.name for d in args.run_dir)
    series = [(names if args.compare else args.label or names, rows)]  # with others, each curve by its run
    for run_dir in args.compare:
        series.append((run_dir.name, [{**r, "stage": 1} for r in curve(run_dir)]))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emotion_keras.data.cache import atomic_write_text

    fig, ax = plt.subplots(figsize=(6, 3.5) if len(series) == 1 else (7, 4.2), dpi=110)
    for i, (label, part) in enumerate(series):
        color = f"C{i}"
        mins = [r["minutes"] for r in part]
        ax.plot(mins, [r["val_accuracy"] for r in part], "o-", ms=3, color=color,
                label="validation accuracy" if len(series) == 1 else f"{label}: validation")
        ax.plot(mins, [r["accuracy"] for r in part], "--", alpha=0.5, color=color,
                label="training accuracy" if len(series) == 1 else f"{label}: training")
    for r in rows[1:]:
        if r["epoch"] == 1:  # a later stage of the first run starts here
            ax.axvline(rows[rows.index(r) - 1]["minutes"], color="grey", lw=0.8, ls=":")
    ax.set_xlabel("training wall time (minutes)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7 if len(series) > 1 else None)
    ax.set_title(textwrap.fill(args.label or names, 90), fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out.with_suffix(".png"))
    runs = " and ".join(f"`{d.name}`" for d in [*args.run_dir, *args.compare])
    lines = [f"# Accuracy against training time: {args.label or names}", "",
             f"From {runs} by `benchmarks/face_curve.py` (epoch wall times on the machine "
             "that trained each; see each run's card for its protocol and validation set).", "",
             f"![curve]({args.out.with_suffix('.png').name})", ""]
    for (label, part), run_dir in zip(series, [args.run_dir[-1], *args.compare]):
        if len(series) > 1:
            lines += [f"## {label}", ""]
        lines += [f"Validation: {p}.", ""] if (p := validation_protocol(run_dir)) else []
        lines += ["| stage | epoch | minutes | validation accuracy | validation UAR | training accuracy |",
                  "|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {r['epoch']} | {r['minutes']} | {r['val_accuracy']:.4f} | {r['val_uar']:.4f} "
                  f"| {r['accuracy']:.4f} |" for r in part]
        lines.append("")
    if args.held_out:
        from face_eval import DEFAULT_DATA

        lines[6:6] = held_out_table(stage_ends, args.tta, args.data or DEFAULT_DATA)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines).rstrip() + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
