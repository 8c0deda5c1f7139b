"""Pieces the commands share, so each modality's module keeps only what differs: its corpus readers,
preprocessing, model config and split protocol.

For the experiment verbs (``face``, ``speech``): the :class:`Split` every ``load_split`` returns,
dataset naming, ``JSON|FILE`` arguments, the TrainConfig and run argument groups, ``--classes``,
finished-run and finished-comparison bookkeeping, the printed results, and the ``comparison.json`` /
``comparison.md`` writer (the modality passes its own columns). For the batch verbs (``predict``,
``analyze``): the files/``--json`` parser and the exit code. Not a verb: the CLI registers only the
names in ``emotion_keras.cli.VERBS``. Keras is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json, atomic_write_text
from emotion_keras.data.records import Record


@dataclasses.dataclass
class Split:
    """Training and validation records plus the protocol sentence that goes next to every number."""

    train: list[Record]
    val: list[Record]
    protocol: str
    data: dict[str, Any]


def dataset_name(records: Sequence[Record], names: Mapping[str, str]) -> str:
    """The corpora behind ``records`` as readers know them (``RAVDESS + TESS``), for protocols."""
    found = sorted({r.dataset for r in records})
    return " + ".join(names.get(n, n) for n in found) or "?"


# ---------------------------------------------------------------- arguments -> configs

def json_arg(value: str | None, what: str) -> dict[str, Any]:
    """A JSON object given inline (``{...}``) or as a file path."""
    if not value:
        return {}
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{what}: {path} is neither inline JSON nor an existing file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: expected a JSON object")
    return data


def add_train_args(p, classes: bool = False) -> None:
    """The ``training`` argument group read by :func:`train_config_from_args`; ``classes`` also puts
    ``--classes`` there (speech has it among its data arguments instead)."""
    g = p.add_argument_group("training")
    g.add_argument("--train-config", metavar="JSON|FILE", help="TrainConfig as JSON or a JSON file")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--learning-rate", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    g.add_argument("--no-class-weights", action="store_true")
    g.add_argument("--optimizer", choices=("adamw", "sgd"), help="adamw (default) or sgd (Nesterov momentum)")
    g.add_argument("--ema", type=float, metavar="MOMENTUM", help="average the weights (e.g. 0.999; 0: off)")
    g.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(alpha, alpha) (0: off)")
    g.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(alpha, alpha) (0: off)")
    g.add_argument("--time-budget", metavar="DURATION",
                   help="fit the whole schedule into this wall time (e.g. 90m, 1.5h): measures the step "
                        "time and sets the epochs; resumable")
    g.add_argument("--jit-compile", choices=("auto", "on", "off"), help="XLA for the train step (default auto)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--verbose", type=int, default=None, help="Keras progress: 0 silent, 1 bar, 2 lines")
    if classes:
        g.add_argument("--classes", help="comma-separated class list (default: the training labels)")


def add_run_args(p, task: str) -> None:
    """``train``'s run arguments: name, run directory (resume), output folder, ``--force``."""
    p.add_argument("--name", help="model name (default: the run directory's name)")
    p.add_argument("--run-dir", help=f"checkpoints, history and resume state (default runs/{task}/<name>); "
                                     "rerun the same command to resume after a kill")
    p.add_argument("--out", help="where to save model.keras + card.json (default: the run directory), "
                                 f"e.g. saved_models/{task}")
    p.add_argument("--force", action="store_true", help="retrain even if the run directory holds a finished run")


def train_config_from_args(args) -> TrainConfig:
    """``--train-config`` with the single flags of :func:`add_train_args` laid over it."""
    from emotion_keras.config import parse_duration

    base = json_arg(getattr(args, "train_config", None), "--train-config")
    budget = getattr(args, "time_budget", None)
    return TrainConfig.from_dict(
        base, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        early_stopping=args.patience, seed=args.seed, verbose=args.verbose,
        class_weights=False if args.no_class_weights else None, label_smoothing=args.label_smoothing,
        optimizer=getattr(args, "optimizer", None), ema=getattr(args, "ema", None),
        mixup=getattr(args, "mixup", None), cutmix=getattr(args, "cutmix", None),
        jit_compile=getattr(args, "jit_compile", None),
        time_budget=parse_duration(budget) if budget else None)


def classes_arg(args) -> list[str] | None:
    """``--classes a,b,c`` as canonical labels; None when not given."""
    if not getattr(args, "classes", None):
        return None
    from emotion_keras.labels import canonical

    return [canonical(c) for c in args.classes.split(",") if c.strip()]


# ---------------------------------------------------------------- batch verbs (predict, analyze)

def add_batch_parser(subparsers, verb: str, help: str, description: str, metavar: str, json_help: str):
    """A verb over many files that prints one result per file (``--json``: one object a line)."""
    p = subparsers.add_parser(verb, help=help, description=description)
    p.add_argument("files", nargs="+", metavar=metavar)
    p.add_argument("--json", action="store_true", help=json_help)
    return p


def batch_exit(failed: int, total: int) -> int:
    """The exit code of a batch that went on past failures: 1 (after saying how many) if any failed."""
    if failed:
        print(f"emotion-keras: {failed} of {total} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------- runs

def history_dict(run_dir: Path, fallback: dict[str, list[float]]) -> dict[str, list[float]]:
    """The whole history of a run from its ``history.csv`` (a resumed fit returns only its own part)."""
    from emotion_keras.train import read_history

    rows = read_history(run_dir)
    if not rows:
        return fallback
    keys = [k for k in rows[0] if k != "epoch"]
    return {k: [round(r[k], 6) for r in rows if k in r] for k in keys}


def save_trained(net, card: dict[str, Any], val_metrics: dict[str, Any], out: Path, run_dir: Path,
                 fit: dict[str, Any], calibrate_on: tuple | None = None) -> dict[str, Any]:
    """Save a trained model with its card and validation report; mark ``run_dir`` finished.

    ``calibrate_on``: ``(probs, y)`` or ``(probs, y, groups)`` on the validation split: a temperature
    is fitted on them and stored on the card (``calibration``), and the report gains ECE and a
    reliability diagram. Returns what ``train_face`` / ``train_speech`` return: ``{"card", "metrics",
    "out", "fit", "model"}`` (the card as read back, with the fields ``store.save`` adds).
    """
    from emotion_keras.evaluate import write_report
    from emotion_keras.models import store

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
    atomic_write_json(run_dir / "train_result.json",
                      {"out": str(out), "metrics": val_metrics, "training": card["training"]})
    return {"card": card, "metrics": val_metrics, "out": out, "fit": fit, "model": net}


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


# ---------------------------------------------------------------- robustness (evaluate --perturb)

def add_perturb_arg(p, kinds: str) -> None:
    p.add_argument("--perturb", metavar="LIST",
                   help=f"comma-separated perturbations to add a robustness table: {kinds} "
                        "(each at three strengths; see emotion_keras/perturb.py)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations and of --limit (default 0)")


def perturb_arg(args) -> list[str]:
    return [k for k in (getattr(args, "perturb", None) or "").split(",") if k.strip()]


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


def skip_finished_run(run_dir: Path, force: bool) -> bool:
    """True (after saying so) when ``run_dir`` holds a finished run and ``--force`` was not given;
    with ``force``, the finished run's files are removed so training starts again."""
    if (run_dir / "train_result.json").exists() and not force:
        done = json.loads((run_dir / "train_result.json").read_text())
        print(f"{run_dir} already holds a finished run (model in {done.get('out')}); "
              "pass --force to train again, or choose another --run-dir", file=sys.stderr)
        return True
    if force:
        for f in ("history.csv", "best.weights.h5", "train_result.json", "budget.json"):
            (run_dir / f).unlink(missing_ok=True)
    return False


def saved_line(res: dict[str, Any]) -> str:
    """The line ``train`` prints when a model is saved."""
    m = res["metrics"]
    return (f"saved {res['out']}: accuracy {m['accuracy']:.3f}, UAR {m['uar']:.3f}, macro-F1 "
            f"{m['macro_f1']:.3f} ({m['protocol']})")


def print_evaluation(report: dict[str, Any], as_json: bool = False) -> None:
    """An ``evaluate`` report as JSON (``--json``) or readable lines."""
    if as_json:
        print(json.dumps(report))
        return
    print(f"{report['protocol']}\n  accuracy {report['accuracy']:.3f}  UAR {report['uar']:.3f}  "
          f"macro-F1 {report['macro_f1']:.3f}")
    for c, r in report["per_class_recall"].items():
        print(f"  {c:>9s} recall {r:.3f}")
    cal = report.get("calibration")
    if cal:
        print(f"  ECE {cal['ece']:.3f} (temperature {cal['temperature']:.3g}; uncalibrated "
              f"{cal['ece_uncalibrated']:.3f})")
    if report.get("robustness"):
        print(robustness_markdown(report["robustness"]))
    print(f"report: {report['paths']['json']}")


# ---------------------------------------------------------------- comparison

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
