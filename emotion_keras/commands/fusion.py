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

import json
from pathlib import Path
from typing import Any

import numpy as np


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


# ------------------------------------------------------------------ embeddings (cached)

def _card_tag(card: dict) -> str:
    return f"{card.get('name')}|{card.get('date')}|{card.get('parameters')}"


def face_embeddings(face_dir: Path, records, progress: bool = True) -> dict[str, np.ndarray]:
    """Face-model embeddings and probabilities of face records (crops or detected faces), cached."""
    from emotion_keras.data.cache import cache_key, cached
    from emotion_keras.data.records import fingerprint
    from emotion_keras.models import store

    card = store.read_card(face_dir)
    key = cache_key("fusion-face-emb", 1, fingerprint(records), _card_tag(card))

    def compute():
        from emotion_keras.models.fusion import embedding_and_probabilities
        from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces
        from emotion_keras.models.io import model_feed

        model, card_ = store.load(face_dir)
        prep = FacePrepConfig.from_dict(card_.get("preprocessing") or {})
        arrays = prepare_faces(records, prep, progress=progress)
        net = embedding_and_probabilities(model)
        emb, probs = net.predict(model_feed(net, arrays.inputs()), batch_size=256, verbose=int(progress))
        return {"embedding": np.asarray(emb, np.float32), "probs": np.asarray(probs, np.float32),
                "labels": np.asarray(arrays.labels)}

    return cached("fusion-face", key, compute)


def speech_embeddings(speech_dir: Path, records, progress: bool = True) -> dict[str, np.ndarray]:
    """Speech-model embeddings and probabilities of every window of speech records, cached."""
    from emotion_keras.data.cache import cache_key, cached
    from emotion_keras.data.records import fingerprint
    from emotion_keras.models import store

    card = store.read_card(speech_dir)
    key = cache_key("fusion-speech-emb", 1, fingerprint(records), _card_tag(card))

    def compute():
        from emotion_keras.models.fusion import embedding_and_probabilities
        from emotion_keras.preprocess.audio import SpeechFeatureConfig, speech_features

        model, card_ = store.load(speech_dir)
        cfg = SpeechFeatureConfig.from_dict(card_.get("preprocessing") or {})
        feats = speech_features(records, cfg, progress=progress)
        net = embedding_and_probabilities(model)
        emb, probs = net.predict({"features": feats["x"].astype(np.float32)}, batch_size=128,
                                 verbose=int(progress))
        clip = feats["clip"]
        return {"embedding": np.asarray(emb, np.float32), "probs": np.asarray(probs, np.float32),
                "labels": np.asarray([records[i].label for i in clip]),
                "subjects": np.asarray([str(records[i].subject) for i in clip])}

    return cached("fusion-speech", key, compute)


def pseudo_pairs(face: dict, speech: dict, classes: list[str], seed: int = 0, max_frames: int = 16,
                 frames: tuple[int, int] = (3, 13), jitter: float = 0.05,
                 ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pair each face sample with a random speech window of the same label.

    A face image stands for a window of video: its embedding is repeated for 3-13 frames with small
    Gaussian jitter (a still face in place of a clip). Returns model inputs and integer targets.
    """
    from emotion_keras.models.fusion import pad_frames

    rng = np.random.default_rng(seed)
    by_label = {c: np.flatnonzero(speech["labels"] == c) for c in classes}
    keep = [i for i, lab in enumerate(face["labels"]) if lab in classes and len(by_label.get(lab, ())) > 0]
    fe = face["embedding"][keep]
    labels = face["labels"][keep]
    scale = jitter * fe.std(0, keepdims=True)
    seqs = []
    for v in fe:
        n = int(rng.integers(frames[0], frames[1] + 1))
        seqs.append(v[None] + rng.normal(size=(n, len(v))) * scale)
    face_frames, mask = pad_frames(seqs, max_frames, fe.shape[1])
    pick = np.asarray([rng.choice(by_label[lab]) for lab in labels])
    y = np.asarray([classes.index(lab) for lab in labels], np.int32)
    return {"face_frames": face_frames, "face_mask": mask,
            "speech": speech["embedding"][pick].astype(np.float32)}, y, np.asarray(keep, int)


def _balanced(records, max_per_class: int, seed: int) -> list:
    """At most ``max_per_class`` records per label (seeded), in corpus order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray([r.label for r in records])
    idx = []
    for c in np.unique(labels):
        idx += list(rng.permutation(np.flatnonzero(labels == c))[:max_per_class])
    return [records[i] for i in sorted(idx)]


def clip_embeddings(recognizer, records, window: float, hop: float, fps: float,
                    progress: bool = True) -> tuple[dict, np.ndarray, list[str], list[str]]:
    """Per-window fusion inputs from real audio-visual clips (windows with both modalities only)."""
    from tqdm.auto import tqdm

    from emotion_keras.errors import InputError
    from emotion_keras.models.fusion import pad_frames

    cfg = recognizer.fusion_config
    max_frames = cfg.max_frames if cfg else 16
    seqs, speech, labels, subjects, skipped = [], [], [], [], []
    for r in tqdm(records, desc="clip embeddings", unit="clip", disable=not progress):
        try:
            for w in recognizer.embed(r.path, window=window, hop=hop, fps=fps):
                if w["face"] is not None and w["speech"] is not None:
                    seqs.append(w["face"])
                    speech.append(w["speech"])
                    labels.append(r.label)
                    subjects.append(str(r.subject))
        except InputError as e:
            skipped.append(f"{r.path}: {e.problem}")
    if not seqs:
        raise InputError(records[0].path if records else "<data>",
                         "no window with both a face and speech in these clips")
    dim = seqs[0].shape[1]
    frames, mask = pad_frames(seqs, max_frames, dim)
    return ({"face_frames": frames, "face_mask": mask, "speech": np.stack(speech)},
            np.asarray(labels), subjects, skipped)


# ------------------------------------------------------------------ commands

def _train_head(config, classes, x_tr, y_tr, x_va, y_va, args):
    from emotion_keras.config import TrainConfig
    from emotion_keras.models.fusion import adapt, build_fusion_model
    from emotion_keras.train import fit

    model = build_fusion_model(config, classes)
    adapt(model, x_tr)
    tc = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                     early_stopping=8, seed=args.seed, verbose=args.verbose, mixed_precision="off")
    result = fit(model, x_tr, y_tr, x_va, y_va, classes, tc, args.run_dir)
    return model, result, tc


def cmd_train(args) -> int:
    from emotion_keras.evaluate import metrics
    from emotion_keras.models import store
    from emotion_keras.models.fusion import FusionConfig, late_fusion, tune_late_weight
    from emotion_keras.recognizers.multimodal import project

    face_dir = Path(args.face_dir) if args.face_dir else store.default_model_dir("face")
    speech_dir = Path(args.speech_dir) if args.speech_dir else store.default_model_dir("speech")
    out = Path(args.out) if args.out else store.default_model_dir("fusion")
    face_card, speech_card = store.read_card(face_dir), store.read_card(speech_dir)
    face_classes, speech_classes = list(face_card["classes"]), list(speech_card["classes"])

    if args.pairs == "pseudo":
        if not (args.face_data and args.speech_data):
            raise SystemExit("emotion-keras: error: --pairs pseudo needs --face-data and --speech-data")
        from emotion_keras.data.faces import read_faces
        from emotion_keras.data.records import by_split
        from emotion_keras.data.speech import read_speech

        face_records = read_faces(args.face_data)
        speech_records = read_speech(args.speech_data)
        classes = [c for c in face_classes if c in {r.label for r in speech_records}]
        f_train = [r for r in face_records if r.split != "validation"]
        f_val = by_split(face_records, "validation")
        if not f_val:
            from emotion_keras.data.records import group_split

            f_train, f_val = group_split(face_records, 0.2, seed=args.seed)
        fe_va = face_embeddings(face_dir, f_val)
        se = speech_embeddings(speech_dir, speech_records)
        val_speakers = {s.strip().lstrip("0") for s in args.val_speakers.split(",") if s.strip()}
        is_val = np.asarray([s.lstrip("0") in val_speakers for s in se["subjects"]])
        se_tr = {k: v[~is_val] for k, v in se.items()}
        se_va = {k: v[is_val] for k, v in se.items()}
        late_fit = None
        if args.stack:
            # train the head on data neither encoder was trained on: half A of the face validation
            # images with the first half of the held-out speakers; validate on the other halves (B)
            rng = np.random.default_rng(args.seed)
            half = rng.permutation(len(fe_va["labels"])) < len(fe_va["labels"]) // 2
            order = sorted(val_speakers, key=lambda v: (len(v), v))
            spk_a = set(order[:max(1, len(order) // 2)])
            in_a = np.asarray([s.lstrip("0") in spk_a for s in se_va["subjects"]])
            fa = {k: v[half] for k, v in fe_va.items()}
            fb = {k: v[~half] for k, v in fe_va.items()}
            sa = {k: v[in_a] for k, v in se_va.items()}
            sb = {k: v[~in_a] for k, v in se_va.items()}
            parts = [pseudo_pairs(fa, sa, classes, args.seed + 10 + r) for r in range(args.repeats)]
            x_tr = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
            y_tr = np.concatenate([p[1] for p in parts])
            x_va, y_va, keep_va = pseudo_pairs(fb, sb, classes, args.seed + 1)
            p_face_va = project(fb["probs"][keep_va], face_classes, classes)
            keep_a = parts[0][2]
            late_fit = (project(fa["probs"][keep_a], face_classes, classes), parts[0][0]["speech"], parts[0][1])
            fe_tr, n_face_va, n_sp_tr, n_sp_va = fa, int((~half).sum()), int(in_a.sum()), int((~in_a).sum())
            split_text = (f"head trained on half A ({int(half.sum())} face-corpus validation images x speakers "
                          f"{','.join(sorted(spk_a, key=lambda v: (len(v), v)))}), validated on half B "
                          f"({int((~half).sum())} other images x speakers "
                          f"{','.join(x for x in order if x not in spk_a)}): data neither encoder was trained "
                          "on; epoch chosen by UAR on B")
        else:
            fe_tr = face_embeddings(face_dir, _balanced(f_train, args.max_per_class, args.seed))
            n_face_va, n_sp_tr, n_sp_va = len(fe_va["labels"]), int((~is_val).sum()), int(is_val.sum())
            x_tr, y_tr, _ = pseudo_pairs(fe_tr, se_tr, classes, args.seed)
            x_va, y_va, keep_va = pseudo_pairs(fe_va, se_va, classes, args.seed + 1)
            p_face_va = project(fe_va["probs"][keep_va], face_classes, classes)
            split_text = (f"head trained on the encoders' training data, validated on face-corpus "
                          f"validation images x held-out speakers {args.val_speakers}; epoch chosen by UAR "
                          "on them")
        data = {"pairs": "pseudo",
                "description": "pseudo-pairs: each face image paired with a speech window of the same "
                               "label from another corpus (no real audio-visual pairs); its embedding "
                               "repeated 3-13 frames with jitter stands for a video window",
                "face": {"spec": args.face_data, "train_images": int(len(fe_tr["labels"])),
                         "validation_images": n_face_va,
                         "licence": face_card.get("data", {}).get("licence")},
                "speech": {"spec": args.speech_data, "validation_speakers": sorted(val_speakers, key=int)
                           if all(s.isdigit() for s in val_speakers) else sorted(val_speakers),
                           "train_windows": n_sp_tr, "validation_windows": n_sp_va,
                           "licence": speech_card.get("data", {}).get("licence")}}
        data["head_training"] = split_text
        protocol = ("PSEUDO-PAIRS (not real audio-visual data; face image + speech window of the same "
                    f"label): {split_text}")
    else:
        if not args.data:
            raise SystemExit("emotion-keras: error: fusion train needs --data (or --pairs pseudo)")
        from emotion_keras.data.records import group_split
        from emotion_keras.data.video import corpus_licence, read_video
        from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

        records = read_video(args.data)
        if args.val_subjects:
            held = {s.strip() for s in args.val_subjects.split(",")}
            r_tr = [r for r in records if str(r.subject) not in held]
            r_va = [r for r in records if str(r.subject) in held]
        else:
            r_tr, r_va = group_split(records, 0.2, seed=args.seed)
        import warnings

        with warnings.catch_warnings():  # only its encoders are used here: no fusion model needed
            warnings.simplefilter("ignore")
            rec = MultimodalEmotionRecognizer(out / "__none__", face_dir, speech_dir)
        x_tr, lab_tr, _, skipped = clip_embeddings(rec, r_tr, args.window, args.hop, args.fps)
        x_va, lab_va, _, skipped_va = clip_embeddings(rec, r_va, args.window, args.hop, args.fps)
        classes = [c for c in face_classes if c in set(lab_tr) | set(lab_va)]
        keep_tr, keep_va = np.isin(lab_tr, classes), np.isin(lab_va, classes)
        x_tr = {k: v[keep_tr] for k, v in x_tr.items()}
        x_va = {k: v[keep_va] for k, v in x_va.items()}
        y_tr = np.asarray([classes.index(c) for c in lab_tr[keep_tr]])
        y_va = np.asarray([classes.index(c) for c in lab_va[keep_va]])
        p_face_va = late_fit = None
        data = {"pairs": "real", "spec": args.data, "licence": corpus_licence(records),
                "train_windows": int(len(y_tr)), "validation_windows": int(len(y_va)),
                "skipped": skipped + skipped_va}
        protocol = f"real audio-visual windows of held-out subjects ({len(r_va)} clips)"

    config = FusionConfig(face_dim=int(x_tr["face_frames"].shape[-1]), speech_dim=int(x_tr["speech"].shape[-1]),
                          pooling=args.pooling, max_frames=int(x_tr["face_frames"].shape[1]))
    model, result, tc = _train_head(config, classes, x_tr, y_tr, x_va, y_va, args)
    val = {**result["validation"], "protocol": protocol}
    card_metrics = {"validation": val}
    weight = 0.5
    if p_face_va is not None:  # late fusion on the same pseudo validation pairs (baseline)
        sp = project(_speech_probs(speech_dir, x_va["speech"]), speech_classes, classes)
        if late_fit is not None:  # weight tuned on half A, scored on B: the same footing as the head
            pf_a, s_a, y_a = late_fit
            weight, _ = tune_late_weight(pf_a, project(_speech_probs(speech_dir, s_a), speech_classes, classes),
                                         y_a, classes)
            how = f"face weight {weight:.2f} tuned on half A"
        else:
            weight, _ = tune_late_weight(p_face_va, sp, y_va, classes)
            how = f"face weight {weight:.2f} tuned on these same pairs (optimistic)"
        card_metrics["late_fusion_baseline"] = {
            **metrics(y_va, late_fusion(p_face_va, sp, weight), classes), "protocol": f"{protocol}; {how}"}
        for name, p in (("face_only", p_face_va), ("speech_only", sp)):
            card_metrics[name] = {**metrics(y_va, p, classes), "protocol": protocol}
    card = {
        "task": "fusion", "name": f"fusion-{args.pairs}-{args.pooling}", "classes": classes,
        "inputs": {"face_frames": [config.max_frames, config.face_dim], "face_mask": [config.max_frames],
                   "speech": [config.speech_dim]},
        "preprocessing": {"window": args.window, "hop": args.hop, "fps": args.fps},
        "model_config": config.to_dict(), "train_config": tc.to_dict(), "data": data,
        "face_model": {"dir": str(face_dir), "name": face_card.get("name"), "date": face_card.get("date")},
        "speech_model": {"dir": str(speech_dir), "name": speech_card.get("name"),
                         "date": speech_card.get("date")},
        "late_fusion_face_weight": weight, "metrics": card_metrics,
        # what the recogniser uses by default: the head only where it beat late fusion on validation
        "inference": "fusion_head" if "late_fusion_baseline" not in card_metrics
        or val["uar"] >= card_metrics["late_fusion_baseline"]["uar"] else "late_fusion", "history": result["history"],
        "training": {"seconds": result["train_seconds"], "epochs_run": result["epochs_run"]},
    }
    store.save(model, out, card)
    print(json.dumps({"saved": str(out), "validation": {k: val[k] for k in ("accuracy", "uar", "macro_f1")},
                      "protocol": protocol}, indent=2))
    return 0


def _speech_probs(speech_dir: Path, emb: np.ndarray) -> np.ndarray:
    """The speech model's own probabilities from its embeddings (its last layer on them)."""
    from emotion_keras.models import store

    model, _ = store.load(speech_dir)
    layer = model.get_layer("probabilities")
    import keras

    return np.asarray(keras.ops.convert_to_numpy(layer(emb)), np.float32)


def cmd_evaluate(args) -> int:
    from emotion_keras.data.video import read_video
    from emotion_keras.errors import InputError
    from emotion_keras.evaluate import metrics, write_report
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    records = read_video(args.data)
    rec = MultimodalEmotionRecognizer(args.fusion_dir, args.face_dir, args.speech_dir)
    classes = rec.classes
    y, probs, failed = [], [], []
    for r in records:
        if r.label not in classes:
            continue
        try:
            out = rec.predict_file(r.path)
        except InputError as e:
            failed.append({"file": str(r.path), "error": e.problem})
            continue
        if out["probabilities"] is None:
            failed.append({"file": str(r.path), "error": "no face or speech"})
            continue
        y.append(classes.index(r.label))
        probs.append([out["probabilities"][c] for c in classes])
    if not y:
        raise InputError(args.data, "no clip could be evaluated")
    report: dict[str, Any] = {**metrics(np.asarray(y), np.asarray(probs), classes),
                              "protocol": f"clip-level fused result on {args.data} ({len(y)} clips)",
                              "failed": failed}
    if args.out:
        write_report(report, Path(args.out))
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
