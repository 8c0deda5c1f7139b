"""Argument handling the commands share, so each verb's module keeps only what differs.

For the experiment verbs (``face``, ``speech``): ``JSON|FILE`` arguments, the TrainConfig and run
argument groups, ``--classes``, ``--perturb``, the finished-run check of ``train`` and the printed
results. For the batch verbs (``predict``, ``analyze``): the files/``--json`` parser and the exit
code. The work itself lives in :mod:`emotion_keras.pipelines`. Not a verb: the CLI registers only
the names in ``emotion_keras.cli.VERBS``. Keras is imported inside functions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.pipelines.common import robustness_markdown


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
    g.add_argument("--class-weight-power", type=float, metavar="P",
                   help="class weights = inverse frequency ** P (default 1: balanced; 0.5: square root)")
    g.add_argument("--optimizer", choices=("adamw", "sgd"), help="adamw (default) or sgd (Nesterov momentum)")
    g.add_argument("--ema", type=float, metavar="MOMENTUM", help="average the weights (e.g. 0.999; 0: off)")
    g.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(alpha, alpha) (0: off)")
    g.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(alpha, alpha) (0: off)")
    g.add_argument("--time-budget", metavar="DURATION",
                   help="fit the whole schedule into this wall time (e.g. 90m, 1.5h): measures the step "
                        "time and plans the epochs; the cosine follows the clock, shorter or longer than "
                        "planned; resumable")
    g.add_argument("--jit-compile", choices=("auto", "on", "off"), help="XLA for the train step (default auto)")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--verbose", type=int, default=None, help="Keras progress: 0 silent, 1 bar, 2 lines")
    if classes:
        g.add_argument("--classes", help="comma-separated class list (default: the training labels)")


def add_balance_arg(p) -> None:
    """``--balance B``: the prior correction of :mod:`emotion_keras.calibration` (default: the card's)."""
    def balance(text: str) -> float:
        import argparse

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
        return value

    p.add_argument("--balance", type=balance, metavar="B",
                   help="prior correction, 0..1: 0 keeps the decision the training class frequencies give, "
                        "1 assumes equal class frequencies (default: the model card's)")


def add_run_args(p, task: str, out_note: str = "") -> None:
    """``train``'s run arguments: name, run directory (resume), output folder (``out_note``: what else
    it means for this task), ``--force``."""
    p.add_argument("--name", help="model name (default: the run directory's name)")
    p.add_argument("--run-dir", help=f"checkpoints, history and resume state (default runs/{task}/<name>); "
                                     "rerun the same command to resume after a kill")
    p.add_argument("--out", help="where to save model.keras + card.json (default: the run directory), "
                                 f"e.g. saved_models/{task}{out_note}")
    p.add_argument("--force", action="store_true", help="retrain even if the run directory holds a finished run")


def add_distill_args(p) -> None:
    """``--teacher`` and its share and temperature (``face train``, ``tune face``)."""
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", metavar="MODEL_DIR",
                   help="distil this saved face model (e.g. an ensemble) into the one trained: its "
                        "predictions on the training faces join the targets")
    g.add_argument("--distill", type=float, metavar="SHARE",
                   help="the teacher's share of the targets, 0..1 (default 0.5)")
    g.add_argument("--distill-temperature", type=float, metavar="T",
                   help="softens the teacher's predictions (default 2; 1: as they are)")


def distill_args(args) -> tuple[float, float] | None:
    """``--distill`` and ``--distill-temperature`` (TrainConfig's defaults and bounds) when a
    ``--teacher`` is given; None without one, where either number is an error."""
    if not args.teacher:
        if args.distill is not None or args.distill_temperature is not None:
            raise ConfigError("--distill and --distill-temperature need --teacher MODEL_DIR")
        return None
    cfg = TrainConfig.from_dict({}, distill=args.distill, distill_temperature=args.distill_temperature)
    return cfg.distill, cfg.distill_temperature


def train_config_from_args(args) -> TrainConfig:
    """``--train-config`` with the single flags of :func:`add_train_args` laid over it."""
    from emotion_keras.config import parse_duration

    base = json_arg(getattr(args, "train_config", None), "--train-config")
    budget = getattr(args, "time_budget", None)
    return TrainConfig.from_dict(
        base, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        early_stopping=args.patience, seed=args.seed, verbose=args.verbose,
        class_weights=False if args.no_class_weights else None,
        class_weight_power=getattr(args, "class_weight_power", None), label_smoothing=args.label_smoothing,
        optimizer=getattr(args, "optimizer", None), ema=getattr(args, "ema", None),
        mixup=getattr(args, "mixup", None), cutmix=getattr(args, "cutmix", None),
        jit_compile=getattr(args, "jit_compile", None), distill=getattr(args, "distill", None),
        distill_temperature=getattr(args, "distill_temperature", None),
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
    p.add_argument("files", nargs="+", metavar=metavar, type=_file_name)
    p.add_argument("--json", action="store_true", help=json_help)
    return p


def _file_name(text: str) -> str:
    # Path("") is the working directory: an unset shell variable would analyse everything below it.
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty file name was given (an unset shell variable?); "
                                         "nothing was analysed")
    return text


def batch_exit(failed: int, total: int) -> int:
    """The exit code of a batch that went on past failures: 1 (after saying how many) if any failed."""
    if failed:
        print(f"emotion-keras: {failed} of {total} file(s) failed", file=sys.stderr)
    return 1 if failed else 0



# ---------------------------------------------------------------- robustness (evaluate --perturb)

def add_perturb_arg(p, kinds: str) -> None:
    p.add_argument("--perturb", metavar="LIST",
                   help=f"comma-separated perturbations to add a robustness table: {kinds} "
                        "(each at three strengths; see emotion_keras/perturb.py)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbations and of --limit (default 0)")


def perturb_arg(args) -> list[str]:
    return [k for k in (getattr(args, "perturb", None) or "").split(",") if k.strip()]



def skip_finished_run(run_dir: Path, force: bool) -> bool:
    """True (after saying so) when ``run_dir`` holds a finished run and ``--force`` was not given;
    with ``force``, the run's files and a killed run's resume state are removed so training starts
    again."""
    if (run_dir / "train_result.json").exists() and not force:
        done = json.loads((run_dir / "train_result.json").read_text())
        print(f"{run_dir} already holds a finished run (model in {done.get('out')}); "
              "pass --force to train again, or choose another --run-dir", file=sys.stderr)
        return True
    if force:
        for f in ("history.csv", "best.weights.h5", "train_result.json", "budget.json", "fit_settings.json"):
            (run_dir / f).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "resume", ignore_errors=True)  # a killed run's state: start afresh
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
          f"macro-F1 {report['macro_f1']:.3f}" + (f"  (prior correction: balance {report['balance']:g})"
                                                  if report.get("balance") else ""))
    for c, r in report["per_class_recall"].items():
        print(f"  {c:>9s} recall {r:.3f}")
    cal = report.get("calibration")
    if cal:
        print(f"  ECE {cal['ece']:.3f} (temperature {cal['temperature']:.3g}; uncalibrated "
              f"{cal['ece_uncalibrated']:.3f})")
    if report.get("robustness"):
        print(robustness_markdown(report["robustness"]))
    print(f"report: {report['paths']['json']}")


