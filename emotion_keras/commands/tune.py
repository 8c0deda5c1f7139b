"""``emotion-keras tune face|speech|fusion``: a resumable KerasTuner search and export of its best trial.

Rerunning the same command on the same ``--project-dir`` resumes the search (finished trials are
reused, an interrupted one is rerun). With ``KERASTUNER_TUNER_ID``/``KERASTUNER_ORACLE_IP``/
``KERASTUNER_ORACLE_PORT`` set, the same command runs as the chief or a worker of a distributed
search (see ``docs/tuning.md``). Prints one JSON summary line at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emotion_keras.commands.common import add_distill_args, distill_args

TASKS = ("face", "speech", "fusion")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="hyperparameter search (KerasTuner) and export of the best model",
        description="Search model and training hyperparameters for one task with KerasTuner; "
                    "rerun the same command to resume a killed search.")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--data", metavar="SPEC",
                   help="corpus spec (face: e.g. fer2013:/data/fer2013; speech: ravdess:/data/ravdess; "
                        "fusion: ravdess-au:/data/ravdess_face_au/au.csv or an .npz of paired "
                        "arrays); not needed with --synthetic")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="tune on N generated samples instead of a corpus (set-up checks, tests)")
    p.add_argument("--tuner", choices=("hyperband", "bayesian", "random"), default="hyperband")
    p.add_argument("--objective", choices=("val_uar", "val_accuracy"), default="val_uar")
    p.add_argument("--max-trials", type=int, default=20, metavar="N")
    p.add_argument("--epochs", type=int, default=30, metavar="E",
                   help="most epochs per trial (Hyperband's max_epochs)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--space", choices=("small", "full", "cpu"), default="full",
                   help="search space: full (GPU-scale), small (tiny models, CPU smoke runs) or cpu "
                        "(speech: fast models with features, speaker normalisation, prosody and "
                        "augmentation searched too)")
    p.add_argument("--project-dir", metavar="DIR", help="default tuning_runs/<task>")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--export", metavar="DIR", help="save the best trial's model + card here "
                                                   "(e.g. saved_models/<task>)")
    p.add_argument("--retrain-on-all", action="store_true",
                   help="export a model retrained on train+validation for the best trial's epoch count")
    p.add_argument("--name", help="model name on the card (default <task>-tuned)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, help="Keras progress: 0 silent, 1 bar, 2 lines")
    p.add_argument("--mixed-precision", choices=("auto", "on", "off"), default="auto",
                   help="auto: bfloat16 on a GPU, float32 on CPU")
    p.add_argument("--data-parallel", action="store_true",
                   help="train each trial data-parallel over all local GPUs (JAX, keras.distribution)")
    p.add_argument("--classes", help="comma-separated class list (default: the training labels)")
    g = p.add_argument_group("data (face)")
    g.add_argument("--val-split", help="corpus split to validate on (default: validation, else test)")
    g.add_argument("--val-subjects", type=float, metavar="FRACTION",
                   help="hold out this fraction of subjects instead")
    g.add_argument("--val-fraction", type=float, metavar="FRACTION",
                   help="validate on a stratified random fraction of the training split instead (the corpus's "
                        "validation split stays for evaluation)")
    g.add_argument("--add-data", action="append", default=[], metavar="SPEC",
                   help="train on this corpus's training faces too (repeatable), e.g. FER2013's own "
                        "labels beside FER+ votes; its validation and test splits are left out")
    g.add_argument("--limit", type=int, metavar="N", help="stratified subset of N training samples")
    g.add_argument("--val-limit", type=int, metavar="N", help="stratified subset of N validation samples")
    g.add_argument("--size", type=int, default=48, help="face side in pixels (48..112)")
    g.add_argument("--rgb", action="store_true")
    g.add_argument("--geometry", action="store_true", help="compute landmark geometry (photos)")
    add_distill_args(p)
    g = p.add_argument_group("data (speech, fusion)")
    g.add_argument("--fold", type=int, default=5, metavar="K",
                   help="validation fold, 1-based, of --folds speaker/subject folds (default 5: "
                        "RAVDESS actors 17-20)")
    g.add_argument("--folds", type=int, default=5)
    g.add_argument("--features", metavar="JSON", help="SpeechFeatureConfig overrides as JSON")
    p.set_defaults(func=run)


def _classes(args):
    return [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None


def load_data(args):
    """The task's arrays for the search (see :mod:`emotion_keras.tuning.data`)."""
    from emotion_keras.config import ConfigError
    from emotion_keras.tuning import data as search

    distill = distill_args(args)
    if distill and args.task != "face":
        raise ConfigError(f"--teacher distils a face model; tune {args.task} has no teacher")
    if args.synthetic:
        return search.synthetic_data(args.task, n=args.synthetic, seed=args.seed)
    if not args.data:
        raise ConfigError("--data SPEC is required (or --synthetic N)")
    progress = args.verbose > 0
    if args.task == "face":
        return search.load_face_data(args.data, val_split=args.val_split, val_subjects=args.val_subjects,
                                     val_fraction=args.val_fraction,
                                     limit=args.limit, val_limit=args.val_limit, seed=args.seed,
                                     size=args.size, rgb=args.rgb, geometry=args.geometry,
                                     classes=_classes(args), progress=progress, add_data=args.add_data,
                                     teacher=args.teacher, distill=distill)
    if args.task == "speech":
        features = json.loads(args.features) if args.features else None
        return search.load_speech_data(args.data, fold=args.fold - 1, folds=args.folds, limit=args.limit,
                                       features=features, classes=_classes(args), progress=progress,
                                       space=args.space)
    return search.load_fusion_data(args.data, fold=args.fold - 1, folds=args.folds, classes=_classes(args))


def run(args) -> int:
    from emotion_keras.tuning import export, tuners

    project_dir = Path(args.project_dir or f"tuning_runs/{args.task}")
    data = load_data(args)
    if args.data_parallel:
        print(tuners.set_data_parallel(), file=sys.stderr)
    print(f"tuning {args.task}: {len(data.y_train)} training / {len(data.y_val)} validation samples, "
          f"{len(data.classes)} classes; {data.protocol}", file=sys.stderr)
    tuner, summary = tuners.run_search(
        data, args.tuner, args.objective, args.max_trials, args.epochs, project_dir, space=args.space,
        patience=args.patience, seed=args.seed, verbose=args.verbose,
        mixed_precision=args.mixed_precision, overwrite=args.overwrite)
    out = {"task": args.task, "tuner": args.tuner, "objective": args.objective, **summary}
    if tuners.is_worker():
        print(json.dumps(out, default=str))
        return 0
    if args.export:
        card = export.export_best(tuner, data, args.export, retrain_on_all=args.retrain_on_all,
                                  name=args.name, verbose=args.verbose)
        out["export"] = str(args.export)
        out["metrics"] = {k: {m: v.get(m) for m in ("accuracy", "uar", "macro_f1") if m in v}
                          for k, v in card["metrics"].items()}
        out["trained_on"] = card["training"]["trained_on"]
    print(json.dumps(out, default=str))
    return 0
