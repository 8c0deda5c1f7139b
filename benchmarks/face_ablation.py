"""Ablation of the FER training recipe at one fixed training budget -> docs/benchmarks/face_ablation.{json,md}.

Protocol: every row trains the same 317k-parameter VGG-style CNN with self-attention (width 16,
depth 4) from scratch on the same stratified subset of FER+ ``FER2013Train`` (``--train-limit``
faces, seed 0; 7 classes, contempt left out) for the same number of epochs (``--epochs``, batch 64,
AdamW 2e-3 + cosine unless the row says otherwise, no class weights): the budget is the number of
images seen, so rows are comparable whatever the machine's load. Rows are cumulative: each adds one
component to the row before it, except the alternatives marked "instead of". Each row is scored
(flip TTA; crop rows also ten-crop TTA) on stratified subsets (``--val-limit``, seed 1) of

* FER+ ``FER2013Valid`` with majority labels (the FER+ paper's protocol), which also picks the
  epoch, and
* FER2013 PublicTest with the original FER2013 labels (the same faces, other labels).

A finished row is kept (``<out>/<row>/result.json``), so a killed run resumes at the next row, and
the report always holds every finished row. ``--seeds 0,1`` also trains rows with other training
seeds (same images): the report gives their spread, the noise a change between rows must exceed.

    python benchmarks/face_ablation.py [--data ../shared/data] [--train-limit 3000] [--epochs 5]
    python benchmarks/face_ablation.py ... --only majority,crop40 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = "%Y-%m-%dT%H:%M:%S%z"
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = Path(os.environ.get("EMOTION_KERAS_DATA", ROOT.parent / "shared" / "data"))
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
BASE_MODEL = {"backbone": "vgg", "width": 16, "depth": 4, "attention": True}
BASE_TRAIN = {"learning_rate": 0.002, "label_smoothing": 0.1, "class_weights": False, "early_stopping": 0,
              "monitor": "val_accuracy", "batch_size": 64, "verbose": 2}

# (row name, what it changes, labels, model changes, train changes); cumulative unless "instead of".
# An "instead of" row is compared with the row that lacks its component, not with the row above it.
BASELINE = {"cutmix": "ema", "sgd": "mixup"}
ROWS = [
    ("majority", "FER+ majority labels, shipped recipe", "majority", {}, {}),
    ("probability", "+ vote distributions as soft targets", "probability", {}, {"label_smoothing": 0.0}),
    ("crop40", "+ 40 px crops of 48 (multi-crop training)", "probability", {"crop": 40, "max_shift": 0.1}, {}),
    ("erase", "+ random erasing (p 0.25)", "probability", {"erase": 0.25}, {}),
    ("ema", "+ weight EMA (0.995)", "probability", {}, {"ema": 0.995}),
    ("mixup", "+ mixup (alpha 0.2)", "probability", {}, {"mixup": 0.2}),
    ("cutmix", "CutMix (alpha 1.0) instead of mixup", "probability", {}, {"mixup": 0.0, "cutmix": 1.0}),
    ("sgd", "SGD + Nesterov (lr 0.05) instead of AdamW, with mixup", "probability", {},
     {"cutmix": 0.0, "mixup": 0.2, "optimizer": "sgd", "learning_rate": 0.05}),
]


def run(data: Path, out: Path, train_limit: int, epochs: int, val_limit: int, only: list[str] | None,
        seeds: list[int] | None = None, doc: Path = ROOT / "docs" / "benchmarks") -> dict:
    """Train and score the rows (``only`` some of them, for each of ``seeds``) that have no result yet;
    the report holds every finished row, so a partial rerun never drops earlier ones."""
    from emotion_keras.data.cache import atomic_write_json

    ferplus, fer2013 = data / "ferplus", data / "fer2013"
    for p in (ferplus, fer2013):
        if not p.is_dir():
            raise SystemExit(f"{p}: corpus not found (this benchmark needs FER+ and FER2013)")
    out.mkdir(parents=True, exist_ok=True)
    seeds = seeds or [0]
    finished = {int(d.name.rsplit("-seed", 1)[1]) for d in out.glob("*-seed*") if (d / "result.json").exists()}
    model, train = dict(BASE_MODEL), dict(BASE_TRAIN, epochs=epochs)
    rows, repeats = [], []
    for name, change, labels, model_delta, train_delta in ROWS:
        model.update(model_delta)
        train.update(train_delta)
        for seed in sorted({0, *seeds, *finished}):
            done = run_dir_of(out, name, seed) / "result.json"
            trained = not done.exists() and seed in seeds and (not only or name in only)
            if trained:
                atomic_write_json(done, _train_row(name, change, labels, dict(model), dict(train, seed=seed),
                                                   ferplus, fer2013, done.parent, train_limit, val_limit))
            elif not done.exists():
                continue
            row = json.loads(done.read_text())
            # rows from before rows were stamped: the result file's time is when the row finished
            row.setdefault("measured", time.strftime(STAMP, time.localtime(done.stat().st_mtime)))
            (repeats if seed else rows).append(row)
            if trained:  # the report so far; rows read back are reported once, at the end
                write(out, rows, train_limit, epochs, val_limit, doc, repeats)
    return write(out, rows, train_limit, epochs, val_limit, doc, repeats)


def run_dir_of(out: Path, name: str, seed: int) -> Path:
    return out / (name if seed == 0 else f"{name}-seed{seed}")


def _train_row(name: str, change: str, labels: str, model: dict, train: dict, ferplus: Path, fer2013: Path,
               run_dir: Path, train_limit: int, val_limit: int) -> dict:
    from emotion_keras.config import TrainConfig
    from emotion_keras.pipelines.face import evaluate_face, train_face
    from emotion_keras.pipelines.splits import load_face_split
    from emotion_keras.preprocess.faces import FacePrepConfig

    spec = f"{'ferplus' if labels == 'majority' else 'ferplus-probability'}:{ferplus}"
    # the same training images for every seed: the seed changes initial weights, augmentation and order
    split = load_face_split(spec, limit=train_limit, val_limit=val_limit, classes=CLASSES)
    t0 = time.perf_counter()
    res = train_face(split, FacePrepConfig(), model, TrainConfig.from_dict(train), run_dir,
                     name=name, classes=CLASSES, progress=False)
    seconds = time.perf_counter() - t0
    row = {"name": name, "change": change, "labels": labels, "model": model, "train": train,
           "seed": train.get("seed", 0), "train_images": len(split.train), "epochs": train["epochs"],
           "train_seconds": round(seconds, 1), "parameters": res["card"]["parameters"],
           "best_epoch": _best_epoch(res["card"])}
    for tta in ["flip"] + (["ten_crop"] if model.get("crop") else []):
        for key, spec_eval in (("ferplus_valid", f"ferplus:{ferplus}"), ("fer2013_publictest", f"fer2013:{fer2013}")):
            rep = evaluate_face(run_dir, spec_eval, split="validation", limit=val_limit, seed=1,
                                out=run_dir / f"eval-{key}-{tta}", progress=False, tta=tta)
            row[f"{key}_{tta}"] = {k: round(rep[k], 4) for k in ("accuracy", "uar", "macro_f1")}
            row[f"{key}_protocol"] = rep["protocol"]
    return {**row, "measured": time.strftime(STAMP), "load_average": [round(x, 2) for x in os.getloadavg()]}


def _best_epoch(card: dict) -> int | None:
    """The epoch whose weights were kept (the monitor's best), 1-based: an early best says the row overfits."""
    val = card.get("history", {}).get(BASE_TRAIN["monitor"])
    return int(max(range(len(val)), key=val.__getitem__)) + 1 if val else None


def _card(run_dir: Path) -> dict:
    path = run_dir / "card.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _se(rows: list[dict], n: int) -> str:
    """sqrt(p(1-p)/n) in points at the first row's accuracies, FER+ Valid / PublicTest."""
    if not rows:
        return "unknown"
    f, p = (rows[0][k]["accuracy"] for k in ("ferplus_valid_flip", "fer2013_publictest_flip"))
    return " / ".join(f"{100 * (a * (1 - a) / n) ** 0.5:.1f}" for a in (f, p)) + " points (FER+ Valid / PublicTest)"


def _span(stamps: list[str]) -> str:
    if not stamps:
        return "(no rows yet)"
    return stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} to {stamps[-1]}"


def _delta(now: float, before: float) -> str:
    return f"{100 * (now - before):+.1f}"


def _best(row: dict) -> tuple[float, float]:
    """(FER+ Valid, PublicTest) accuracy at the row's best TTA: ten-crop where it crops, else flip."""
    tta = "ten_crop" if "ferplus_valid_ten_crop" in row else "flip"
    return row[f"ferplus_valid_{tta}"]["accuracy"], row[f"fer2013_publictest_{tta}"]["accuracy"]


def write(out: Path, rows: list[dict], train_limit: int, epochs: int, val_limit: int,
          doc: Path = ROOT / "docs" / "benchmarks", repeats: list[dict] | None = None) -> dict:
    from emotion_keras.data.cache import atomic_write_json, atomic_write_text

    repeats = repeats or []
    # when the rows were trained, not when the report was (re)built from them
    stamps = sorted(r["measured"] for r in rows + repeats if r.get("measured"))
    loads = [x for r in rows + repeats for x in r.get("load_average", [])[:1]]
    report = {"date": stamps[-1] if stamps else None, "machine": f"{os.cpu_count()} CPU cores "
              f"({platform.machine()}), no GPU", "backend":
              os.environ.get("KERAS_BACKEND", "tensorflow"), "train_limit": train_limit, "epochs": epochs,
              "val_limit": val_limit, "rows": rows, "repeats": repeats}
    atomic_write_json(doc / "face_ablation.json", report)
    lines = ["# Face recipe ablation (fixed training budget)", "",
             f"Rows trained {_span(stamps)} on {report['machine']}, backend {report['backend']}, by "
             "`benchmarks/face_ablation.py` (protocol in its docstring). Budget per row: "
             f"{train_limit:,} FER+ training faces x {epochs} epochs (same images, training seed 0); VGG-style "
             "CNN + self-attention, width 16 (317k parameters), from scratch. Scores: accuracy (UAR) on "
             f"stratified subsets of {val_limit:,} faces of FER+ FER2013Valid (majority labels) and of "
             "FER2013 PublicTest (original labels), flip TTA; ten-crop TTA where the row crops. Rows are "
             "cumulative. " + (f"One-minute load average at the end of a row: {min(loads):.1f}-{max(loads):.1f}; "
                                if loads else "") + "train seconds depend on load, the accuracies do not.", "",
             "The change columns compare a row's best score (ten-crop where it crops, else flip) with the "
             "row before it, in accuracy points, FER+ Valid / PublicTest; an \"instead of\" row is compared "
             "with the row without its component (CutMix with the row before mixup, "
             "SGD with the mixup row). Best epoch: the epoch kept (the best FER+ Valid accuracy). "
             f"Noise: one standard error of an accuracy on {val_limit:,} faces is {_se(rows, val_limit)}, "
             "before seed-to-seed variation (below, where measured); a change within about two of them "
             "does not separate.", "",
             "| row | change | FER+ Valid acc (UAR) | PublicTest acc (UAR) | ten-crop FER+ / PublicTest "
             "| change (points) | best epoch | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    scores = {}  # row name (and "_previous") -> its _best
    for r in rows:
        f, p = r["ferplus_valid_flip"], r["fer2013_publictest_flip"]
        ten = (f"{r['ferplus_valid_ten_crop']['accuracy']:.3f} / {r['fer2013_publictest_ten_crop']['accuracy']:.3f}"
               if "ferplus_valid_ten_crop" in r else "")
        now = _best(r)
        ref = scores.get(BASELINE.get(r["name"], "_previous"))
        change = "" if ref is None else f"{_delta(now[0], ref[0])} / {_delta(now[1], ref[1])}"
        epoch = r.get("best_epoch") or _best_epoch(_card(out / r["name"]))
        lines.append(f"| {r['name']} | {r['change']} | {f['accuracy']:.3f} ({f['uar']:.3f}) | "
                     f"{p['accuracy']:.3f} ({p['uar']:.3f}) | {ten} | {change} | {epoch or ''} | "
                     f"{r['train_seconds']:.0f} |")
        scores[r["name"]] = scores["_previous"] = now
    command = (f"python benchmarks/face_ablation.py --train-limit {train_limit} --epochs {epochs} "
               f"--val-limit {val_limit}")
    lines += ["", f"Command: `{command}`", ""]
    if repeats:
        lines += _seed_section(rows, repeats, command)
    atomic_write_text(doc / "face_ablation.md", "\n".join(lines))
    return report


def _seed_section(rows: list[dict], repeats: list[dict], command: str) -> list[str]:
    """The rows trained again with other seeds (same images, same budget): the spread is the noise a
    change between rows has to exceed."""
    seed0 = {r["name"]: r for r in rows}
    names = [n for n in seed0 if any(r["name"] == n for r in repeats)]
    seeds = sorted({r["seed"] for r in repeats})
    lines = ["## Training seed", "",
             "The same rows trained again with other training seeds (initial weights, augmentation, order); "
             "same images and budget. Best-TTA accuracy, FER+ Valid / PublicTest; spread = largest minus "
             "smallest, in points.", "",
             "| row | " + " | ".join(f"seed {s}" for s in [0, *seeds]) + " | spread (points) |",
             "|---|" + "---:|" * (len(seeds) + 2)]
    for name in names:
        by_seed = {0: seed0[name], **{r["seed"]: r for r in repeats if r["name"] == name}}
        cells = ["{:.3f} / {:.3f}".format(*_best(by_seed[s])) if s in by_seed else "" for s in [0, *seeds]]
        spread = [100 * (max(col) - min(col)) for col in zip(*map(_best, by_seed.values()))]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {spread[0]:.1f} / {spread[1]:.1f} |")
    only = ",".join(names)
    lines += ["", f"Command: `{command} --only {only} --seeds {','.join(str(s) for s in [0, *seeds])}`", ""]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "face" / "ablation")
    ap.add_argument("--train-limit", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--val-limit", type=int, default=1000)
    ap.add_argument("--only", help="comma-separated row names (the cumulative changes still apply)")
    ap.add_argument("--seeds", default="0",
                    help="comma-separated training seeds (default 0); other seeds are reported as the noise")
    args = ap.parse_args()
    run(args.data, args.out, args.train_limit, args.epochs, args.val_limit,
        args.only.split(",") if args.only else None, [int(s) for s in args.seeds.split(",")])
    print((ROOT / "docs" / "benchmarks" / "face_ablation.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
