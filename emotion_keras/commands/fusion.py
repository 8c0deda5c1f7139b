"""``emotion-keras fusion {train,evaluate,benchmark}``: the face + speech fusion head.

``train`` fits a new head on the saved face and speech models' embeddings (cached, so it takes
minutes on a CPU) from either

- real audio-visual clips (``--data cremad:DIR``, ``ravdess:DIR``, a labelled folder or CSV of videos):
  each clip is cut into windows exactly as ``analyze`` does, and every window is one sample; or
- ``--pairs pseudo --face-data SPEC --speech-data SPEC``: for users with only unimodal corpora, each face
  image is paired with a speech window *of the same label* from another corpus. Such pairs carry no
  real audio-visual correlation; the model card says so (``data.pairs = "pseudo"``) and every metric
  computed on them is labelled as pseudo-pair.

``evaluate`` scores a saved fusion model on labelled clips (clip-level fused result); ``benchmark``
runs the RAVDESS paired benchmark (action units + speech, speaker-independent folds) and writes
``docs/benchmarks/fusion.{json,md}``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("fusion", help="train, evaluate and benchmark the face + speech fusion model",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a fusion head on cached face and speech embeddings")
    t.add_argument("--data", metavar="SPEC", help="labelled audio-visual clips (cremad:DIR, ravdess:DIR, "
                                                  "a <label>/ folder or a CSV)")
    t.add_argument("--pairs", choices=("real", "pseudo"), default="real",
                   help="pseudo: pair face images and speech clips of the same label (unimodal corpora)")
    t.add_argument("--face-data", metavar="SPEC", help="face corpus for pseudo-pairs (e.g. fer2013:DIR)")
    t.add_argument("--speech-data", metavar="SPEC", help="speech corpus for pseudo-pairs (e.g. ravdess:DIR)")
    t.add_argument("--val-speakers", default="17,18,19,20",
                   help="speech speakers held out for validation (pseudo-pairs)")
    t.add_argument("--val-subjects", help="subjects held out for validation (real clips; default 20%%)")
    t.add_argument("--face-dir", help="face model (default saved_models/face)")
    t.add_argument("--speech-dir", help="speech model (default saved_models/speech)")
    t.add_argument("--out", default=None, help="where to save (default saved_models/fusion)")
    t.add_argument("--run-dir", default="runs/fusion/latest")
    t.add_argument("--pooling", choices=("mean", "attention", "gru", "lstm"), default="attention")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--max-per-class", type=int, default=3000, help="face samples per class (pseudo-pairs)")
    t.add_argument("--stack", action="store_true",
                   help="pseudo-pairs: train the head on held-out data only (half A of the face validation "
                        "images x half of the held-out speakers) instead of the encoders' training data")
    t.add_argument("--repeats", type=int, default=3, help="speech partners per face image (stacked head)")
    t.add_argument("--window", type=float, default=2.5)
    t.add_argument("--hop", type=float, default=1.0)
    t.add_argument("--fps", type=float, default=5.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--verbose", type=int, default=2)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="clip-level accuracy/UAR/macro-F1 of a fusion model on labelled clips")
    e.add_argument("--data", required=True, metavar="SPEC")
    e.add_argument("--fusion-dir")
    e.add_argument("--face-dir")
    e.add_argument("--speech-dir")
    e.add_argument("--out", help="write evaluation.json (+ confusion PNG) into this folder")
    e.set_defaults(func=cmd_evaluate)

    b = sub.add_parser("benchmark", help="RAVDESS paired benchmark -> docs/benchmarks/fusion.{json,md}")
    b.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    b.add_argument("--folds", type=int, default=5)
    b.add_argument("--epochs", type=int, default=80)
    b.add_argument("--max-folds", type=int, default=None)
    b.add_argument("--out", default="docs/benchmarks")
    b.set_defaults(func=cmd_benchmark)



def cmd_train(args) -> int:
    from emotion_keras.pipelines.fusion import FusionTrainSettings, train_fusion

    if args.pairs == "pseudo" and not (args.face_data and args.speech_data):
        raise SystemExit("emotion-keras: error: --pairs pseudo needs --face-data and --speech-data")
    if args.pairs != "pseudo" and not args.data:
        raise SystemExit("emotion-keras: error: fusion train needs --data (or --pairs pseudo)")
    settings = FusionTrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FusionTrainSettings)})
    res = train_fusion(settings)
    val = res["validation"]
    print(json.dumps({"saved": str(res["out"]), "validation": {k: val[k] for k in ("accuracy", "uar", "macro_f1")},
                      "protocol": res["protocol"]}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from emotion_keras.pipelines.fusion import evaluate_fusion

    report = evaluate_fusion(args.data, args.fusion_dir, args.face_dir, args.speech_dir, out=args.out)
    print(json.dumps({k: report[k] for k in ("n", "accuracy", "uar", "macro_f1", "protocol")}, indent=2))
    return 0


def cmd_benchmark(args) -> int:
    from emotion_keras.fusion_benchmark import BenchSettings, run_benchmark, write_report

    data = Path(args.data) if args.data else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    report = run_benchmark(data / "ravdess_face_au" / "au.csv", data / "ravdess_speech",
                           BenchSettings(folds=args.folds, epochs=args.epochs, max_folds=args.max_folds))
    paths = write_report(report, args.out)
    print(Path(paths["md"]).read_text())
    return 0
