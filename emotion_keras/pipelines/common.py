"""What the face and speech pipelines share: saving a trained model with its card, calibration and
robustness sections of reports, the written evaluation, and the comparison bookkeeping
(finished rows, ``comparison.json`` / ``comparison.md`` with the modality's columns).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emotion_keras.data.cache import atomic_write_json, atomic_write_text, cache_key
from emotion_keras.models.card import ModelCard
from emotion_keras.pipelines.splits import Split


def history_dict(run_dir: Path, fallback: dict[str, list[float]]) -> dict[str, list[float]]:
    """The whole history of a run from its ``history.csv`` (a resumed fit returns only its own part)."""
    from emotion_keras.train import read_history

    rows = read_history(run_dir)
    if not rows:
        return fallback
    keys = [k for k in rows[0] if k != "epoch"]
    return {k: [round(r[k], 6) for r in rows if k in r] for k in keys}


def save_trained(net, card: ModelCard, val_metrics: dict[str, Any], out: Path, run_dir: Path | None,
                 fit: dict[str, Any], calibrate_on: tuple | None = None) -> dict[str, Any]:
    """Save a trained model with its card and validation report; mark ``run_dir`` finished (if any).

    ``calibrate_on``: ``(probs, y)`` or ``(probs, y, groups)`` on the validation split: a temperature
    is fitted on them and stored on the card (``calibration``), and the report gains ECE and a
    reliability diagram. Returns what ``train_face`` / ``train_speech`` return: ``{"card", "metrics",
    "out", "fit", "model"}`` (the card as read back, with the fields ``store.save`` adds).
    """
    from emotion_keras.evaluate import write_report
    from emotion_keras.models import store

    card = card.to_dict()
    task, name = card["task"], card["name"]
    section = {}
    if calibrate_on is not None:
        card = {**card, "calibration": calibration_fields(val_metrics.get("protocol", "validation"),
                                                          *calibrate_on)}
        section = {"calibration": calibration_report(card["calibration"], *calibrate_on)}
    store.save(net, out, card)
    card = store.read_card(out)
    write_report({"task": task, "name": name, "split": "validation", "backend": card["backend"],
                  **val_metrics, **section}, out)
    if run_dir is not None:
        atomic_write_json(Path(run_dir) / "train_result.json",
                          {"out": str(out), "metrics": val_metrics, "training": card["training"]})
    return {"card": card, "metrics": val_metrics, "out": out, "fit": fit, "model": net}


def training_prior(classes: list[str], prior, train, source: str = "mean training target") -> dict[str, Any]:
    """The card's ``class_prior``: ``prior`` (a finished :func:`emotion_keras.train.fit`'s
    ``class_prior``) with how ``train`` (its ``TrainConfig``) weighted the classes."""
    from emotion_keras.calibration import prior_entry

    weighting = (f"class weights (inverse frequency ** {train.class_weight_power:g})" if train.class_weights
                 else "no class weights")
    return prior_entry(classes, prior, f"{source}, {weighting}")


def members_prior(cards: list[dict[str, Any]], classes: list[str],
                  weights: list[float] | None = None) -> dict[str, Any]:
    """An ensemble's ``class_prior``: the (``weights``-weighted) mean of its members' prior frequencies
    (empty when a member has none), with the first member's balance and source."""
    import numpy as np

    from emotion_keras.calibration import class_prior

    priors = [c.get("class_prior", {}).get("frequencies") for c in cards]
    if not all(priors):
        return {}
    rows = np.array([[p[c] for c in classes] for p in priors])
    if weights is not None:  # a weighted mean of the rows is the mean of rows scaled to their share
        rows = rows * (np.asarray(weights, float) * len(rows) / np.sum(weights))[:, None]
    mean = class_prior(rows, len(classes))
    return {**cards[0]["class_prior"], "frequencies": {c: round(float(v), 6) for c, v in zip(classes, mean)}}


def calibration_fields(protocol: str, probs, y, groups=None) -> dict[str, Any]:
    """The card's ``calibration`` entry fitted on validation predictions (see emotion_keras.calibration)."""
    from emotion_keras.calibration import calibration_entry

    return calibration_entry(probs, y, f"{protocol}; temperature fitted on these same samples", groups)


def calibration_report(entry: dict[str, Any], probs, y, groups=None) -> dict[str, Any]:
    """The report's ``calibration`` section for validation predictions under the card's ``entry``."""
    from emotion_keras import calibration as C

    raw = probs
    cal = C.apply_temperature(raw, entry["temperature"])
    if groups is not None:
        raw, cal = C.pool(raw, groups), C.pool(cal, groups)
    return C.report_section(raw, cal, y, entry["temperature"])



def robustness_section(protocol: str, clean: dict[str, Any], clean_ece: float, rows: list[dict[str, Any]],
                       seed: int, where: str) -> dict[str, Any]:
    """The report's (and card's) ``robustness`` table: clean figures first, then one row per
    perturbation and strength, each with its drop in accuracy from clean."""
    base = {"accuracy": clean["accuracy"], "uar": clean["uar"], "ece": clean_ece}
    for r in rows:
        r["accuracy_drop"] = base["accuracy"] - r["accuracy"]
    return {"protocol": f"{protocol}; {where}; seed {seed}", "seed": seed, "clean": base, "rows": rows}


def record_robustness(model_dir: Path, section: dict[str, Any]) -> dict[str, Any]:
    """Add a robustness table to a saved model's card, keyed by its protocol (one per corpus/split)."""
    from emotion_keras.models import store

    card = store.read_card(model_dir)
    tables = {**(card.get("robustness") or {}), section["protocol"]: section}
    return store.update_card(model_dir, robustness=tables)


def robustness_markdown(section: dict[str, Any], title: str = "Robustness") -> str:
    """A robustness table as Markdown (docs/benchmarks, the dashboard)."""
    c = section["clean"]
    lines = [f"## {title}", "", f"Protocol: {section['protocol']}.", "",
             "| perturbation | strength | unit | accuracy | UAR | ECE | accuracy drop |",
             "|---|---:|---|---:|---:|---:|---:|",
             f"| clean | | | {c['accuracy']:.3f} | {c['uar']:.3f} | {c['ece']:.3f} | |"]
    lines += [f"| {r['perturbation']} | {r['strength']:g} | {r['unit']} | {r['accuracy']:.3f} | {r['uar']:.3f} | "
              f"{r['ece']:.3f} | {r['accuracy_drop']:+.3f} |" for r in section["rows"]]
    return "\n".join(lines) + "\n"


def write_evaluation(report: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write an ``evaluate`` report (JSON + confusion figure) into ``out``; the report gains their paths."""
    from emotion_keras.evaluate import write_report

    paths = write_report(report, out)
    report["paths"] = {k: str(v) for k, v in paths.items()}
    return report


def finished_row(run: Path, name: str, digest: str) -> dict[str, Any] | None:
    """A compared model's saved ``result.json`` row when it was trained with this config (``digest``);
    a run left by another config is deleted, so rerunning a comparison continues where it stopped."""
    done = run / "result.json"
    if not done.exists():
        return None
    try:
        row = json.loads(done.read_text())
    except json.JSONDecodeError:
        row = {}
    if row.get("digest") == digest:
        print(f"[{name}] already done, skipping", file=sys.stderr)
        return row
    print(f"[{name}] config changed since the last run: retraining", file=sys.stderr)
    shutil.rmtree(run)
    return None


def write_comparison(out: Path, task: str, title: str, split: Split, rows: list[dict[str, Any]],
                     columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]],
                     extra: dict[str, Any] | None = None) -> dict:
    """``comparison.json`` (``task``, protocol, data, ``extra``, rows) and ``comparison.md``.

    The table has the model name, then the modality's ``columns`` (header, cell of a row), then
    parameters, scores, training seconds, epochs and backend.
    """
    table = {"task": task, "protocol": split.protocol, "data": split.data, **(extra or {}),
             "rows": [{k: v for k, v in r.items() if k != "digest"} for r in rows]}
    atomic_write_json(out / "comparison.json", table)
    heads = " | ".join(h for h, _ in columns)
    lines = [f"# {title}", "", f"Protocol: {split.protocol}.", "",
             f"| model | {heads} | params | accuracy | UAR | macro-F1 | train s | epochs | backend |",
             "|---|" + "---|" * len(columns) + "---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = " | ".join(cell(r) for _, cell in columns)
        lines.append(f"| {r['name']} | {cells} | {r['parameters']:,} | {r['accuracy']:.3f} | "
                     f"{r['uar']:.3f} | {r['macro_f1']:.3f} | {r['train_seconds']:.0f} | {r['epochs']} | "
                     f"{r['backend']} |")
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n")
    return table


@dataclasses.dataclass(frozen=True)
class ComparisonSpec:
    """What one modality's ``compare`` differs in; :func:`compare_models` is the loop itself.

    ``prep(entry)``: the entry's preprocessing config (a ``Config``); ``train(split, prep, entry,
    train_config, run_dir)``: a trainer's result (``{"card", "metrics", ...}``); ``lead(card, prep)``
    / ``tail(card)``: the row's own fields after its name and after ``model_config``; ``speed``: the
    card's ``training`` key for throughput; ``columns``: the Markdown table's own columns;
    ``extra``: what ``comparison.json`` adds; ``describe(entry, prep)``: the progress line.
    """

    task: str
    title: str
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], str]]]
    prep: Callable[[dict[str, Any]], Any]
    train: Callable[..., dict[str, Any]]
    lead: Callable[[dict[str, Any], Any], dict[str, Any]]
    speed: str
    tail: Callable[[dict[str, Any]], dict[str, Any]] = lambda card: {}
    extra: dict[str, Any] | None = None
    describe: Callable[[dict[str, Any], Any], str] = lambda entry, prep: f"training {entry['model']}"


def compare_models(spec: ComparisonSpec, split: Split, entries: list[dict[str, Any]], train, out: str | Path
                   ) -> dict[str, Any]:
    """Train every entry on the same split; write ``comparison.json`` and ``comparison.md``.

    Each model's run lives in ``out/<name>``; an entry whose ``result.json`` matches its config is
    skipped, so rerunning after an interruption continues where it stopped.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in entries:
        run = out / entry["name"]
        prep = spec.prep(entry)
        tcfg = train.replace(**entry.get("train", {}))
        digest = cache_key(split.protocol, prep.to_dict(), entry["model"], tcfg.to_dict())
        if (row := finished_row(run, entry["name"], digest)) is not None:
            rows.append(row)
            continue
        print(f"[{entry['name']}] {spec.describe(entry, prep)}", file=sys.stderr)
        res = spec.train(split, prep, entry, tcfg, run)
        card, m, training = res["card"], res["metrics"], res["card"]["training"]
        row = {"name": entry["name"], **spec.lead(card, prep), "parameters": card["parameters"],
               "accuracy": round(m["accuracy"], 4), "uar": round(m["uar"], 4), "macro_f1": round(m["macro_f1"], 4),
               "train_seconds": training["seconds"], "epochs": training["epochs_run"],
               spec.speed: training[spec.speed], "backend": card["backend"], "size_bytes": card["size_bytes"],
               "model_config": card["model_config"], **spec.tail(card), "train_config": card["train_config"],
               "digest": digest, "path": str(run)}
        atomic_write_json(run / "result.json", row)
        rows.append(row)
        write_comparison(out, spec.task, spec.title, split, rows, spec.columns, spec.extra)
    return write_comparison(out, spec.task, spec.title, split, rows, spec.columns, spec.extra)


def finish_evaluation(report: dict[str, Any], model_dir: Path, out: str | Path | None,
                      robustness_rows: list[dict[str, Any]] | None = None, seed: int = 0,
                      where: str = "") -> dict[str, Any]:
    """The end every ``evaluate`` shares: the robustness table (when rows were measured, ``where``
    saying what was perturbed), the report written into ``out`` (default: the model directory), and
    the table recorded on the card when the report went beside it."""
    from emotion_keras.models import store

    if robustness_rows is not None:
        report["robustness"] = robustness_section(report["protocol"], report, report["calibration"]["ece"],
                                                  robustness_rows, seed, where)
    report = write_evaluation(report, Path(out) if out else model_dir)
    if "robustness" in report and (model_dir / store.CARD_FILE).exists() and out is None:
        record_robustness(model_dir, report["robustness"])
    return report
