"""FER+ (Barsoum et al. 2016): the FER2013 faces relabelled by 10 annotators each.

FERPlus's own layout: ``FER2013Train/``, ``FER2013Valid/`` and, where a user has it,
``FER2013Test/``, each a folder of ``ferNNNNNNN.png`` with a ``label.csv`` whose rows are
``image,face box,`` then 10 vote counts in the order of :data:`VOTE_ORDER`.

Two label modes, after the paper:

* ``majority``: a face's label is the emotion that won more than half of the votes, once single
  votes are dropped as annotator noise. Faces won by *unknown* or *not a face*, or with no clear
  majority, are left out and counted.
* ``probability``: the training faces keep their vote distribution over the emotions
  (``Record.meta["soft"]``) as soft targets; the label is the most-voted emotion (for stratified
  subsets and class weights). Validation and test faces are always majority-labelled, so every mode
  is scored on the same faces.

Contempt is a label like any other here; a model leaves it out with ``--classes``, as for CK+.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from emotion_keras.data.files import require_dir
from emotion_keras.data.records import Record
from emotion_keras.errors import InputError

# Column order of FERPlus's label.csv votes, as canonical labels.
VOTE_ORDER = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt",
              "unknown", "not_a_face")
EMOTIONS = VOTE_ORDER[:8]
SPLIT_FOLDERS = {"FER2013Train": "train", "FER2013Valid": "validation", "FER2013Test": "test"}
MODES = ("majority", "probability")
LICENCE = ("FER+ labels (Barsoum et al. 2016, microsoft/FERPlus): MIT; images from FER2013 "
           "(ICML 2013 challenge): research use")


def clean_votes(votes) -> np.ndarray:
    """The 10 vote counts with single votes removed (the FER+ paper's outlier rule)."""
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v <= 1] = 0.0
    return v


def majority_label(votes) -> tuple[str | None, str]:
    """``(label, "")`` for a clear emotion majority, else ``(None, reason)``.

    The reason is one of ``unknown``, ``not a face`` or ``no clear majority``.
    """
    v = clean_votes(votes)
    total = v.sum()
    if total <= 0:
        return None, "no clear majority"
    top = int(np.argmax(v))
    if v[top] * 2 <= total:
        return None, "no clear majority"
    if top == 8:
        return None, "unknown"
    if top == 9:
        return None, "not a face"
    return VOTE_ORDER[top], ""


def vote_distribution(votes) -> tuple[dict[str, float] | None, str]:
    """The emotions' share of the cleaned votes, or ``(None, reason)`` when *unknown* or *not a
    face* got the most votes or no emotion has more than one vote."""
    v = clean_votes(votes)
    top = int(np.argmax(v)) if v.sum() > 0 else -1
    if top == 8:
        return None, "unknown"
    if top == 9:
        return None, "not a face"
    emo = v[:8]
    if emo.sum() <= 0:
        return None, "no clear majority"
    return {lab: float(c / emo.sum()) for lab, c in zip(EMOTIONS, emo) if c > 0}, ""


def read_ferplus_split(folder: str | Path, split: str, mode: str = "majority"
                       ) -> tuple[list[Record], Counter]:
    """One FER+ folder -> (records, faces left out by reason).

    A malformed ``label.csv`` row or an image the row names that is missing is an
    :class:`InputError` naming ``label.csv`` and the line.
    """
    if mode not in MODES:
        raise ValueError(f"FER+ label mode must be one of {MODES}, not {mode!r}")
    folder = require_dir(folder)
    labels_csv = folder / "label.csv"
    if not labels_csv.is_file():
        raise InputError(folder, "no label.csv (FERPlus layout: <folder>/label.csv beside the PNGs)")
    soft = mode == "probability" and split == "train"
    records: list[Record] = []
    left_out: Counter = Counter()
    with open(labels_csv, newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != 12:
                raise InputError(labels_csv, f"line {line}: expected 12 fields (image, face box, 10 votes), "
                                             f"found {len(row)}")
            try:
                votes = [int(c) for c in row[2:]]
            except ValueError:
                raise InputError(labels_csv, f"line {line}: vote counts are not integers: {row[2:]}") from None
            if min(votes) < 0:
                raise InputError(labels_csv, f"line {line}: negative vote count")
            image = folder / row[0].strip()
            if not image.is_file():
                raise InputError(labels_csv, f"line {line}: image {row[0].strip()!r} not found in {folder}")
            if soft:
                dist, reason = vote_distribution(votes)
                label = max(dist, key=dist.get) if dist else None
                meta = {"cropped": True, "soft": dist}
            else:
                label, reason = majority_label(votes)
                meta = {"cropped": True}
            if label is None:
                left_out[reason] += 1
                continue
            records.append(Record(label=label, path=image, split=split, dataset="ferplus", meta=meta))
    return records, left_out


def read_ferplus(root: str | Path, mode: str = "majority") -> list[Record]:
    """FER+ under ``root`` (``FER2013Train``/``Valid``/``Test``), or one of those folders alone.

    Prints how many faces each folder leaves out and why, so a protocol can state it.
    """
    import sys

    root = require_dir(root)
    folders = {name: split for name, split in SPLIT_FOLDERS.items() if (root / name).is_dir()}
    if not folders:
        if (root / "label.csv").is_file():  # one folder given directly
            split = SPLIT_FOLDERS.get(root.name, "train")
            folders, root = {root.name: split}, root.parent
        else:
            raise InputError(root, "not a FER+ folder: expected FER2013Train/, FER2013Valid/ "
                                   "[, FER2013Test/] each with label.csv")
    records: list[Record] = []
    for name, split in folders.items():
        recs, left = read_ferplus_split(root / name, split, mode)
        if left:
            print(f"note: FER+ {name}: {len(recs):,} faces kept, {sum(left.values()):,} left out ("
                  + ", ".join(f"{n:,} {why}" for why, n in sorted(left.items())) + ")", file=sys.stderr)
        records += recs
    return records


def read_ferplus_probability(root: str | Path) -> list[Record]:
    """FER+ with vote distributions as the training targets (``ferplus-probability:DIR``)."""
    return read_ferplus(root, mode="probability")


def training_targets(records: list[Record], faces, classes: list[str]) -> np.ndarray:
    """The targets to train ``faces`` (a ``FaceArrays`` prepared from ``records``) on: the FER+ vote
    distributions where the corpus has them (2-D), else class indices (1-D). ``face train`` and
    ``tune face`` both take their targets here, so the two cannot drift apart."""
    soft = soft_targets(records, faces.names, classes)
    return soft if soft is not None else faces.targets(classes)


def soft_targets(records: list[Record], names: list[str], classes: list[str]) -> np.ndarray | None:
    """``(N, len(classes))`` target distributions for the faces ``names`` (``FaceArrays.names``), or
    None when no record carries votes. Votes for classes the model lacks are dropped and the rest
    renormalised; a record without votes gets its label one-hot."""
    if not any(r.meta.get("soft") for r in records):
        return None
    by_name = {r.name: r for r in records}
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(names), len(classes)), np.float32)
    for row, name in enumerate(names):
        rec = by_name[name.split("#", 1)[0]]
        dist = rec.meta.get("soft") or {rec.label: 1.0}
        for lab, p in dist.items():
            if lab in index:
                out[row, index[lab]] = p
        total = out[row].sum()
        if total <= 0:
            out[row, index[rec.label]] = 1.0
        else:
            out[row] /= total
    return out


def match_faces(images: np.ndarray, reference: np.ndarray, tolerance: float = 2.0,
                chunk: int = 2048) -> np.ndarray:
    """For each face of ``images``, the index of the same face in ``reference`` (-1 if none): both
    ``(N, 48, 48[, 1])`` grey faces. FER+ relabels FER2013's faces, but a copy of FER2013 in folders
    of JPEGs (Kaggle's layout) no longer says which CSV row a face was, so the two are joined by their
    pixels: the RMS difference of 4x4 block means, in grey levels. Measured on the copies here, a
    FER+ face and its FER2013 JPEG differ by at most 0.4; other faces by about 5 or more, except
    FER2013's own duplicates (then the nearest wins)."""

    def blocks(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).reshape(len(x), 48, 48)
        return x.reshape(len(x), 12, 4, 12, 4).mean((2, 4)).reshape(len(x), -1)

    q, ref = blocks(images), blocks(reference)
    ref_sq = (ref ** 2).sum(1)
    out = np.full(len(q), -1, np.int64)
    for lo in range(0, len(q), chunk):
        part = q[lo:lo + chunk]
        d2 = (part ** 2).sum(1)[:, None] + ref_sq[None] - 2.0 * part @ ref.T
        best = d2.argmin(1)
        rms = np.sqrt(np.maximum(d2[np.arange(len(part)), best], 0) / q.shape[1])
        out[lo:lo + chunk] = np.where(rms <= tolerance, best, -1)
    return out
