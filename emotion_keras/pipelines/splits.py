"""Training/validation splits and the protocol sentence that goes next to every number.

Faces: a corpus-declared split, held-out subjects, another corpus, or (no subjects) a stratified
random hold-out; :func:`stratified_subset` for quick runs. Speech: speaker-independent only, one
hold-out (:func:`load_speech_split`), speaker-grouped folds (:func:`speech_kfold_splits`) and the
inner validation of a fold (:func:`inner_split`); never a random clip split. The group splits
themselves live in :mod:`emotion_keras.data.records`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError
from emotion_keras.data.faces import corpus_licence as face_corpus_licence
from emotion_keras.data.faces import read_faces
from emotion_keras.data.records import Record, group_kfold, group_split, subjects_of
from emotion_keras.data.speech import corpus_licence as speech_corpus_licence
from emotion_keras.data.speech import read_speech, select_classes
from emotion_keras.errors import InputError


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


# ---------------------------------------------------------------- faces

FACE_DATASET_NAMES = {"fer2013": "FER2013", "ferplus": "FER+", "ckplus": "CK+48", "rafdb": "RAF-DB",
                      "jaffe": "JAFFE", "wild_faces": "wild faces (muxspace facial_expressions)"}
# Canonical splits by each corpus's own names, for protocol text (data.faces.FER_USAGE reads FER2013's back).
CORPUS_SPLIT_NAMES = {"fer2013": {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"},
                      "ferplus": {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}}


def face_dataset_name(records: list[Record]) -> str:
    """The face corpora behind ``records`` (``FER2013``, ``CK+48``...)."""
    return dataset_name(records, FACE_DATASET_NAMES)


def face_split_name(records: list[Record], split: str) -> str:
    """A corpus split by its corpus's own name (FER2013 ``validation`` is ``PublicTest``)."""
    ds = {r.dataset for r in records}
    if len(ds) == 1:
        return CORPUS_SPLIT_NAMES.get(next(iter(ds)), {}).get(split, split)
    return split


def stratified_subset(records: list[Record], n: int, seed: int) -> list[Record]:
    """Exactly ``n`` records with the class proportions of ``records`` (largest-remainder rounding,
    at least one per class), for quick runs and tests."""
    if n >= len(records):
        return list(records)
    rng = np.random.default_rng(seed)
    labels = np.asarray([r.label for r in records])
    classes = sorted(set(labels.tolist()))
    sizes = np.asarray([(labels == c).sum() for c in classes])
    quota = n * sizes / len(records)
    take = np.minimum(np.maximum(np.floor(quota).astype(int), 1), sizes)
    for i in np.argsort(-(quota - np.floor(quota))):  # hand out what rounding left over
        if take.sum() >= n:
            break
        if take[i] < sizes[i]:
            take[i] += 1
    keep: list[int] = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        keep += rng.choice(idx, size=int(k), replace=False).tolist()
    return [records[i] for i in sorted(keep)]


def stratified_mask(labels, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask holding out ``fraction`` of each class of ``labels`` at random (at least one per
    class)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    held = np.zeros(len(labels), bool)
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        rng.shuffle(idx)
        held[idx[:max(1, int(round(len(idx) * fraction)))]] = True
    return held


def stratified_holdout(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """``(rest, held)``: ``fraction`` of each class held out at random (at least one per class), for
    corpora that name no subjects."""
    held = stratified_mask([r.label for r in records], fraction, seed)
    return [r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h]


def _only(records: list[Record], classes: list[str] | None) -> list[Record]:
    if not classes:
        return records
    kept = [r for r in records if r.label in classes]
    if not kept:
        raise InputError("--classes", f"no records labelled {classes}")
    return kept


def load_face_split(data: str, val_split: str | None = None, val_subjects: float | None = None,
               val_data: str | None = None, limit: int | None = None, val_limit: int | None = None,
               seed: int = 0, classes: list[str] | None = None, add_data: Sequence[str] = (),
               val_fraction: float | None = None) -> Split:
    """Read ``data`` and choose the validation records, in this order of preference:

    ``val_data`` (another corpus), ``val_subjects`` (a subject-held-out fraction), ``val_fraction``
    (a stratified random fraction of the training split: the corpus's validation split, FER2013's
    PublicTest say, then chooses nothing and stays an independent evaluation), ``val_split`` (a
    corpus-declared split). With none given: the corpus's ``validation`` split, else its ``test``
    split, else 20% of subjects held out, else (no subjects) a stratified random 20%.
    A corpus-declared ``test`` split is never used for training. ``classes`` keeps only records with
    those labels (before any subset is drawn).

    ``add_data`` are more corpora to train on: their training split, or all of a corpus that
    declares none. Their validation and test splits are left out, because corpora can share faces
    (FER2013's PublicTest is FER+'s FER2013Valid): FER2013's own labels beside FER+'s votes, say.
    """
    records = _only(read_faces(data), classes)
    splits = {r.split for r in records}

    def described(recs: list[Record]) -> str:
        return face_dataset_name(recs) + (f" ({', '.join(classes)} only)" if classes else "")

    ds = described(records)
    if val_data:
        val = _only(read_faces(val_data), classes)
        train = [r for r in records if r.split in (None, "train")]
        how = f"{face_dataset_name(val)} ({len(val):,} images)"
        train_how = f"{ds}"
    elif val_subjects:
        if not 0 < val_subjects < 1:
            raise ConfigError(f"--val-subjects must be a fraction between 0 and 1, not {val_subjects}")
        pool = [r for r in records if r.split != "test"]
        try:
            train, val = group_split(pool, val_subjects, seed=seed)
        except ValueError as e:
            raise InputError(data, f"cannot split by subject: {e}") from None
        n_sub = len(subjects_of(pool))
        how = (f"{ds} subject-held-out: {len(subjects_of(val))} of {n_sub} subjects "
               f"({len(val):,} images, seed {seed})")
        train_how = f"the other {len(subjects_of(train))} subjects"
    elif val_fraction:
        if not 0 < val_fraction < 1:
            raise ConfigError(f"--val-fraction must be a fraction between 0 and 1, not {val_fraction}")
        pool = [r for r in records if r.split == "train"] or [r for r in records if r.split is None]
        if not pool:
            raise InputError(data, f"no training split to hold a fraction out of; the corpus declares "
                                   f"{sorted(s for s in splits if s)}")
        train, val = stratified_holdout(pool, val_fraction, seed)
        part = f"{ds} {face_split_name(records, 'train')}" if pool[0].split else ds
        how = f"{part}, stratified random {val_fraction:.0%} hold-out ({len(val):,} images, seed {seed})"
        train_how = f"the rest of {part}"
    else:
        if val_split is None:
            val_split = "validation" if "validation" in splits else "test" if "test" in splits else None
        if val_split is not None:
            val = [r for r in records if r.split == val_split]
            if not val:
                raise InputError(data, f"no records in split {val_split!r}; the corpus declares "
                                       f"{sorted(s for s in splits if s)}")
            train = [r for r in records if r.split == "train"] or \
                [r for r in records if r.split not in (val_split, "test")]
            how = f"{ds} {face_split_name(records, val_split)} ({len(val):,} images)"
            train_how = f"{ds} {face_split_name(records, 'train')}" if any(r.split == "train" for r in train) \
                else f"the rest of {ds}"
        elif all(r.subject for r in records):
            train, val = group_split(records, 0.2, seed=seed)
            how = (f"{ds} subject-held-out: {len(subjects_of(val))} of {len(subjects_of(records))} "
                   f"subjects ({len(val):,} images, seed {seed})")
            train_how = f"the other {len(subjects_of(train))} subjects"
        else:
            train, val = stratified_holdout(records, 0.2, seed)
            how = (f"{ds} stratified random 20% hold-out ({len(val):,} images, seed {seed}; the corpus "
                   "names no subjects)")
            train_how = "the other 80%"
    if not train:
        raise InputError(data, "no training records left after choosing the validation set")
    for spec in add_data:
        extra = [r for r in _only(read_faces(spec), classes) if r.split in (None, "train")]
        if not extra:
            raise InputError(spec, "no training records to add (the corpus has only validation or test "
                                   "splits, or none of the classes)")
        train_how += f" + {face_dataset_name(extra)} {face_split_name(extra, 'train') if extra[0].split else 'all'}"
        train = train + extra
        records = records + extra
    full_train = len(train)
    if limit:
        train = stratified_subset(train, limit, seed)
    if val_limit:
        val = stratified_subset(val, val_limit, seed + 1)
        how += f" [stratified subset of {len(val):,}, seed {seed + 1}]"
    train_part = f"{train_how} ({len(train):,} images" + (
        f", stratified subset of {full_train:,}, seed {seed})" if len(train) < full_train else ")")
    protocol = f"{how}, trained on {train_part}"
    info = {"corpus": described(records), "spec": str(data),
            **({"add_data": [str(a) for a in add_data]} if add_data else {}),
            "licence": face_corpus_licence(records + (val if val_data else [])),
            "train_images": len(train), "validation_images": len(val),
            "validation": (str(val_data) if val_data else "subjects" if val_subjects
                           else "fraction" if val_fraction else val_split)}
    return Split(train, val, protocol, info)



# ---------------------------------------------------------------- speech

SPEECH_DATASET_NAMES = {"ravdess": "RAVDESS", "cremad": "CREMA-D", "tess": "TESS", "savee": "SAVEE",
                        "emodb": "EmoDB"}
SPEAKER_WORD = {"ravdess": "actors", "cremad": "actors"}


def speech_dataset_name(records) -> str:
    """The speech corpora behind ``records`` (``RAVDESS + TESS``)."""
    return dataset_name(records, SPEECH_DATASET_NAMES)


def speaker_word(records) -> str:
    """What the corpus calls its speakers (RAVDESS: actors)."""
    ds = {r.dataset for r in records}
    return SPEAKER_WORD.get(next(iter(ds)), "speakers") if len(ds) == 1 else "speakers"


def _norm_id(s: str) -> str:
    s = str(s).strip()
    prefix, _, rest = s.rpartition(":")
    rest = rest.lstrip("0") or "0" if rest.isdigit() else rest.upper()
    return f"{prefix}:{rest}" if prefix else rest


def speaker_list(ids) -> str:
    """``01, 02, 03, 04`` -> ``1-4`` style ranges where the ids are numbers."""
    try:
        nums = sorted(int(str(s).rpartition(":")[2]) for s in ids)
    except ValueError:
        return ", ".join(sorted(map(str, ids)))
    parts, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            parts.append(f"{start}" if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def parse_speakers(value: str | float | None, records) -> tuple[float | None, list[str] | None]:
    """``"0.2"`` -> fraction; ``"17,18,19,20"`` or ``"1001"`` -> the matching subject ids."""
    if value is None or value == "":
        return None, None
    text = str(value).strip()
    try:
        frac = float(text)
        if "," not in text and "." in text:
            if not 0 < frac < 1:
                raise ConfigError(f"--val-speakers fraction must be between 0 and 1, not {text}")
            return frac, None
    except ValueError:
        pass
    wanted = [t for t in text.split(",") if t.strip()]
    available = {}
    for s in subjects_of(records):
        available.setdefault(_norm_id(s), s)
        available.setdefault(_norm_id(s.rpartition(":")[2]), s)
    missing = [w for w in wanted if _norm_id(w) not in available]
    if missing:
        raise ConfigError(f"--val-speakers: no speaker {missing} in the data; speakers are "
                          f"{', '.join(subjects_of(records))}")
    return None, sorted({available[_norm_id(w)] for w in wanted}, key=lambda s: (len(s), s))


def read_speech_records(data: str, classes: list[str] | None = None, include_calm: bool = True,
                        limit_speakers: str | None = None) -> list[Record]:
    """A speech corpus with only ``classes`` (optional) and the speakers ``limit_speakers`` names."""
    records = read_speech(data, include_calm=include_calm)
    if classes:
        records = select_classes(records, classes)
    if limit_speakers:
        _, keep = parse_speakers(limit_speakers, records)
        records = [r for r in records if r.subject in set(keep or ())]
    if not records:
        raise InputError(data, "no clips left after selecting classes and speakers")
    return records


def load_speech_split(data: str | list[Record], val_speakers: str | float | None = 0.2,
               val_data: str | None = None, classes: list[str] | None = None, include_calm: bool = True,
               speakers: str | None = None, seed: int = 0) -> Split:
    """Read ``data`` and hold out validation speakers (a fraction or a list), or validate on another
    corpus (``val_data``). No speaker is ever on both sides."""
    records = data if isinstance(data, list) else read_speech_records(data, classes, include_calm, speakers)
    spec = "<records>" if isinstance(data, list) else str(data)
    ds, word = speech_dataset_name(records), speaker_word(records)
    if val_data:
        val = read_speech_records(val_data, classes, include_calm)
        train = records
        how = f"validated on {speech_dataset_name(val)} ({len(val):,} clips, {len(subjects_of(val))} speakers)"
    else:
        frac, ids = parse_speakers(val_speakers if val_speakers is not None else 0.2, records)
        if ids:
            held = set(ids)
            train = [r for r in records if r.subject not in held]
            val = [r for r in records if r.subject in held]
        else:
            try:
                train, val = group_split(records, frac, seed=seed)
            except ValueError as e:
                raise InputError(spec, f"cannot split by speaker: {e}") from None
        how = (f"speaker-independent hold-out: validated on {word} {speaker_list(subjects_of(val))} "
               f"({len(val):,} clips)" + ("" if ids else f", drawn at random with seed {seed}"))
    if not train or not val:
        raise InputError(spec, f"empty side after the split ({len(train)} train, {len(val)} validation)")
    overlap = set(subjects_of(train)) & set(subjects_of(val))
    if overlap:  # cannot happen by construction; guard the protocol's promise anyway
        raise InputError(spec, f"speakers {sorted(overlap)} on both sides of the split")
    protocol = (f"{ds} {how}, trained on the other {len(subjects_of(train))} {word} "
                f"({len(train):,} clips); clip-level scores")
    info = {"corpus": ds, "spec": spec, "licence": speech_corpus_licence(records),
            "train_speakers": subjects_of(train), "validation_speakers": subjects_of(val),
            "train_clips": len(train), "validation_clips": len(val)}
    return Split(train, val, protocol, info)


def speech_kfold_splits(records: list[Record], k: int = 5, seed: int | None = None) -> list[Split]:
    """Speaker-grouped k folds (sorted speakers, e.g. RAVDESS actors 1-4, 5-8, ... for k=5)."""
    try:
        folds = group_kfold(records, k, seed=seed)
    except ValueError as e:
        raise InputError(speech_dataset_name(records), f"cannot make {k} speaker folds: {e}") from None
    ds, word = speech_dataset_name(records), speaker_word(records)
    out = []
    for i, (train, val) in enumerate(folds):
        protocol = (f"{ds} speaker-grouped {k}-fold cross-validation, fold {i + 1}: validated on {word} "
                    f"{speaker_list(subjects_of(val))} ({len(val):,} clips), trained on the other "
                    f"{len(subjects_of(train))} ({len(train):,} clips); clip-level scores")
        out.append(Split(train, val, protocol, {
            "corpus": ds, "licence": speech_corpus_licence(records), "fold": i + 1, "folds": k,
            "train_speakers": subjects_of(train), "validation_speakers": subjects_of(val),
            "train_clips": len(train), "validation_clips": len(val)}))
    return out


def inner_split(split: Split, fold: int, folds: list[Split]) -> Split:
    """The inner validation of outer fold ``fold`` (0-based): the next fold's speakers, taken out of
    its training speakers, so epochs are chosen without looking at the speakers the fold reports."""
    inner = set(folds[(fold + 1) % len(folds)].data["validation_speakers"])
    train = [r for r in split.train if r.subject not in inner]
    val = [r for r in split.train if r.subject in inner]
    word, ds = speaker_word(split.train), speech_dataset_name(split.train)
    protocol = (f"{ds} inner validation on {word} {speaker_list(inner)} ({len(val):,} clips), trained on "
                f"{speaker_list(subjects_of(train))} ({len(train):,} clips)")
    inner_ids = sorted(inner, key=lambda s: (len(s), s))
    return Split(train, val, protocol, {**split.data, "train_speakers": subjects_of(train),
                                        "validation_speakers": inner_ids, "inner_validation_speakers": inner_ids,
                                        "test_speakers": split.data["validation_speakers"],
                                        "train_clips": len(train), "validation_clips": len(val),
                                        "test_clips": len(split.val)})

