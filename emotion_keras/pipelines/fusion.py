"""The fusion pipeline: face and speech embeddings (cached), pseudo-pairs for unimodal corpora or
windows of real audio-visual clips, the fusion head trained on them with late fusion as its baseline
(:func:`train_fusion`), and the clip-level evaluation of a saved fusion model (:func:`evaluate_fusion`).

Pseudo-pairs carry no real audio-visual correlation: the card says so (``data.pairs = "pseudo"``)
and every metric computed on them is labelled as pseudo-pair.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError


# ------------------------------------------------------------------ embeddings (cached)

def _card_tag(card: dict) -> str:
    return f"{card.get('name')}|{card.get('date')}|{card.get('parameters')}"


def _embeddings(task: str, model_dir: Path, records, inputs_of, batch_size: int,
                progress: bool) -> dict[str, np.ndarray]:
    """A saved model's embeddings and probabilities of ``records``, cached by records and model.

    ``inputs_of(net, card)`` gives the model's inputs and the per-sample fields to keep (labels...).
    """
    from emotion_keras.data.cache import cache_key, cached
    from emotion_keras.data.records import fingerprint
    from emotion_keras.models import store

    card = store.read_card(model_dir)
    # version 3: a weighted ensemble's probabilities are weighted (version 2 cached them unweighted)
    key = cache_key(f"fusion-{task}-emb", 3, fingerprint(records), _card_tag(card))

    def compute():
        from emotion_keras.models.fusion import embedding_and_probabilities

        model, card_ = store.load(model_dir)
        net = embedding_and_probabilities(model)
        x, fields = inputs_of(net, card_)
        emb, probs = net.predict(x, batch_size=batch_size, verbose=int(progress))
        return {"embedding": np.asarray(emb, np.float32), "probs": np.asarray(probs, np.float32), **fields}

    return cached(f"fusion-{task}", key, compute)


def face_embeddings(face_dir: Path, records, progress: bool = True) -> dict[str, np.ndarray]:
    """Face-model embeddings and probabilities of face records (crops or detected faces), cached."""
    def inputs_of(net, card):
        from emotion_keras.models.io import model_feed
        from emotion_keras.preprocess.faces import prepare_faces
        from emotion_keras.preprocess.preprocessors import FacePreprocessor

        prep = FacePreprocessor.from_card(card).config
        arrays = prepare_faces(records, prep, progress=progress)
        return model_feed(net, arrays.inputs()), {"labels": np.asarray(arrays.labels)}

    return _embeddings("face", face_dir, records, inputs_of, 256, progress)


def speech_embeddings(speech_dir: Path, records, progress: bool = True) -> dict[str, np.ndarray]:
    """Speech-model embeddings and probabilities of every window of speech records, cached. The
    windows get every input the model reads (features, prosody) and, for a speaker-normalised model,
    each clip's own statistics shrunk towards the card's typical speaker: what the recogniser gives
    the head at inference for a speaker it has not enrolled."""
    def inputs_of(net, card):
        from emotion_keras.models.io import model_feed
        from emotion_keras.pipelines.speech import scoring_windows
        from emotion_keras.preprocess.preprocessors import SpeechPreprocessor

        cfg = SpeechPreprocessor.from_card(card).config
        ws = scoring_windows(list(records), cfg, progress, per="clip", prior=card.get("speaker_norm_prior"))
        return model_feed(net, ws.inputs()), {
            "labels": np.asarray([records[i].label for i in ws.clip]),
            "subjects": np.asarray([str(records[i].subject) for i in ws.clip])}

    return _embeddings("speech", speech_dir, records, inputs_of, 128, progress)


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



# ------------------------------------------------------------------ training

@dataclasses.dataclass
class FusionTrainSettings:
    """What ``fusion train`` takes (its defaults are the CLI's): the data, the encoders, the head."""

    pairs: str = "real"  # "real" audio-visual clips, or "pseudo" pairs of unimodal corpora
    data: str | None = None  # real clips
    face_data: str | None = None  # pseudo-pairs: face corpus
    speech_data: str | None = None  # pseudo-pairs: speech corpus
    val_speakers: str = "17,18,19,20"
    val_subjects: str | None = None
    face_dir: str | Path | None = None
    speech_dir: str | Path | None = None
    out: str | Path | None = None
    run_dir: str | Path = "runs/fusion/latest"
    pooling: str = "attention"
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_per_class: int = 3000
    stack: bool = False
    repeats: int = 3
    window: float = 2.5
    hop: float = 1.0
    fps: float = 5.0
    seed: int = 0
    verbose: int = 2


@dataclasses.dataclass
class FusionData:
    """Training and validation inputs of the head, with what the card says about them.

    ``p_face_va``: the face model's probabilities on the validation pairs (pseudo-pairs only: the
    late-fusion baseline); ``late_fit``: ``(face probs, speech embeddings, y)`` to tune the late
    weight on (stacked head only)."""

    x_tr: dict[str, np.ndarray]
    y_tr: np.ndarray
    x_va: dict[str, np.ndarray]
    y_va: np.ndarray
    classes: list[str]
    data: dict[str, Any]
    protocol: str
    p_face_va: np.ndarray | None = None
    late_fit: tuple | None = None


def pseudo_pair_data(s: FusionTrainSettings, face_dir: Path, speech_dir: Path, face_card: dict,
                     speech_card: dict) -> FusionData:
    """Pseudo-pairs of ``s.face_data`` images and ``s.speech_data`` windows of the same label."""
    from emotion_keras.data.faces import read_faces
    from emotion_keras.data.records import by_split, group_split
    from emotion_keras.data.speech import read_speech
    from emotion_keras.recognizers.multimodal import project

    face_classes = list(face_card["classes"])
    face_records = read_faces(s.face_data)
    speech_records = read_speech(s.speech_data)
    classes = [c for c in face_classes if c in {r.label for r in speech_records}]
    f_train = [r for r in face_records if r.split != "validation"]
    f_val = by_split(face_records, "validation")
    if not f_val:
        f_train, f_val = group_split(face_records, 0.2, seed=s.seed)
    fe_va = face_embeddings(face_dir, f_val)
    se = speech_embeddings(speech_dir, speech_records)
    val_speakers = {v.strip().lstrip("0") for v in s.val_speakers.split(",") if v.strip()}
    is_val = np.asarray([v.lstrip("0") in val_speakers for v in se["subjects"]])
    se_tr = {k: v[~is_val] for k, v in se.items()}
    se_va = {k: v[is_val] for k, v in se.items()}
    late_fit = None
    if s.stack:
        # train the head on data neither encoder was trained on: half A of the face validation
        # images with the first half of the held-out speakers; validate on the other halves (B)
        rng = np.random.default_rng(s.seed)
        half = rng.permutation(len(fe_va["labels"])) < len(fe_va["labels"]) // 2
        order = sorted(val_speakers, key=lambda v: (len(v), v))
        spk_a = set(order[:max(1, len(order) // 2)])
        in_a = np.asarray([v.lstrip("0") in spk_a for v in se_va["subjects"]])
        fa = {k: v[half] for k, v in fe_va.items()}
        fb = {k: v[~half] for k, v in fe_va.items()}
        sa = {k: v[in_a] for k, v in se_va.items()}
        sb = {k: v[~in_a] for k, v in se_va.items()}
        parts = [pseudo_pairs(fa, sa, classes, s.seed + 10 + r) for r in range(s.repeats)]
        x_tr = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        y_tr = np.concatenate([p[1] for p in parts])
        x_va, y_va, keep_va = pseudo_pairs(fb, sb, classes, s.seed + 1)
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
        fe_tr = face_embeddings(face_dir, _balanced(f_train, s.max_per_class, s.seed))
        n_face_va, n_sp_tr, n_sp_va = len(fe_va["labels"]), int((~is_val).sum()), int(is_val.sum())
        x_tr, y_tr, _ = pseudo_pairs(fe_tr, se_tr, classes, s.seed)
        x_va, y_va, keep_va = pseudo_pairs(fe_va, se_va, classes, s.seed + 1)
        p_face_va = project(fe_va["probs"][keep_va], face_classes, classes)
        split_text = (f"head trained on the encoders' training data, validated on face-corpus "
                      f"validation images x held-out speakers {s.val_speakers}; epoch chosen by UAR "
                      "on them")
    data = {"pairs": "pseudo",
            "description": "pseudo-pairs: each face image paired with a speech window of the same "
                           "label from another corpus (no real audio-visual pairs); its embedding "
                           "repeated 3-13 frames with jitter stands for a video window",
            "face": {"spec": s.face_data, "train_images": int(len(fe_tr["labels"])),
                     "validation_images": n_face_va,
                     "licence": face_card.get("data", {}).get("licence")},
            "speech": {"spec": s.speech_data, "validation_speakers": sorted(val_speakers, key=int)
                       if all(v.isdigit() for v in val_speakers) else sorted(val_speakers),
                       "train_windows": n_sp_tr, "validation_windows": n_sp_va,
                       "licence": speech_card.get("data", {}).get("licence")}}
    heard = sorted(v for v in val_speakers
                   if v in {t.lstrip("0") for t in speech_card.get("data", {}).get("train_speakers", [])})
    if heard:  # e.g. a speech model solved on every speaker: its side of these pairs is optimistic
        split_text += (f"; NOT speaker-independent on the speech side: the speech model was trained on "
                       f"speakers {','.join(heard)}")
    data["head_training"] = split_text
    protocol = ("PSEUDO-PAIRS (not real audio-visual data; face image + speech window of the same "
                f"label): {split_text}")
    return FusionData(x_tr, y_tr, x_va, y_va, classes, data, protocol, p_face_va, late_fit)


def real_clip_data(s: FusionTrainSettings, face_dir: Path, speech_dir: Path, out: Path,
                   face_card: dict) -> FusionData:
    """Windows of ``s.data``'s audio-visual clips, validated on held-out subjects."""
    import warnings

    from emotion_keras.data.records import group_split
    from emotion_keras.data.video import corpus_licence, read_video
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    face_classes = list(face_card["classes"])
    records = read_video(s.data)
    if s.val_subjects:
        held = {v.strip() for v in s.val_subjects.split(",")}
        r_tr = [r for r in records if str(r.subject) not in held]
        r_va = [r for r in records if str(r.subject) in held]
    else:
        r_tr, r_va = group_split(records, 0.2, seed=s.seed)
    with warnings.catch_warnings():  # only its encoders are used here: no fusion model needed
        warnings.simplefilter("ignore")
        rec = MultimodalEmotionRecognizer(out / "__none__", face_dir, speech_dir)
    x_tr, lab_tr, _, skipped = clip_embeddings(rec, r_tr, s.window, s.hop, s.fps)
    x_va, lab_va, _, skipped_va = clip_embeddings(rec, r_va, s.window, s.hop, s.fps)
    classes = [c for c in face_classes if c in set(lab_tr) | set(lab_va)]
    keep_tr, keep_va = np.isin(lab_tr, classes), np.isin(lab_va, classes)
    x_tr = {k: v[keep_tr] for k, v in x_tr.items()}
    x_va = {k: v[keep_va] for k, v in x_va.items()}
    y_tr = np.asarray([classes.index(c) for c in lab_tr[keep_tr]])
    y_va = np.asarray([classes.index(c) for c in lab_va[keep_va]])
    data = {"pairs": "real", "spec": s.data, "licence": corpus_licence(records),
            "train_windows": int(len(y_tr)), "validation_windows": int(len(y_va)),
            "skipped": skipped + skipped_va}
    protocol = f"real audio-visual windows of held-out subjects ({len(r_va)} clips)"
    return FusionData(x_tr, y_tr, x_va, y_va, classes, data, protocol)


def train_head(config, d: FusionData, s: FusionTrainSettings):
    """Build the fusion head, adapt its normalisation to the training inputs and fit it."""
    from emotion_keras.config import TrainConfig
    from emotion_keras.models.fusion import adapt, build_fusion_model
    from emotion_keras.train import fit

    model = build_fusion_model(config, d.classes)
    adapt(model, d.x_tr)
    tc = TrainConfig(epochs=s.epochs, batch_size=s.batch_size, learning_rate=s.learning_rate,
                     early_stopping=8, seed=s.seed, verbose=s.verbose, mixed_precision="off")
    result = fit(model, d.x_tr, d.y_tr, d.x_va, d.y_va, d.classes, tc, s.run_dir)
    return model, result, tc


def baseline_metrics(d: FusionData, speech_dir: Path, speech_classes: list[str],
                     face_classes: list[str]) -> tuple[dict[str, Any], float]:
    """Late fusion, face only and speech only on the validation pairs (pseudo-pairs), with the late
    weight tuned on half A (stacked head) or on these same pairs (optimistic; said so)."""
    from emotion_keras.evaluate import metrics
    from emotion_keras.models.fusion import late_fusion, tune_late_weight
    from emotion_keras.recognizers.multimodal import project

    classes, y_va = d.classes, d.y_va
    sp = project(_speech_probs(speech_dir, d.x_va["speech"]), speech_classes, classes)
    if d.late_fit is not None:  # weight tuned on half A, scored on B: the same footing as the head
        pf_a, s_a, y_a = d.late_fit
        weight, _ = tune_late_weight(pf_a, project(_speech_probs(speech_dir, s_a), speech_classes, classes),
                                     y_a, classes)
        how = f"face weight {weight:.2f} tuned on half A"
    else:
        weight, _ = tune_late_weight(d.p_face_va, sp, y_va, classes)
        how = f"face weight {weight:.2f} tuned on these same pairs (optimistic)"
    out = {"late_fusion_baseline": {**metrics(y_va, late_fusion(d.p_face_va, sp, weight), classes),
                                    "protocol": f"{d.protocol}; {how}"}}
    for name, p in (("face_only", d.p_face_va), ("speech_only", sp)):
        out[name] = {**metrics(y_va, p, classes), "protocol": d.protocol}
    return out, weight


def choose_inference(head: dict[str, Any], late: dict[str, Any] | None) -> str:
    """What the recogniser uses by default: the head only where it beat late fusion on validation by
    more than the standard error of a UAR on that many pairs. Late fusion has no trained parameters
    to overfit the validation pairs' construction: the shipped head, 0.4 points above it on 3,589
    pseudo-pairs, called 1 of 6 real CREMA-D clips right against late fusion's 3."""
    if late is None:
        return "fusion_head"
    u, n = late["uar"], max(int(late.get("n", 1)), 1)
    return "fusion_head" if head["uar"] > u + math.sqrt(u * (1 - u) / n) else "late_fusion"


def train_fusion(s: FusionTrainSettings) -> dict[str, Any]:
    """Train a fusion head on the saved face and speech models' embeddings and save it with its card.

    Returns ``{"out", "card", "validation", "protocol", "model"}``; raises ``ConfigError`` when the
    settings name no data for their kind of pairs.
    """
    from emotion_keras.models import store
    from emotion_keras.models.card import ModelCard
    from emotion_keras.models.fusion import FusionConfig
    from emotion_keras.train import training_record

    if s.pairs == "pseudo" and not (s.face_data and s.speech_data):
        raise ConfigError("--pairs pseudo needs --face-data and --speech-data")
    if s.pairs != "pseudo" and not s.data:
        raise ConfigError("fusion train needs --data (or --pairs pseudo)")
    face_dir = Path(s.face_dir) if s.face_dir else store.default_model_dir("face")
    speech_dir = Path(s.speech_dir) if s.speech_dir else store.default_model_dir("speech")
    out = Path(s.out) if s.out else store.default_model_dir("fusion")
    face_card, speech_card = store.read_card(face_dir), store.read_card(speech_dir)
    if s.pairs == "pseudo":
        d = pseudo_pair_data(s, face_dir, speech_dir, face_card, speech_card)
    else:
        d = real_clip_data(s, face_dir, speech_dir, out, face_card)

    config = FusionConfig(face_dim=int(d.x_tr["face_frames"].shape[-1]), speech_dim=int(d.x_tr["speech"].shape[-1]),
                          pooling=s.pooling, max_frames=int(d.x_tr["face_frames"].shape[1]))
    model, result, tc = train_head(config, d, s)
    val = {**result["validation"], "protocol": d.protocol}
    card_metrics = {"validation": val}
    weight = 0.5
    if d.p_face_va is not None:  # late fusion on the same pseudo validation pairs (baseline)
        baselines, weight = baseline_metrics(d, speech_dir, list(speech_card["classes"]),
                                             list(face_card["classes"]))
        card_metrics.update(baselines)
    card = ModelCard(
        task="fusion", name=f"fusion-{s.pairs}-{s.pooling}", classes=d.classes,
        inputs={"face_frames": [config.max_frames, config.face_dim], "face_mask": [config.max_frames],
                "speech": [config.speech_dim]},
        preprocessing={"window": s.window, "hop": s.hop, "fps": s.fps},
        model_config=config.to_dict(), train_config=tc.to_dict(), data=d.data, metrics=card_metrics,
        history=result["history"],
        training=training_record(result),
        extra={
            "face_model": {"dir": str(face_dir), "name": face_card.get("name"), "date": face_card.get("date")},
            "speech_model": {"dir": str(speech_dir), "name": speech_card.get("name"),
                             "date": speech_card.get("date")},
            "late_fusion_face_weight": weight,
            "inference": choose_inference(val, card_metrics.get("late_fusion_baseline"))},
        order=FUSION_CARD_ORDER)
    store.save(model, out, card.to_dict())
    return {"out": out, "card": card.to_dict(), "validation": val, "protocol": d.protocol, "model": model}


# The key order of a fusion card.json as it has always been written.
FUSION_CARD_ORDER = ("task", "name", "classes", "inputs", "preprocessing", "model_config", "train_config", "data",
                     "face_model", "speech_model", "late_fusion_face_weight", "metrics", "inference", "history",
                     "training")


def _speech_probs(speech_dir: Path, emb: np.ndarray) -> np.ndarray:
    """The speech model's own probabilities from its embeddings (its layers after the embedding)."""
    from emotion_keras.models import store
    from emotion_keras.models.fusion import probabilities_of_embedding

    model, _ = store.load(speech_dir)
    return np.asarray(probabilities_of_embedding(model).predict(emb, batch_size=256, verbose=0), np.float32)


# ------------------------------------------------------------------ evaluation

def evaluate_fusion(data: str, fusion_dir=None, face_dir=None, speech_dir=None,
                    out: str | Path | None = None) -> dict[str, Any]:
    """Clip-level fused result of a saved fusion model on labelled clips; with ``out``, the report
    (JSON + confusion figure) is written there. Clips that fail are listed, not fatal."""
    from emotion_keras.data.video import read_video
    from emotion_keras.errors import InputError
    from emotion_keras.evaluate import metrics, write_report
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    records = read_video(data)
    rec = MultimodalEmotionRecognizer(fusion_dir, face_dir, speech_dir)
    classes = rec.classes
    y, probs, failed = [], [], []
    for r in records:
        if r.label not in classes:
            continue
        try:
            res = rec.predict_file(r.path)
        except InputError as e:
            failed.append({"file": str(r.path), "error": e.problem})
            continue
        if res["probabilities"] is None:
            failed.append({"file": str(r.path), "error": "no face or speech"})
            continue
        y.append(classes.index(r.label))
        probs.append([res["probabilities"][c] for c in classes])
    if not y:
        raise InputError(data, "no clip could be evaluated")
    report: dict[str, Any] = {**metrics(np.asarray(y), np.asarray(probs), classes),
                              "protocol": f"clip-level fused result on {data} ({len(y)} clips)",
                              "failed": failed}
    if out:
        write_report(report, Path(out))
    return report
