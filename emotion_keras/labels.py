"""One canonical emotion label set, the aliases corpora use for it, and each corpus's mapping.

Every reader maps its corpus's labels here, so models trained on different corpora agree on what
index 3 means. A label that cannot be mapped is an error that names it: silently dropping or
mislabelling a class would corrupt every number downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# The seven basic emotions, in the FER2013 order of names (not codes): the default class order.
BASIC = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Classes some corpora add; a model includes them only when its config asks for them.
OPTIONAL = ("contempt", "calm", "boredom")
CANONICAL = BASIC + OPTIONAL

ALIASES: dict[str, str] = {
    "anger": "angry", "ang": "angry", "mad": "angry",
    "disgusted": "disgust", "dis": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fea": "fear",
    "happiness": "happy", "joy": "happy", "hap": "happy", "pleasant_surprise": "surprise",
    "sadness": "sad", "unhappy": "sad",
    "surprised": "surprise", "ps": "surprise", "sur": "surprise",
    "neu": "neutral", "normal": "neutral",
    "bored": "boredom", "boring": "boredom",
    "contemptuous": "contempt",
}


class LabelError(ValueError):
    """Raised when labels cannot be mapped onto the canonical set."""


def canonical(label: str) -> str:
    """Return the canonical name for ``label`` (case and alias insensitive) or raise LabelError."""
    key = str(label).strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in CANONICAL:
        raise LabelError(f"unknown emotion label {label!r}; known: {', '.join(CANONICAL)}")
    return key


def map_labels(labels: Iterable[str], mapping: Mapping[str, str] | None = None,
               source: str = "dataset") -> list[str]:
    """Map raw corpus labels onto canonical names.

    ``mapping`` is the corpus's own table (code -> name), applied before aliases. All unmappable labels
    are collected and reported together, naming ``source``.
    """
    out, bad = [], set()
    for raw in labels:
        value = mapping.get(str(raw), raw) if mapping else raw
        try:
            out.append(canonical(value))
        except LabelError:
            bad.add(str(raw))
    if bad:
        raise LabelError(f"{source}: labels that map to no emotion: {', '.join(sorted(bad))}")
    return out


def class_list(labels: Iterable[str], include: Iterable[str] = ()) -> list[str]:
    """The class order for a model: canonical order, restricted to labels present plus ``include``."""
    present = {canonical(x) for x in labels} | {canonical(x) for x in include}
    return [c for c in CANONICAL if c in present]


def to_indices(labels: Iterable[str], classes: list[str]):
    """Integer targets for ``labels`` in ``classes`` order; a label outside ``classes`` is an error."""
    import numpy as np

    index = {c: i for i, c in enumerate(classes)}
    labels = list(labels)
    missing = sorted({x for x in labels if x not in index})
    if missing:
        raise LabelError(f"labels {missing} are not among the model's classes {classes}")
    return np.asarray([index[x] for x in labels], dtype="int32")


# Each corpus's declared mapping from its raw codes to canonical names.
FER2013_CODES = {"0": "angry", "1": "disgust", "2": "fear", "3": "happy", "4": "sad",
                 "5": "surprise", "6": "neutral"}
RAFDB_CODES = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happy", "5": "sad",
               "6": "angry", "7": "neutral"}
JAFFE_CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "SA": "sad",
               "SU": "surprise", "NE": "neutral"}
RAVDESS_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                 "06": "fear", "07": "disgust", "08": "surprise"}
CREMAD_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
                "SAD": "sad"}
SAVEE_CODES = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad",
               "su": "surprise"}
EMODB_CODES = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad",
               "N": "neutral"}
