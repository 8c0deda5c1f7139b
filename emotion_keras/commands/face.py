"""``emotion-keras face {preprocess,train,evaluate,ensemble,compare}``: the face pipeline from a corpus to a
saved, evaluated model, and the multi-model comparison.

Only argument parsing and printing live here; the work is done by :mod:`emotion_keras.pipelines.face`
(``train_face``, ``evaluate_face``, ``compare_faces``), :mod:`emotion_keras.pipelines.face_ensemble`
(``ensemble_face``) and :mod:`emotion_keras.pipelines.splits` (``load_face_split``). Keras is imported
inside functions, after ``--backend`` has been applied.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emotion_keras.commands.common import (add_balance_arg, add_distill_args, add_perturb_arg, add_run_args,
                                           add_train_args, classes_arg, distill_args, json_arg, perturb_arg,
                                           print_evaluation, saved_line, skip_finished_run, train_config_from_args)
from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import cache_key
from emotion_keras.models.face import BACKBONES
from emotion_keras.pipelines.face import (compare_faces, configs_of, evaluate_face, preprocess_faces,
                                          train_face)
from emotion_keras.pipelines.face_ensemble import ensemble_face
from emotion_keras.pipelines.splits import Split, load_face_split
from emotion_keras.preprocess.faces import TTA_MODES, FacePrepConfig


# ---------------------------------------------------------------- configs from arguments

def prep_config_from_args(args) -> FacePrepConfig:
    base = json_arg(getattr(args, "prep_config", None), "--prep-config")
    return FacePrepConfig.from_dict(
        base, size=getattr(args, "size", None), grayscale=False if getattr(args, "rgb", False) else None,
        geometry=True if getattr(args, "geometry", False) else None, detect=getattr(args, "detect", None),
        margin=getattr(args, "margin", None))


def model_config_dict_from_args(args) -> dict[str, Any]:
    base = json_arg(getattr(args, "model_config", None), "--model-config")
    for key in ("backbone", "attention", "width", "depth"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return base


# ---------------------------------------------------------------- comparison

def compare_entries(configs: list[str] | None, backbones: str | None,
                    base_model: dict[str, Any]) -> list[dict[str, Any]]:
    """Each compared model as ``{"name", "model": {...}, "train": {...}}``.

    A config file may hold that shape or just a model config; its name defaults to the file stem.
    """
    entries = []
    for spec in configs or []:
        data = json_arg(spec, "--configs")
        stem = Path(spec).stem if not spec.strip().startswith("{") else f"config{len(entries) + 1}"
        if "model" in data or "train" in data:
            extra = sorted(set(data) - {"name", "model", "train"})
            if extra:
                raise ConfigError(f"{spec}: unknown keys {extra}; expected name, model, train")
            entries.append({"name": data.get("name", stem), "model": {**base_model, **data.get("model", {})},
                            "train": data.get("train", {})})
        else:
            name = data.pop("name", stem)
            entries.append({"name": name, "model": {**base_model, **data}, "train": {}})
    for b in (backbones or "").split(","):
        if b.strip():
            entries.append({"name": b.strip(), "model": {**base_model, "backbone": b.strip()}, "train": {}})
    if not entries:
        raise ConfigError("face compare needs --configs or --backbones")
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"compared models need distinct names, got {names}")
    return entries


# ---------------------------------------------------------------- argument parsing

def _weights(text: str) -> list[float]:
    """``--weights 1,0,2``: numbers, 0 or more (argparse names the option when one is not)."""
    try:
        weights = [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not weights or any(not w >= 0 for w in weights):
        raise argparse.ArgumentTypeError(f"weights must be numbers, 0 or more: {text!r}")
    return weights


def _add_data_args(p, split: bool = True):
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="corpus: fer2013:/path, ckplus:/path, rafdb:/path, jaffe:/path, folder:/path, "
                        "csv:/path/labels.csv, or a path (kind guessed)")
    if split:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--val-split", metavar="NAME",
                       help="validate on this corpus-declared split (default: validation, else test)")
        g.add_argument("--val-subjects", type=float, metavar="FRACTION",
                       help="validate on this fraction of subjects, held out (e.g. 0.2)")
        g.add_argument("--val-fraction", type=float, metavar="FRACTION",
                       help="validate on a stratified random fraction of the training split (e.g. 0.1), so the "
                            "corpus's validation split (FER2013 PublicTest) chooses nothing and stays for evaluation; "
                            "for corpora that name subjects (CK+), --val-subjects keeps a person on one side")
        g.add_argument("--val-data", metavar="SPEC", help="validate on another corpus")
        p.add_argument("--add-data", action="append", default=[], metavar="SPEC",
                       help="train on this corpus's training faces too (repeatable), e.g. FER2013's own labels "
                            "beside FER+ votes; its validation and test splits are left out")
        p.add_argument("--limit", type=int, metavar="N", help="train on a stratified subset of N images")
        p.add_argument("--val-limit", type=int, metavar="N", help="validate on a stratified subset of N")


def _add_prep_args(p):
    g = p.add_argument_group("preprocessing")
    g.add_argument("--prep-config", metavar="JSON|FILE", help="FacePrepConfig as JSON or a JSON file")
    g.add_argument("--size", type=int, help="face side in pixels, 48..112 (default 48)")
    g.add_argument("--rgb", action="store_true", help="keep colour (default: greyscale)")
    g.add_argument("--geometry", action="store_true", help="add landmark geometry features")
    g.add_argument("--detect", choices=("auto", "always", "never"), help="face detection (default auto)")
    g.add_argument("--margin", type=float, help="context around an aligned face (fraction)")


def _add_model_args(p):
    g = p.add_argument_group("model")
    g.add_argument("--model-config", metavar="JSON|FILE", help="FaceModelConfig as JSON or a JSON file")
    g.add_argument("--backbone", choices=BACKBONES, help="backbone family (default vgg)")
    g.add_argument("--attention", action=argparse.BooleanOptionalAction, default=None,
                   help="self-attention block in the backbone (default on)")
    g.add_argument("--width", type=int, help="filters of the first block (vgg/resnet)")
    g.add_argument("--depth", type=int, help="number of blocks (vgg/resnet)")


def register(subparsers) -> None:
    p = subparsers.add_parser("face", help="face datasets: preprocess, train, evaluate, compare models",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="face_verb", metavar="ACTION", required=True)

    pp = sub.add_parser("preprocess", help="detect, align and cache a corpus's faces; list images without a face")
    _add_data_args(pp, split=False)
    _add_prep_args(pp)
    pp.add_argument("--out", metavar="FILE.npz", help="also export the arrays (images, labels, ...) here")
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pp.set_defaults(func=cmd_preprocess)

    tp = sub.add_parser("train", help="train a face model and save it with its model card")
    _add_data_args(tp)
    _add_prep_args(tp)
    _add_model_args(tp)
    add_train_args(tp, classes=True)
    add_run_args(tp, "face")
    tp.add_argument("--init-from", metavar="MODEL_DIR",
                    help="start from this saved face model's weights (fine-tuning or a second stage); "
                         "its model config and preprocessing are reused unless given")
    add_distill_args(tp)
    tp.set_defaults(func=cmd_train)

    ep = sub.add_parser("evaluate", help="accuracy, UAR, macro-F1 and confusion matrix of a saved model")
    ep.add_argument("--model", default=None, help="model directory (default saved_models/face)")
    _add_data_args(ep, split=False)
    ep.add_argument("--split", help="corpus split to evaluate (default: test, else validation, else all)")
    ep.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: none, flip, ten_crop (corner + "
                                                   "centre crops and their mirrors); default: the card's "
                                                   "`tta`, as the recogniser, else none")
    ep.add_argument("--tta-flip", action="store_true", help="same as --tta flip")
    ep.add_argument("--limit", type=int, help="evaluate a stratified subset of N images")
    ep.add_argument("--out", help="report folder (default: the model directory)")
    add_perturb_arg(ep, "occlusion (eyes, mouth, blocks), blur, noise, jpeg, rotate, downscale")
    add_balance_arg(ep)
    ep.add_argument("--json", action="store_true", help="print the full report as JSON")
    ep.set_defaults(func=cmd_evaluate)

    en = sub.add_parser("ensemble", help="save saved face models as one model averaging their probabilities, "
                                         "scored and calibrated on the validation split")
    en.add_argument("models", nargs="+", metavar="MODEL_DIR", help="two or more saved face models (same "
                                                                   "preprocessing and classes); a saved ensemble "
                                                                   "joins as its members, with their weights")
    en.add_argument("--out", required=True, help="where to save the ensemble, e.g. saved_models/face")
    en.add_argument("--name", help="model name (default: the output folder's name)")
    en.add_argument("--data", metavar="SPEC", help="corpus to validate on (default: the first model's card's)")
    en.add_argument("--split", default="validation", help="its split to validate on (default validation)")
    en.add_argument("--tta", choices=TTA_MODES, default="none",
                    help="test-time views its recogniser and `face evaluate` average by default (recorded on "
                         "the card; the validation figure and temperature are measured with them)")
    en.add_argument("--weights", type=_weights, metavar="W1,W2,...",
                    help="one weight per model (a saved ensemble counts its members) for a weighted mean "
                         "of their probabilities; 0 leaves a model out (default: equal, or the weights members "
                         "had in a saved ensemble)")
    en.set_defaults(func=cmd_ensemble)

    cp = sub.add_parser("compare", help="train several model configs on the same split and tabulate them")
    cp.add_argument("--configs", nargs="+", metavar="JSON", help="model config files (or inline JSON)")
    cp.add_argument("--backbones", help="comma-separated backbones, each with the default config")
    _add_data_args(cp)
    _add_prep_args(cp)
    _add_model_args(cp)
    add_train_args(cp, classes=True)
    cp.add_argument("--out", default="runs/face/compare", help="comparison folder (default runs/face/compare)")
    cp.set_defaults(func=cmd_compare)


def _split_from_args(args) -> Split:
    return load_face_split(args.data, val_split=args.val_split, val_subjects=args.val_subjects,
                           val_fraction=args.val_fraction, val_data=args.val_data, limit=args.limit,
                           val_limit=args.val_limit, seed=args.seed or 0, classes=classes_arg(args),
                           add_data=args.add_data)


def cmd_preprocess(args) -> int:
    prep = prep_config_from_args(args)
    summary, arrays = preprocess_faces(args.data, prep, out=args.out, progress=not args.json)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.data}: {summary['records']:,} images -> {len(arrays):,} faces of shape "
              f"{tuple(arrays.images.shape[1:])}{' (cached)' if arrays.from_cache else ''}")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["labels"].items())))
        if arrays.no_face:
            print(f"  no face found in {len(arrays.no_face)} image(s) (listed above)")
        if args.out:
            print(f"  arrays written to {args.out}")
    return 0


def _default_run_dir(args, split: Split, prep, model: dict, train: TrainConfig) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    if args.name:
        return Path("runs/face") / args.name
    ds = (split.train[0].dataset if split.train else "data").replace("/", "_")
    tag = cache_key(split.protocol, prep.to_dict(), model, train.to_dict())[:8]
    return Path("runs/face") / f"{ds}-{model.get('backbone', 'default')}-{tag}"


def cmd_train(args) -> int:
    prep = prep_config_from_args(args)
    train = train_config_from_args(args)
    model = model_config_dict_from_args(args)
    if args.init_from:  # fine-tuning: the source's architecture and preprocessing unless given
        given = any(getattr(args, k, None) not in (None, False) for k in
                    ("prep_config", "size", "rgb", "geometry", "detect", "margin"))
        model, prep = configs_of(args.init_from, model, prep if given else None)
    distill_args(args)  # refuses a share or temperature without a teacher
    split = _split_from_args(args)
    run_dir = _default_run_dir(args, split, prep, model, train)
    if skip_finished_run(run_dir, args.force):
        return 0
    print(f"run directory: {run_dir}\nprotocol: {split.protocol}", file=sys.stderr)
    res = train_face(split, prep, model, train, run_dir, out=args.out, name=args.name,
                     classes=classes_arg(args), init_from=args.init_from, teacher=args.teacher)
    print(saved_line(res))
    return 0


def cmd_evaluate(args) -> int:
    from emotion_keras.models.store import default_model_dir

    report = evaluate_face(args.model or default_model_dir("face"), args.data, split=args.split,
                           tta_flip=args.tta_flip, out=args.out, limit=args.limit, progress=not args.json,
                           perturb=perturb_arg(args), seed=args.seed, tta=args.tta,
                           balance=args.balance)
    print_evaluation(report, args.json)
    return 0


def cmd_ensemble(args) -> int:
    res = ensemble_face(args.models, args.out, name=args.name, data=args.data, split=args.split, tta=args.tta,
                        weights=args.weights)
    print(saved_line(res))
    cal = res["card"]["calibration"]
    print(f"  temperature {cal['temperature']:.3g} (ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f})")
    return 0


def cmd_compare(args) -> int:
    prep = prep_config_from_args(args)
    train = train_config_from_args(args)
    entries = compare_entries(args.configs, args.backbones, model_config_dict_from_args(args))
    split = _split_from_args(args)
    table = compare_faces(split, prep, entries, train, args.out)
    print(Path(args.out, "comparison.md").read_text())
    return 0 if table["rows"] else 1


__all__ = ["register"]
