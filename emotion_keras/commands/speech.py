"""``emotion-keras speech {preprocess,train,evaluate,compare}``: the speech pipeline from a corpus to a
saved, evaluated model, and the comparison of model families.

Evaluation is speaker-independent by default: ``--val-speakers 0.2`` holds out a fifth of the
speakers, ``--val-speakers 17,18,19,20`` names them, ``--folds 5`` runs speaker-grouped k-fold
cross-validation (RAVDESS actors 1-4, 5-8, ... in turn). There is no random clip split. Every number
is reported at clip level (the mean of a clip's window probabilities) with its protocol sentence.

Only argument parsing and printing live here; the work is done by :mod:`emotion_keras.pipelines.speech`
(``train_speech``, ``crossvalidate_speech``, ``evaluate_speech``, ``compare_speech``) and
:mod:`emotion_keras.pipelines.splits` (``load_speech_split``). Keras is imported inside functions,
after ``--backend`` has been applied.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from emotion_keras.commands.common import (add_balance_arg, add_perturb_arg, add_run_args, add_train_args,
                                           classes_arg, json_arg, perturb_arg, print_evaluation, saved_line,
                                           skip_finished_run, train_config_from_args)
from emotion_keras.config import ConfigError
from emotion_keras.data.cache import cache_key
from emotion_keras.pipelines.speech import (FAMILIES, compare_speech, crossvalidate_speech, ensemble_speech,
                                            evaluate_speech, preprocess_speech, refit_speech, train_speech)
from emotion_keras.pipelines.splits import Split, load_speech_split, read_speech_records
from emotion_keras.preprocess.audio import FEATURES, SpeechFeatureConfig


# ---------------------------------------------------------------- comparison

def compare_entries(families: str | None, configs: list[str] | None = None,
                    base_model: dict | None = None) -> list[dict[str, Any]]:
    """Entries ``{"name", "model", "features"}``: the named families (default all of them) plus configs.

    A config file (or inline JSON) holds ``{"name", "model": {...}, "features": {...}, "train": {...}}``.
    """
    entries = []
    for fam in (families or ",".join(FAMILIES) if not configs else families or "").split(","):
        fam = fam.strip()
        if not fam:
            continue
        if fam not in FAMILIES:
            raise ConfigError(f"unknown model family {fam!r}; known: {', '.join(FAMILIES)}")
        model, feats = FAMILIES[fam]
        entries.append({"name": fam, "model": {**(base_model or {}), **model}, "features": feats, "train": {}})
    for i, spec in enumerate(configs or (), 1):
        data = json_arg(spec, "--configs")
        extra = sorted(set(data) - {"name", "model", "features", "train"})
        if extra:
            raise ConfigError(f"{spec}: unknown keys {extra}; expected name, model, features, train")
        entries.append({"name": data.get("name", f"config{i}"), "model": data.get("model", {}),
                        "features": data.get("features", {}), "train": data.get("train", {})})
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"compared models need distinct names, got {names}")
    return entries



# ---------------------------------------------------------------- arguments -> configs

def feature_config_from_args(args) -> SpeechFeatureConfig:
    base = json_arg(getattr(args, "feature_config", None), "--feature-config")
    return SpeechFeatureConfig.from_dict(
        base, feature=getattr(args, "feature", None), n_mels=getattr(args, "n_mels", None),
        window_seconds=getattr(args, "window_seconds", None), hop_seconds=getattr(args, "hop_seconds", None),
        speaker_norm=getattr(args, "speaker_norm", None), prosody=getattr(args, "prosody", None))


def augment_config_from_args(args):
    """``--augment-copies N`` -> an AudioAugmentConfig (None: no waveform augmentation)."""
    from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

    copies = getattr(args, "augment_copies", None)
    return AudioAugmentConfig(copies=copies) if copies else None


def model_config_dict_from_args(args) -> dict[str, Any]:
    base = json_arg(getattr(args, "model_config", None), "--model-config")
    for key in ("architecture", "rnn", "filters", "conv_blocks"):
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    return base


def _add_data_args(p, split: bool = True):
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="corpus: ravdess:/path, cremad:/path, tess:/path, savee:/path, emodb:/path, "
                        "folder:/path, csv:/path/manifest.csv, or a path (kind guessed); "
                        "several joined by commas")
    p.add_argument("--speakers", metavar="IDS", help="use only these speakers (e.g. 1,2,3,4)")
    p.add_argument("--no-calm", action="store_true", help="leave RAVDESS 'calm' out (7 classes)")
    p.add_argument("--classes", help="comma-separated class list (default: the training labels)")
    if split:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--val-speakers", default=None, metavar="FRACTION|IDS",
                       help="held-out speakers: a fraction (default 0.2) or ids like 17,18,19,20")
        g.add_argument("--folds", type=int, metavar="K",
                       help="speaker-grouped K-fold cross-validation instead of one hold-out")
        g.add_argument("--val-data", metavar="SPEC", help="validate on another corpus")


def _add_feature_args(p):
    g = p.add_argument_group("features")
    g.add_argument("--feature-config", metavar="JSON|FILE", help="SpeechFeatureConfig as JSON or a JSON file")
    g.add_argument("--feature", choices=FEATURES, help="log-mel (default), MFCC+deltas, or functionals "
                   "(statistics per window, for --architecture linear, mlp or lda)")
    g.add_argument("--n-mels", type=int, help="mel bands (default 64)")
    g.add_argument("--window-seconds", type=float, help="window length (default 3.0)")
    g.add_argument("--hop-seconds", type=float, help="hop between windows of long clips (default 1.5)")
    g.add_argument("--speaker-norm", choices=("none", "speaker"),
                   help="speaker: standardise per training speaker (per file at inference); default none")
    g.add_argument("--prosody", choices=("none", "praat", "builtin"),
                   help="prosody (F0, voicing, intensity, jitter, shimmer, HNR) as a second input, measured by "
                        "Praat (the optional GPL extra) or by the builtin NumPy measures")
    g.add_argument("--workers", type=int, help="feature processes (default: all cores)")


def _add_model_args(p):
    from emotion_keras.models.speech import ARCHITECTURES

    g = p.add_argument_group("model")
    g.add_argument("--model-config", metavar="JSON|FILE", help="SpeechModelConfig as JSON or a JSON file")
    g.add_argument("--architecture", "--arch", choices=ARCHITECTURES, help="model family (default crnn)")
    g.add_argument("--rnn", choices=("gru", "lstm"), help="CRNN recurrent layer (default gru)")
    g.add_argument("--filters", type=int, help="filters of the first conv block (default 32)")
    g.add_argument("--conv-blocks", type=int, help="conv blocks (default 3)")


def register(subparsers) -> None:
    p = subparsers.add_parser("speech", help="speech corpora: preprocess, train, evaluate, compare models",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="speech_verb", metavar="ACTION", required=True)

    pp = sub.add_parser("preprocess", help="compute and cache a corpus's features; list unreadable clips")
    _add_data_args(pp, split=False)
    _add_feature_args(pp)
    pp.add_argument("--json", action="store_true", help="print the summary as JSON")
    pp.set_defaults(func=cmd_preprocess)

    tp = sub.add_parser("train", help="train a speech model (speaker-independent) and save it with its card")
    _add_data_args(tp)
    _add_feature_args(tp)
    _add_model_args(tp)
    add_train_args(tp)
    tp.add_argument("--augment-copies", type=int, metavar="N",
                    help="N augmented copies per training clip (speed, pitch, noise, reverb, gain; cached)")
    tp.add_argument("--no-inner", action="store_true",
                    help="with --folds: choose epochs on the reported fold (older, optimistic protocol)")
    add_run_args(tp, "speech", "; with --folds (lda only): after the folds, one model solved on all their "
                               "speakers, the card carrying the cross-validation figure")
    tp.set_defaults(func=cmd_train)

    ep = sub.add_parser("evaluate", help="clip-level accuracy, UAR, macro-F1 and confusion of a saved model")
    ep.add_argument("--model", default=None, help="model directory (default saved_models/speech)")
    _add_data_args(ep, split=False)
    ep.add_argument("--out", help="report folder (default: the model directory)")
    add_perturb_arg(ep, "noise, reverb, codec, gain")
    add_balance_arg(ep)
    ep.add_argument("--per-clip", action="store_true",
                    help="speaker-normalised models: standardise each clip alone, as `predict` without "
                         "--enrol does (default: each speaker with their own clips' statistics, as after "
                         "enrolment)")
    ep.add_argument("--json", action="store_true", help="print the full report as JSON")
    ep.set_defaults(func=cmd_evaluate)

    en = sub.add_parser("ensemble", help="save the fold models of a `train --folds K` run as one model "
                                         "averaging them, with the cross-validation figure on its card")
    en.add_argument("--cv-dir", required=True, help="the finished run directory of `speech train --folds K`")
    en.add_argument("--out", required=True, help="where to save the ensemble, e.g. saved_models/speech")
    en.add_argument("--name", help="model name (default: the output folder's name)")
    en.add_argument("--data", metavar="SPEC", help="the corpus of the folds (default: the members' card's)")
    en.set_defaults(func=cmd_ensemble)

    cp = sub.add_parser("compare", help="train several model families on the same speaker split; tabulate")
    cp.add_argument("--families", help=f"comma-separated: {','.join(FAMILIES)} (default: all)")
    cp.add_argument("--configs", nargs="+", metavar="JSON", help="entries {name, model, features, train}")
    _add_data_args(cp)
    _add_feature_args(cp)
    _add_model_args(cp)
    add_train_args(cp)
    cp.add_argument("--out", default="runs/speech/compare", help="comparison folder (default runs/speech/compare)")
    cp.set_defaults(func=cmd_compare)


def _split_from_args(args) -> Split:
    return load_speech_split(args.data, val_speakers=args.val_speakers, val_data=args.val_data,
                             classes=classes_arg(args), include_calm=not args.no_calm, speakers=args.speakers,
                             seed=args.seed or 0)


def cmd_preprocess(args) -> int:
    config = feature_config_from_args(args)
    summary, ws = preprocess_speech(args.data, config, classes_arg(args), not args.no_calm, args.speakers,
                                    progress=not args.json, workers=args.workers)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.data}: {summary['clips']:,} clips from {summary['speakers']} speakers -> {len(ws.x):,} "
              f"windows of {tuple(config.input_shape)} {config.feature} features (cached)")
        print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary["labels"].items())))
        if ws.failed:
            print(f"  {len(ws.failed)} clip(s) unreadable (listed above)")
    return 0


def _default_run_dir(args, tag_parts) -> Path:
    if args.run_dir:
        return Path(args.run_dir)
    if args.name:
        return Path("runs/speech") / args.name
    return Path("runs/speech") / f"speech-{cache_key(*tag_parts)[:8]}"


def cmd_train(args) -> int:
    features = feature_config_from_args(args)
    train = train_config_from_args(args)
    model = model_config_dict_from_args(args)
    classes = classes_arg(args)
    if args.folds:
        from emotion_keras.models.speech import SOLVED

        if args.out and model.get("architecture") not in SOLVED:  # before hours of folds, not after
            raise ConfigError(f"--out with --folds saves one model solved on all speakers, which only the "
                              f"{', '.join(SOLVED)} architecture allows (nothing chosen per fold); for "
                              f"{model.get('architecture', 'crnn')!r} run the folds, then `speech ensemble "
                              "--cv-dir RUN_DIR --out DIR`")
        records = read_speech_records(args.data, classes, not args.no_calm, args.speakers)
        run_dir = _default_run_dir(args, (args.data, args.folds, features.to_dict(), model, train.to_dict(),
                                          args.augment_copies, args.no_inner))
        report = crossvalidate_speech(records, args.folds, features, model, train, run_dir, classes,
                                      augment=augment_config_from_args(args), inner=not args.no_inner,
                                      spec=args.data)
        print(f"{report['protocol']}\n  accuracy {report['accuracy']['mean']:.3f} ± "
              f"{report['accuracy']['std']:.3f}  UAR {report['uar']['mean']:.3f} ± {report['uar']['std']:.3f}"
              f"  macro-F1 {report['macro_f1']['mean']:.3f} ± {report['macro_f1']['std']:.3f}\n"
              f"report: {run_dir / 'cv.json'}")
        if args.out:
            res = refit_speech(run_dir, args.out, name=args.name)
            card = res["card"]
            print(f"saved {res['out']}: solved on all {len(card['data']['train_speakers'])} speakers "
                  f"({card['data']['train_clips']:,} clips); the card carries the {args.folds}-fold figure; "
                  f"temperature {card['calibration']['temperature']:.3g} fitted out of fold")
        return 0
    split = _split_from_args(args)
    aug = augment_config_from_args(args)
    tag = (split.protocol, features.to_dict(), model, train.to_dict())
    run_dir = _default_run_dir(args, tag + ((aug.to_dict(),) if aug is not None else ()))  # old tags unchanged
    if skip_finished_run(run_dir, args.force):
        return 0
    print(f"run directory: {run_dir}\nprotocol: {split.protocol}", file=sys.stderr)
    res = train_speech(split, features, model, train, run_dir, out=args.out, name=args.name, classes=classes,
                       augment=aug)
    print(saved_line(res))
    return 0


def cmd_evaluate(args) -> int:
    from emotion_keras.models.store import default_model_dir

    report = evaluate_speech(args.model or default_model_dir("speech"), args.data, speakers=args.speakers,
                             out=args.out, progress=not args.json, perturb=perturb_arg(args), seed=args.seed,
                             balance=args.balance, per_clip=args.per_clip)
    print_evaluation(report, args.json)
    return 0


def cmd_ensemble(args) -> int:
    res = ensemble_speech(args.cv_dir, args.out, name=args.name, data=args.data)
    card = res["card"]
    cv5, cal = card["metrics"]["cv5"], card["calibration"]
    print(f"saved {res['out']}: {card['model_config']['members']} members; their {len(cv5['folds'])}-fold figure "
          f"accuracy {cv5['accuracy']:.3f} ± {cv5['accuracy_std']:.3f}, UAR {cv5['uar']:.3f} ± {cv5['uar_std']:.3f}; "
          f"temperature {cal['temperature']:.3g} fitted out of fold (ECE {cal['ece_before']:.3f} -> "
          f"{cal['ece_after']:.3f})")
    return 0


def cmd_compare(args) -> int:
    if args.folds:
        raise ConfigError("speech compare uses one speaker hold-out (--val-speakers); run "
                          "`speech train --folds K` per family for cross-validation")
    features = feature_config_from_args(args)
    train = train_config_from_args(args)
    entries = compare_entries(args.families, args.configs, model_config_dict_from_args(args))
    split = _split_from_args(args)
    table = compare_speech(split, features, entries, train, args.out, classes=classes_arg(args))
    print(Path(args.out, "comparison.md").read_text())
    return 0 if table["rows"] else 1


__all__ = ["register"]
