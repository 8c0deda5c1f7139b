#!/usr/bin/env python3
"""Report a KerasTuner search: ``docs/benchmarks/tuning.json`` and ``tuning.md`` from a project dir.

Reads what the search left on disk (KerasTuner's ``trial.json`` and ``oracle.json``, and the
``run.json`` / ``search.json`` that ``tuning.search`` adds: wall time, device, configs, epochs) and
writes, without Keras:

* the search: task, tuner, objective, space, split protocol, sessions, trials completed/failed,
  wall time, summed trial time and GPU time;
* the best trial: score, hyperparameters, the model and training configs it stands for;
* ``rows``: the comparison of every model family tried (all on the same split: one project is one
  split), best and mean score per family; ``trials``: one row per trial.

The JSON has the shape ``emotion_keras.results.comparison_rows`` reads (``rows`` plus scalar
metadata), so the dashboard shows it like any comparison; ``--comparison`` also drops a copy as
``comparison.json`` in the project directory, where the dashboard's discovery finds it.

    python benchmarks/tuning_report.py tuning_runs/face --label "CPU smoke search"
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emotion_keras.data.cache import atomic_write_json, atomic_write_text  # noqa: E402
from emotion_keras.results import read_trial  # noqa: E402

# What names a "model family" per task: the architectural choices, not the training knobs. A fusion
# head on descriptor vectors has no pooling choice; its family is then its layer sizes.
FAMILY_KEYS = {
    "face": ("backbone", "attention", "geometry"),
    "speech": ("architecture", "vector_architecture", "rnn"),  # vector_architecture: over functionals
    "fusion": ("pooling",),
}
FALLBACK_KEYS = {"fusion": ("projection", "hidden")}


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def family(task: str, hp: dict[str, Any]) -> str:
    parts = []
    for key in FAMILY_KEYS.get(task, ()):
        if key not in hp:
            continue
        v = hp[key]
        if key == "attention":
            parts.append("no attention" if v == "off" else f"attention {v}")
        elif key == "geometry":
            parts.append("+ geometry" if v else "")
        else:
            parts.append(str(v))
    if not parts:
        parts = [f"{k} {hp[k]}" for k in FALLBACK_KEYS.get(task, ()) if k in hp]
    return " ".join(p for p in parts if p) or "default"


def collect(project: Path) -> dict[str, Any]:
    """Everything the report needs from ``project`` (a KerasTuner project directory)."""
    if not project.is_dir():
        raise SystemExit(f"{project}: no such project directory")
    search = _load(project / "search.json") or {}
    oracle = _load(project / "oracle.json") or {}
    task = search.get("task") or "?"
    trials = []
    for path in sorted(project.glob("trial_*/trial.json")):
        data = _load(path)
        if not isinstance(data, dict):
            continue
        t = read_trial(data, path)
        run = _load(path.parent / "run.json") or {}
        fit = run.get("fit") or {}
        t.update(run_seconds=run.get("seconds"), gpu_seconds=run.get("gpu_seconds", 0.0),
                 device=(run.get("device") or {}).get("device"), tuner_id=run.get("tuner_id"),
                 parameters=fit.get("parameters"), epochs_run=fit.get("epochs_run"),
                 best_epoch=fit.get("best_epoch"), model_config=run.get("model_config"),
                 train_config=run.get("train_config"),
                 family=family(task, t["hyperparameters"]))
        trials.append(t)
    if not trials:
        raise SystemExit(f"{project}: no trial_*/trial.json files: not a KerasTuner project (yet)")
    return {"project": project, "search": search, "oracle": oracle, "task": task, "trials": trials}


def build_report(info: dict[str, Any], label: str, note: str | None = None) -> dict[str, Any]:
    search, trials, task = info["search"], info["trials"], info["task"]
    objective = search.get("objective") or next((t["objective"] for t in trials if t["objective"]), None)
    done = [t for t in trials if t["status"] == "COMPLETED" and _finite(t["score"])]
    best = max(done, key=lambda t: t["score"]) if done else None
    sessions = search.get("sessions") or []
    devices = sorted({f"{s.get('backend')}/{s.get('device')} ({s.get('device_name')})" for s in sessions})
    metric_names = sorted({k for t in done for k in t["metrics"]})

    rows = []
    for fam in sorted({t["family"] for t in trials}):
        ts = [t for t in trials if t["family"] == fam]
        ok = [t for t in ts if t in done]
        top = max(ok, key=lambda t: t["score"]) if ok else None
        row = {"family": fam, "trials": len(ts), "completed": len(ok),
               "best_score": round(top["score"], 4) if top else None,
               "mean_score": round(statistics.fmean(t["score"] for t in ok), 4) if ok else None,
               "best_trial": top["trial_id"] if top else None,
               "parameters": top.get("parameters") if top else None,
               "seconds": round(sum(t.get("run_seconds") or 0 for t in ts), 1)}
        if top:
            row.update({name: round(top["metrics"][name], 4) for name in metric_names
                        if name.startswith("val_") and name in top["metrics"]})
        rows.append(row)
    rows.sort(key=lambda r: -(r["best_score"] if r["best_score"] is not None else -1))

    trial_rows = []
    for t in sorted(trials, key=lambda t: str(t["trial_id"])):
        trial_rows.append({
            "trial": t["trial_id"], "status": t["status"], "family": t["family"],
            "score": None if t["score"] is None else round(t["score"], 4),
            "best_epoch": t.get("best_epoch"), "epochs_run": t.get("epochs_run"),
            "seconds": t.get("run_seconds"), "parameters": t.get("parameters"),
            "tuner_id": t.get("tuner_id"), "hyperparameters": t["hyperparameters"],
            "metrics": {k: round(v, 4) for k, v in t["metrics"].items()}})

    trial_seconds = sum(t.get("run_seconds") or 0 for t in trials)
    gpu_seconds = sum(t.get("gpu_seconds") or 0 for t in trials)
    return {
        "title": f"KerasTuner search: {task}",
        "label": label,
        "note": note or "",
        "task": task,
        "tuner": search.get("tuner"),
        "objective": objective,
        "direction": search.get("direction", "max"),
        "space": search.get("space"),
        "protocol": search.get("protocol"),
        "corpus": (search.get("data") or {}).get("corpus"),
        "classes": ", ".join(search.get("classes") or []),
        "max_trials": search.get("max_trials"),
        "epochs_per_trial": search.get("epochs"),
        "trials": len(trials),
        "completed": len(done),
        "failed": sum(1 for t in trials if t["status"] in ("FAILED", "INVALID")),
        "sessions": len(sessions),
        "search_wall_seconds": round(sum(s.get("seconds") or 0 for s in sessions), 1),
        "trial_seconds": round(trial_seconds, 1),
        "gpu_seconds": round(gpu_seconds, 1),
        "devices": ", ".join(devices) or "unknown",
        "best_trial": best["trial_id"] if best else None,
        "best_score": round(best["score"], 4) if best else None,
        "best": None if best is None else {
            "trial": best["trial_id"], "score": best["score"], "family": best["family"],
            "best_epoch": best.get("best_epoch"), "hyperparameters": best["hyperparameters"],
            "metrics": best["metrics"], "model_config": best.get("model_config"),
            "train_config": best.get("train_config")},
        "project_dir": str(info["project"]),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "trial_table": trial_rows,
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def to_markdown(rep: dict[str, Any]) -> str:
    lines = [f"# {rep['title']}", "", f"**{rep['label']}**", ""]
    if rep["note"]:
        lines += [rep["note"], ""]
    lines += [
        f"- tuner: {rep['tuner']}, objective: {rep['objective']} ({rep['direction']}), space: {rep['space']}",
        f"- data: {rep['corpus']}; classes: {rep['classes']}",
        f"- protocol (every trial, same split): {rep['protocol']}",
        f"- trials: {rep['completed']} completed, {rep['failed']} failed, of {rep['trials']} "
        f"(max {rep['max_trials']}, at most {rep['epochs_per_trial']} epochs each), "
        f"{rep['sessions']} session(s)",
        f"- time: search wall {rep['search_wall_seconds']} s, trials {rep['trial_seconds']} s, "
        f"GPU {rep['gpu_seconds']} s; devices: {rep['devices']}",
        "",
    ]
    b = rep["best"]
    if b:
        lines += [f"## Best trial: {b['trial']} ({b['family']}), {rep['objective']} = {b['score']:.4f}", ""]
        lines += ["| hyperparameter | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in b["hyperparameters"].items()]
        if b.get("best_epoch"):
            lines += [f"| (best epoch) | {b['best_epoch']} |"]
        lines += [""]
    metric_cols = sorted({k for r in rep["rows"] for k in r if k.startswith("val_")})
    lines += ["## Model families (same split)", "",
              "| family | trials | best score | mean score | best trial | " + " | ".join(metric_cols)
              + " | parameters | seconds |",
              "|---|---|---|---|---|" + "---|" * len(metric_cols) + "---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['family']} | {r['completed']}/{r['trials']} | {_fmt(r['best_score'])} | "
                     f"{_fmt(r['mean_score'])} | {_fmt(r['best_trial'])} | "
                     + " | ".join(_fmt(r.get(c)) for c in metric_cols)
                     + f" | {_fmt(r['parameters'])} | {_fmt(r['seconds'])} |")
    lines += ["", "## Trials", "", "| trial | status | family | score | best epoch | seconds | hyperparameters |",
              "|---|---|---|---|---|---|---|"]
    for t in rep["trial_table"]:
        hp = ", ".join(f"{k}={_fmt(v)}" for k, v in t["hyperparameters"].items() if not k.startswith("tuner/"))
        lines.append(f"| {t['trial']} | {t['status']} | {t['family']} | {_fmt(t['score'])} | "
                     f"{_fmt(t['best_epoch'])} | {_fmt(t['seconds'])} | {hp} |")
    lines += ["", f"Generated {rep['generated']} by `benchmarks/tuning_report.py` from `{rep['project_dir']}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("project", type=Path, help="the tuning project directory (e.g. tuning_runs/face)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "tuning",
                   help="output path without extension (default docs/benchmarks/tuning)")
    p.add_argument("--label", default="KerasTuner search",
                   help="what this search is (e.g. 'CPU smoke search, not the tuned result')")
    p.add_argument("--note", help="a sentence printed under the label")
    p.add_argument("--comparison", action="store_true",
                   help="also write <project>/comparison.json for the dashboard's discovery")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="copy the project's JSON records (trials, runs, search, oracle; no weights) and the "
                        "comparison.json here, e.g. under docs/benchmarks, where the dashboard reads them")
    args = p.parse_args(argv)
    rep = build_report(collect(args.project), args.label, args.note)
    atomic_write_json(args.out.with_suffix(".json"), rep)
    atomic_write_text(args.out.with_suffix(".md"), to_markdown(rep))
    if args.comparison:
        atomic_write_json(args.project / "comparison.json", rep)
    if args.keep:
        for path in sorted(args.project.rglob("*.json")):
            if path.name != "comparison.json":
                target = args.keep / path.relative_to(args.project)
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(target, path.read_text())
        atomic_write_json(args.keep / "comparison.json", rep)
    print(f"wrote {args.out.with_suffix('.json')} and .md: {rep['completed']} trials, best "
          f"{rep['objective']}={rep['best_score']} ({rep['best']['family'] if rep['best'] else '-'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
