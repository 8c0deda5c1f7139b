"""Records (one labelled sample of a corpus) and splits grouped by subject or speaker.

A reader yields records; everything downstream (preprocessing, caching, training) works on lists of
them, whatever the modality. Splits never put one subject on both sides: random clip splits overstate
accuracy because a model learns the person, not the emotion.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass
class Record:
    """One labelled sample. ``path`` or ``array`` holds the data (FER2013's CSV gives arrays)."""

    label: str
    path: Path | None = None
    array: np.ndarray | None = dataclasses.field(default=None, repr=False)
    subject: str | None = None
    split: str | None = None
    dataset: str = ""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """A stable identifier for reports (file path, or dataset and row)."""
        if self.path is not None:
            return str(self.path)
        return f"{self.dataset}#{self.meta.get('row', '?')}"


def fingerprint(records: Sequence[Record]) -> str:
    """A short digest of which samples (and labels) a list holds: part of every cache key."""
    h = hashlib.sha256()
    for r in records:
        if r.path is not None:
            p = Path(r.path)
            try:
                st = p.stat()
                h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}".encode())
            except OSError:
                h.update(str(p).encode())
        elif r.array is not None:
            h.update(np.ascontiguousarray(r.array).tobytes())
        h.update(f"|{r.label}|{r.subject}|{r.split}\n".encode())
    return h.hexdigest()[:16]


def by_split(records: Sequence[Record], split: str) -> list[Record]:
    """Records whose corpus-declared split is ``split`` (e.g. FER2013's ``validation``)."""
    return [r for r in records if r.split == split]


def _groups(records: Sequence[Record]) -> np.ndarray:
    missing = [r.name for r in records if r.subject is None]
    if missing:
        raise ValueError(f"{len(missing)} records have no subject id (e.g. {missing[0]}); "
                         "a subject-grouped split needs one for every record")
    return np.asarray([str(r.subject) for r in records])


def group_split(records: Sequence[Record], test_size: float = 0.2, seed: int = 0,
                ) -> tuple[list[Record], list[Record]]:
    """Split by subject so that no subject is on both sides; about ``test_size`` of subjects held out."""
    groups = _groups(records)
    subjects = np.unique(groups)
    if len(subjects) < 2:
        raise ValueError("a subject-grouped split needs at least two subjects")
    rng = np.random.default_rng(seed)
    rng.shuffle(subjects)
    n_test = max(1, int(round(len(subjects) * test_size)))
    held = set(subjects[:n_test])
    train = [r for r, g in zip(records, groups) if g not in held]
    test = [r for r, g in zip(records, groups) if g in held]
    return train, test


def group_kfold(records: Sequence[Record], k: int = 5, seed: int | None = None,
                ) -> list[tuple[list[Record], list[Record]]]:
    """k folds over subjects, each subject held out exactly once.

    With ``seed=None`` subjects are taken in sorted order (actors 1-4, 5-8, ... for RAVDESS with k=5),
    the usual published protocol; a seed shuffles them.
    """
    groups = _groups(records)
    subjects = sorted(np.unique(groups), key=lambda s: (len(s), s))
    if seed is not None:
        np.random.default_rng(seed).shuffle(subjects)
    if k < 2 or k > len(subjects):
        raise ValueError(f"k={k} folds need between 2 and {len(subjects)} subjects")
    folds = np.array_split(np.asarray(subjects, dtype=object), k)
    out = []
    for fold in folds:
        held = set(fold.tolist())
        out.append(([r for r, g in zip(records, groups) if g not in held],
                    [r for r, g in zip(records, groups) if g in held]))
    return out


def subjects_of(records: Sequence[Record]) -> list[str]:
    """Sorted distinct subject ids (for writing the protocol next to a number)."""
    return sorted({str(r.subject) for r in records if r.subject is not None}, key=lambda s: (len(s), s))
