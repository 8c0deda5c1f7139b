"""Find and read the results the CLI writes, for the dashboard and for scripts.

Plain Python (no Keras, no Streamlit): model cards (``saved_models/*/card.json`` and any ``card.json``
under ``runs/``), ``comparison.json`` tables, ``evaluation.json`` reports, ``history.csv`` curves and
KerasTuner ``trial.json`` files. Nothing is hard-coded: whatever metrics, hyperparameters and splits
the files hold are what comes back. A damaged file becomes a line in ``Results.problems`` instead of
an exception, so one bad run never hides the others.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_keras.models.store import CARD_FILE, SAVED_MODELS, default_model_dir

REPO = SAVED_MODELS.parent
SKIP_DIRS = {"resume", "__pycache__", "node_modules", ".git", ".venv"}
MAX_DEPTH = 8
MAX_FILES = 20_000  # stop walking a huge tree rather than hang the dashboard
METRIC_KEYS = ("accuracy", "uar", "macro_f1", "n")
TIMING_WORDS = ("second", "time", "latency", "per_sec", "throughput", "_ms", "duration")


@dataclass
class Card:
    """One model card and the directory it sits in (``saved`` for saved_models, else ``run``)."""

    path: Path
    data: dict[str, Any]
    source: str

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.path.parent.name)

    @property
    def task(self) -> str:
        return str(self.data.get("task") or "?")

    @property
    def label(self) -> str:
        return f"{self.task}/{self.name} ({self.source}: {self.path.parent})"


@dataclass
class TuningProject:
    """A KerasTuner project directory: its trials, one dict each, and the ``search.json`` that
    ``tuning.search`` keeps beside them (objective, tuner, sessions), when there is one."""

    path: Path
    trials: list[dict[str, Any]]
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> str | None:
        if self.search.get("objective"):
            return str(self.search["objective"])
        names = {t["objective"] for t in self.trials if t.get("objective")}
        return names.pop() if len(names) == 1 else None

    @property
    def direction(self) -> str:
        if self.search.get("direction") in ("min", "max"):
            return self.search["direction"]
        dirs = {t.get("direction") for t in self.trials if t.get("direction")}
        return dirs.pop() if len(dirs) == 1 else "max"

    def summary(self) -> dict[str, Any]:
        """Tuner, objective, protocol and the wall time and backends of its sessions."""
        sessions = self.search.get("sessions") or []
        out = {k: self.search[k] for k in ("task", "tuner", "objective", "max_trials", "epochs", "protocol")
               if self.search.get(k) is not None}
        if sessions:
            out["sessions"] = len(sessions)
            out["search_seconds"] = round(sum(float(x.get("seconds") or 0) for x in sessions), 2)
            out["backends"] = ", ".join(sorted({f"{x.get('backend')}/{x.get('device')}" for x in sessions}))
        return out

    def best(self) -> dict[str, Any] | None:
        scored = [t for t in self.trials if _finite(t.get("score"))]
        if not scored:
            return None
        pick = min if self.direction == "min" else max
        return pick(scored, key=lambda t: t["score"])


@dataclass
class Results:
    roots: list[Path]
    cards: list[Card] = field(default_factory=list)
    comparisons: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    evaluations: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    histories: list[tuple[Path, list[dict[str, float]]]] = field(default_factory=list)
    tuning: list[TuningProject] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.cards or self.comparisons or self.evaluations or self.histories or self.tuning)


def default_roots() -> list[Path]:
    """Where the CLI writes: the model store, ``runs/`` and ``tuning_runs/`` (of the checkout and of
    the working directory), the checkout's ``docs/benchmarks`` (the shipped comparisons and reports),
    plus any folders in ``EMOTION_KERAS_RESULTS`` (``os.pathsep``-separated)."""
    roots = [default_model_dir("face").parent]
    for base in (REPO, Path.cwd()):
        roots += [base / "runs", base / "tuning_runs"]
    roots.append(REPO / "docs" / "benchmarks")
    extra = os.environ.get("EMOTION_KERAS_RESULTS", "")
    roots += [Path(p) for p in extra.split(os.pathsep) if p.strip()]
    return _dedupe(roots)


def _dedupe(paths) -> list[Path]:
    out, seen = [], set()
    for p in paths:
        key = Path(p).expanduser().resolve()
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def walk(roots, names: set[str]) -> dict[str, list[Path]]:
    """Every file called one of ``names`` under ``roots`` (hidden and resume folders skipped)."""
    found: dict[str, list[Path]] = {n: [] for n in names}
    count = 0
    for root in _dedupe(roots):
        if not root.is_dir():
            continue
        base_depth = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root):
            depth = len(Path(dirpath).parts) - base_depth
            dirnames[:] = sorted(d for d in dirnames
                                 if not d.startswith(".") and d not in SKIP_DIRS and depth < MAX_DEPTH)
            for f in filenames:
                count += 1
                if f in found:
                    found[f].append(Path(dirpath) / f)
            if count > MAX_FILES:
                return found
    for paths in found.values():
        paths.sort()
    return found


def read_json(path: Path, problems: list[str] | None = None) -> Any:
    """The parsed file, or ``None`` with a line in ``problems`` when it is unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if problems is not None:
            problems.append(f"{path}: not readable JSON ({type(e).__name__}: {e})")
        return None


def read_history_csv(path: Path, problems: list[str] | None = None) -> list[dict[str, float]]:
    """Rows of a Keras ``CSVLogger`` file as floats (non-numeric cells dropped)."""
    rows = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                clean = {}
                for k, v in row.items():
                    if k is None or v in ("", None):
                        continue
                    try:
                        clean[k] = float(v)
                    except (TypeError, ValueError):
                        continue
                if clean:
                    rows.append(clean)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        if problems is not None:
            problems.append(f"{path}: not a readable CSV ({e})")
    return rows


def discover(roots=None) -> Results:
    """Read everything under ``roots`` (default :func:`default_roots`)."""
    roots = _dedupe(default_roots() if roots is None else roots)
    res = Results(roots=roots)
    files = walk(roots, {CARD_FILE, "comparison.json", "evaluation.json", "history.csv", "trial.json",
                         "run.json", "search.json"})
    saved_root = default_model_dir("face").parent.resolve()
    for path in files[CARD_FILE]:
        data = read_json(path, res.problems)
        if isinstance(data, dict):
            source = "saved" if path.resolve().is_relative_to(saved_root) else "run"
            res.cards.append(Card(path, data, source))
        elif data is not None:
            res.problems.append(f"{path}: a model card must be a JSON object")
    for path in files["comparison.json"]:
        data = read_json(path, res.problems)
        if data is not None:
            meta, rows = comparison_rows(data)
            res.comparisons.append((path, meta, rows))
    for path in files["evaluation.json"]:
        data = read_json(path, res.problems)
        if isinstance(data, dict):
            res.evaluations.append((path, data))
    for path in files["history.csv"]:
        rows = read_history_csv(path, res.problems)
        if rows:
            res.histories.append((path, rows))
    runs = {p.parent: p for p in files["run.json"]}
    searches = {p.parent: p for p in files["search.json"]}
    projects: dict[Path, list[dict[str, Any]]] = {}
    for path in files["trial.json"]:
        data = read_json(path, res.problems)
        if isinstance(data, dict):
            trial = read_trial(data, path)
            if path.parent in runs:  # tuning.search's record: wall time and device of the trial
                run = read_json(runs[path.parent], res.problems)
                if isinstance(run, dict):
                    trial["seconds"] = run.get("seconds")
                    dev = run.get("device")
                    trial["device"] = (f"{dev.get('backend')}/{dev.get('device')}"
                                       if isinstance(dev, dict) else dev)
                    fit = run.get("fit")
                    trial["history"] = history_rows(fit.get("history")) if isinstance(fit, dict) else []
            projects.setdefault(path.parent.parent, []).append(trial)
    for project, trials in sorted(projects.items()):
        trials.sort(key=lambda t: str(t.get("trial_id")))
        search = read_json(searches[project], res.problems) if project in searches else None
        res.tuning.append(TuningProject(project, trials, search if isinstance(search, dict) else {}))
    return res


# --- flattening and tables -------------------------------------------------------------------

def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def flatten(obj: dict[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts to dotted keys; lists of numbers (matrices, curves) are left out of tables."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key, sep))
        elif isinstance(v, list):
            if v and all(isinstance(x, str) for x in v):
                out[key] = ", ".join(v)
        else:
            out[key] = v
    return out


_ROW_KEYS = ("rows", "models", "results", "runs", "entries", "table", "comparison")


def comparison_rows(data: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(metadata, flat rows)`` from a ``comparison.json`` of any reasonable shape: a list of rows,
    a dict holding such a list (other scalar keys become metadata), or ``{name: {metrics}}``."""
    if isinstance(data, list):
        return {}, [flatten(r) for r in data if isinstance(r, dict)]
    if not isinstance(data, dict):
        return {}, []
    lists = {k: v for k, v in data.items()
             if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    if lists:
        key = next((k for k in _ROW_KEYS if k in lists), next(iter(lists)))
        meta = {k: v for k, v in data.items() if k != key and not isinstance(v, (dict, list))}
        return meta, [flatten(r) for r in lists[key]]
    dicts = {k: v for k, v in data.items() if isinstance(v, dict)}
    if dicts:
        meta = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
        return meta, [{"name": k, **flatten(v)} for k, v in dicts.items()]
    return {}, [flatten(data)]


def read_trial(data: dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """One KerasTuner ``trial.json`` as ``{trial_id, status, score, best_step, objective, direction,
    hyperparameters: {name: value}, metrics: {name: best value}}``.

    The file does not name the objective; it is the tracked metric whose best value is the score.
    """
    hp = (data.get("hyperparameters") or {}).get("values") or {}
    tracked = ((data.get("metrics") or {}).get("metrics") or {})
    score = data.get("score")
    best: dict[str, float] = {}
    directions: dict[str, str] = {}
    for name, hist in tracked.items():
        direction = (hist or {}).get("direction", "max")
        values = []
        for obs in (hist or {}).get("observations", []):
            v = obs.get("value")
            v = v[0] if isinstance(v, list) and v else v
            if _finite(v):
                values.append(float(v))
        if values:
            best[name] = min(values) if direction == "min" else max(values)
            directions[name] = direction
    objective = None
    if _finite(score):
        close = [n for n, v in best.items() if math.isclose(v, score, rel_tol=1e-6, abs_tol=1e-9)]
        objective = next((n for n in close if n.startswith("val_")), close[0] if close else None)
    return {
        "trial_id": data.get("trial_id") or (path.parent.name if path else None),
        "status": data.get("status"),
        "score": score if _finite(score) else None,
        "best_step": data.get("best_step"),
        "objective": objective,
        "direction": directions.get(objective, "max") if objective else None,
        "hyperparameters": dict(hp),
        "metrics": best,
        "message": data.get("message"),
        "path": str(path) if path else None,
    }


def trials_table(project: TuningProject) -> list[dict[str, Any]]:
    """Flat rows, one per trial: id, status, score, then ``hp.<name>`` and ``metric.<name>``."""
    rows = []
    for t in project.trials:
        row = {"trial": t["trial_id"], "status": t["status"], "score": t["score"],
               "best_step": t["best_step"]}
        row.update({k: t[k] for k in ("seconds", "device") if t.get(k) is not None})
        row.update({f"hp.{k}": v for k, v in t["hyperparameters"].items()})
        row.update({f"metric.{k}": v for k, v in t["metrics"].items()})
        rows.append(row)
    return rows


def card_metrics(card: Card) -> list[dict[str, Any]]:
    """One row per split in the card's ``metrics``: the headline numbers and the protocol."""
    rows = []
    for split, m in (card.data.get("metrics") or {}).items():
        if not isinstance(m, dict):
            continue
        rows.append({"split": split, **{k: m.get(k) for k in METRIC_KEYS if k in m},
                     "protocol": m.get("protocol")})
    return rows


def models_table(res: Results) -> list[dict[str, Any]]:
    """The comparison of every model card and evaluation report: one row per (model, split)."""
    rows = []
    for card in res.cards:
        d = card.data
        base = {"task": card.task, "name": card.name, "source": card.source,
                "backend": d.get("backend"), "parameters": d.get("parameters"),
                "size_MB": round(d["size_bytes"] / 1e6, 2) if _finite(d.get("size_bytes")) else None,
                "date": d.get("date"), "path": str(card.path.parent)}
        if isinstance(d.get("calibration"), dict):
            base.update(temperature=d["calibration"].get("temperature"), ece=d["calibration"].get("ece_after"))
        base.update(timing(d))
        splits = card_metrics(card) or [{"split": None}]
        for m in splits:
            rows.append({**base, **m})
    for path, rep in res.evaluations:
        if not any(k in rep for k in METRIC_KEYS) or _on_card(res, path, rep):
            continue
        rows.append({"task": rep.get("task") or _guess_task(path), "name": rep.get("name") or path.parent.name,
                     "source": "evaluation", "backend": rep.get("backend"), "split": rep.get("split"),
                     **{k: rep.get(k) for k in METRIC_KEYS if k in rep}, "protocol": rep.get("protocol"),
                     **timing(rep), "path": str(path.parent)})
    return rows


def _guess_task(path: Path) -> str:
    for part in reversed(path.parts):
        if part in ("face", "speech", "fusion", "video"):
            return part
    return "?"


def timing(d: dict[str, Any]) -> dict[str, Any]:
    """Every numeric field whose name speaks of time or speed (training seconds, latency...)."""
    flat = flatten({k: v for k, v in d.items() if k not in ("metrics", "history", "versions")})
    return {k: v for k, v in flat.items()
            if _finite(v) and any(w in k.lower() for w in TIMING_WORDS)}


def card_history(card: Card) -> list[dict[str, float]]:
    """The card's per-epoch curves as rows."""
    return history_rows(card.data.get("history"))


def history_rows(h: Any) -> list[dict[str, float]]:
    """Per-epoch rows from ``{metric: [..]}`` (Keras ``History.history``) or ``[{metric: v}, ..]``."""
    if isinstance(h, list):
        return [{k: float(v) for k, v in r.items() if _finite(v)} for r in h if isinstance(r, dict)]
    if isinstance(h, dict):
        series = {k: v for k, v in h.items() if isinstance(v, list)}
        n = max((len(v) for v in series.values()), default=0)
        return [{"epoch": float(i), **{k: float(v[i]) for k, v in series.items()
                                       if i < len(v) and _finite(v[i])}} for i in range(n)]
    return []


def confusions(res: Results) -> list[dict[str, Any]]:
    """Every confusion matrix with its classes and per-class recall, from cards and evaluations."""
    out = []

    def add(label, m):
        cm, classes = m.get("confusion_matrix"), m.get("classes")
        if isinstance(cm, list) and isinstance(classes, list) and len(cm) == len(classes):
            out.append({"label": label, "classes": classes, "matrix": cm,
                        "per_class_recall": m.get("per_class_recall") or {},
                        "protocol": m.get("protocol")})

    for card in res.cards:
        classes = card.data.get("classes")
        for split, m in (card.data.get("metrics") or {}).items():
            if isinstance(m, dict):
                add(f"{card.task}/{card.name} [{card.source}] {split}", {"classes": classes, **m})
    for path, rep in res.evaluations:
        if not _on_card(res, path, rep):
            add(f"{path.parent} evaluation", rep)
    return out


def calibrations(res: Results) -> list[dict[str, Any]]:
    """Every calibration: the card's fitted temperature (ECE before/after on its validation split)
    and each evaluation report's ECE, with the reliability diagram beside it when there is one."""
    out = []
    for card in res.cards:
        cal = card.data.get("calibration")
        if isinstance(cal, dict):
            png = card.path.parent / "calibration_reliability.png"
            out.append({"label": f"{card.task}/{card.name} [{card.source}] calibration",
                        "temperature": cal.get("temperature"), "ece": cal.get("ece_after"),
                        "ece_uncalibrated": cal.get("ece_before"), "ece_noise_floor": cal.get("ece_noise_floor"),
                        "n": cal.get("n"), "protocol": cal.get("fitted_on"),
                        "figure": str(png) if png.exists() else None})
    for path, rep in res.evaluations:
        cal = rep.get("calibration")
        if isinstance(cal, dict):
            png = path.with_name(f"{path.stem}_reliability.png")
            out.append({"label": f"{path.parent} {path.stem}", "temperature": cal.get("temperature"),
                        "ece": cal.get("ece"), "ece_uncalibrated": cal.get("ece_uncalibrated"),
                        "ece_noise_floor": cal.get("ece_noise_floor"), "n": rep.get("n"),
                        "protocol": rep.get("protocol"), "figure": str(png) if png.exists() else None})
    return out


def robustness(res: Results) -> list[dict[str, Any]]:
    """Every robustness table (cards' ``robustness``, evaluation reports'): clean row first, then
    one row per perturbation and strength."""
    out = []

    def add(label, section):
        if not (isinstance(section, dict) and isinstance(section.get("rows"), list)):
            return
        clean = section.get("clean") or {}
        rows = [{"perturbation": "clean", "strength": None, "unit": "", **clean}]
        rows += [dict(r) for r in section["rows"] if isinstance(r, dict)]
        out.append({"label": label, "protocol": section.get("protocol"), "rows": rows})

    seen = set()
    for card in res.cards:
        for protocol, section in (card.data.get("robustness") or {}).items():
            seen.add(protocol)
            add(f"{card.task}/{card.name} [{card.source}]", section)
    for path, rep in res.evaluations:
        section = rep.get("robustness")
        if isinstance(section, dict) and section.get("protocol") not in seen:
            add(f"{path.parent} {path.stem}", section)
    return out


def _on_card(res: Results, path: Path, rep: dict[str, Any]) -> bool:
    """An evaluation report that repeats a split already on the card beside it (``train`` writes both)."""
    for card in res.cards:
        if card.path.parent == path.parent:
            for m in (card.data.get("metrics") or {}).values():
                if isinstance(m, dict) and m.get("confusion_matrix") == rep.get("confusion_matrix") \
                        and m.get("uar") == rep.get("uar"):
                    return True
    return False
