"""``face ensemble``: saved face models as one model averaging their probabilities
(:func:`ensemble_face`), and the models a list of saved ones stands for (:func:`face_members`): a saved
ensemble stands for its members, so one can be rebuilt with a member added, dropped or reweighted
without the members' run directories.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emotion_keras.config import ConfigError
from emotion_keras.models.card import ModelCard, face_views, member_config
from emotion_keras.models.io import input_spec
from emotion_keras.pipelines.common import members_prior, save_trained
from emotion_keras.pipelines.face import corpus_faces, predict_arrays
from emotion_keras.pipelines.splits import face_dataset_name, face_split_name

# what every member of an ensemble shares with it, so its card keeps them once
SHARED_FIELDS = ("task", "classes", "inputs", "preprocessing")


@dataclasses.dataclass
class FaceMember:
    """One model of an ensemble to be: a saved model, or a member of a saved ensemble."""

    source: str  # its folder, or "FOLDER[member_i]" for a saved ensemble's i-th member
    model: Any
    card: dict[str, Any]
    weight: float  # its weight in the ensemble it comes from (1 for a model saved alone)
    unpacked: bool = False


def face_members(model_dirs: Sequence[str | Path]) -> list[FaceMember]:
    """The models ``model_dirs`` stand for, in order: a saved model is itself; a saved ensemble is its
    members, each with its weight and a card of its own (:func:`member_card`)."""
    from emotion_keras.models import store
    from emotion_keras.models.ensemble import members_of

    out = []
    for d in model_dirs:
        model, card = store.load(d)
        config = card.get("model_config") or {}
        if config.get("architecture") != "ensemble" or card.get("task") != "face":  # others are refused whole
            out.append(FaceMember(str(d), model, card, 1.0))
            continue
        nets = members_of(model)
        entries = (card.get("ensemble") or {}).get("members") or []
        if len(entries) != len(nets):
            raise ConfigError(f"{d}: its card describes {len(entries)} members, its model holds {len(nets)}")
        weights = config.get("weights") or [1.0] * len(nets)
        info = card.get("data") or {}
        specs = info.get("member_specs") or [info.get("spec")] * len(nets)
        for i, (net, entry, weight, spec) in enumerate(zip(nets, entries, weights, specs), 1):
            out.append(FaceMember(f"{d}[member_{i}]", net, member_card(card, entry, spec), float(weight), True))
    return out


def member_card(card: dict[str, Any], entry: dict[str, Any], spec: str | None) -> dict[str, Any]:
    """The card of an ensemble's member, from the ensemble's card: the fields they share and the
    member's own entry. Ensembles saved before entries kept the member's data and class prior (the
    six-model face ensemble) get both rebuilt from the member's training corpus, ``spec``, as
    ``emotion-keras calibrate`` rebuilds a prior."""
    member = {**{k: card[k] for k in SHARED_FIELDS if k in card},
              "name": entry.get("name"), "model_config": entry.get("model_config") or member_config(card),
              "train_config": entry.get("train_config") or {}, "training": entry.get("training") or {},
              "metrics": {"validation": entry.get("validation") or {}},
              **({"tta": card["tta"]} if card.get("tta") else {})}
    member["data"] = entry.get("data") or corpus_data(spec, tuple(card["classes"]))
    prior = entry.get("class_prior")
    if not prior:
        from emotion_keras.pipelines.calibrate import training_prior_of

        prior = training_prior_of(member, spec, corpus_records(spec)) if spec else {}
    member["class_prior"] = prior
    return member


@functools.lru_cache(maxsize=8)
def corpus_records(spec: str) -> tuple:
    """The records of the face corpus ``spec``, read once: an ensemble's members often share a corpus,
    and each member's card and prior need it."""
    from emotion_keras.data.faces import read_faces

    return tuple(read_faces(spec))


def corpus_data(spec: str | None, classes: tuple[str, ...]) -> dict[str, Any]:
    """A card's ``data`` naming the corpus ``spec`` and its licence (``{}`` without a spec)."""
    if not spec:
        return {}
    from emotion_keras.data.faces import corpus_licence

    records = [r for r in corpus_records(spec) if r.label in classes]
    return {"corpus": f"{face_dataset_name(records)} ({', '.join(classes)} only)", "spec": spec,
            "licence": corpus_licence(records)}


def ensemble_face(model_dirs: Sequence[str | Path], out: str | Path, name: str | None = None,
                  data: str | None = None, split: str = "validation", tta: str = "none",
                  weights: Sequence[float] | None = None, progress: bool = True) -> dict[str, Any]:
    """Saved face models of one preprocessing and class list as one model averaging their
    probabilities (:func:`emotion_keras.models.ensemble.build_ensemble`).

    Independently trained models disagree on hard faces, and their mean is the cheapest accuracy on
    faces none of them saw. A saved ensemble among ``model_dirs`` joins as its members, with their
    weights. The ensemble is scored on ``split`` of ``data`` (default: the first member's training
    corpus, whose validation split chose the members' epochs, as a trained model's is) and gets a
    temperature fitted there, as ``face train`` does. ``tta`` (the card's ``tta``) is the test-time
    views its recogniser and ``face evaluate`` average by default: the validation figure and the
    temperature are measured with them. ``weights`` (one per member, after ensembles are unpacked; 0
    leaves a member out) make it a weighted mean, and weigh the members' class priors alike; without
    them, members keep the weights they had in a saved ensemble, and others weigh 1. Returns
    ``{"card", "metrics", "out"}``.
    """
    from emotion_keras.evaluate import metrics
    from emotion_keras.models.ensemble import build_ensemble

    members = face_members(model_dirs)
    if weights is not None:
        if len(weights) != len(members) or not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ConfigError(f"--weights needs {len(members)} numbers, one per model (a saved ensemble counts "
                              f"its members), finite, 0 or more; got {list(weights)}")
        kept = [(m, float(w)) for m, w in zip(members, weights) if w > 0]
        members, weights = [m for m, _ in kept], [w for _, w in kept]
    elif any(m.unpacked for m in members):
        weights = [m.weight for m in members]
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs at least two models, not {len(members)}")
    cards = [m.card for m in members]
    first = members[0]
    for m in members[1:]:
        for key in ("task", "classes", "preprocessing"):
            if m.card.get(key) != first.card.get(key):
                raise ConfigError(f"{m.source}: its {key} differs from {first.source}'s: members must share it")
        if face_views(m.card)[1] != face_views(first.card)[1]:  # the views are cut once, at the first's crop
            raise ConfigError(f"{m.source}: it sees {face_views(m.card)[1] or 'whole'} px crops, {first.source} "
                              f"{face_views(first.card)[1] or 'whole'} px ones: members must share the crop")
    if first.card.get("task") != "face":
        raise ConfigError(f"{first.source}: a {first.card.get('task')} model; face ensemble takes face models")
    classes = list(first.card["classes"])
    net = build_ensemble([m.model for m in members], name="face_ensemble", weights=weights)
    data = data or (first.card.get("data") or {}).get("spec")
    if not data:
        raise ConfigError(f"{first.source}: its card names no corpus; pass the validation data")
    got = corpus_faces(net, first.card, data, split, progress=progress)
    crop = face_views(first.card)[1]
    probs = predict_arrays(net, got["arrays"], tta=tta, batch_size=min(256, len(got["arrays"])), crop=crop)
    views = {"none": "", "flip": ", horizontal-flip TTA", "ten_crop": ", ten-crop TTA"}[tta]
    val_metrics = {**metrics(got["y"], probs, classes),
                   "protocol": f"{face_dataset_name(got['records'])} {face_split_name(got['records'], got['split'])} "
                               f"({len(got['arrays']):,} faces{views}); the "
                               + (f"weighted mean ({', '.join(f'{w:g}' for w in weights)}) " if weights else "mean ")
                               + f"of {len(members)} models' probabilities"}
    card = ModelCard(
        task="face", name=name or Path(out).name, classes=classes, inputs=input_spec(net),
        preprocessing=first.card["preprocessing"],
        model_config={"architecture": "ensemble", "members": len(members), "member": member_config(first.card),
                      **({"weights": weights} if weights else {})},
        train_config=first.card.get("train_config") or {}, data=members_data(cards),
        metrics={"validation": val_metrics}, class_prior=members_prior(cards, classes, weights),
        training={"seconds": round(sum(float((c.get("training") or {}).get("seconds") or 0) for c in cards), 2)},
        extra={"ensemble": {"members": [
            {"member": f"member_{i}", "name": m.card.get("name"), "dir": m.source,
             "model_config": m.card.get("model_config"), "train_config": m.card.get("train_config"),
             "training": m.card.get("training"), "data": m.card.get("data"),
             "class_prior": m.card.get("class_prior"),
             "validation": {k: (m.card.get("metrics") or {}).get("validation", {}).get(k) for k in ("accuracy", "uar")}}
            for i, m in enumerate(members, 1)]}, **({"tta": tta} if tta != "none" else {})})
    res = save_trained(net, card, val_metrics, Path(out), None, {}, calibrate_on=(probs, got["y"]))
    return {"card": res["card"], "metrics": val_metrics, "out": res["out"]}


def members_data(cards: Sequence[dict]) -> dict[str, Any]:
    """An ensemble card's ``data``: the first member's, naming every corpus and licence its members
    were trained on (a FER2013-label member beside FER+ ones is not "trained on FER+")."""
    datas = [c.get("data") or {} for c in cards]
    out = dict(datas[0])
    for key, sep in (("corpus", " + "), ("licence", "; ")):
        # a member trained on two corpora names both in one string: split it, so each is named once
        seen = list(dict.fromkeys(part for d in datas if d.get(key) for part in str(d[key]).split(sep)))
        if len(seen) > 1:
            out[key] = sep.join(seen)
    if len({d.get("spec") for d in datas}) > 1:
        out["member_specs"] = [d.get("spec") for d in datas]
    return out
