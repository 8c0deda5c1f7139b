"""Audio-visual corpus readers: clips (video with its audio) -> ``list[Record]`` with canonical labels.

Like the face and speech readers these only list files, labels and subjects; decoding happens in
:mod:`emotion_keras.preprocess.video`. Kinds:

- ``ravdess``: RAVDESS video names ``01-01-EE-II-SS-RR-AA.mp4`` (audio-video) and ``02-...`` (video only);
  ``meta["audio"]`` is False for the ``02`` (silent) files;
- ``cremad``: CREMA-D ``VideoFlash/1001_DFA_ANG_XX.flv``, each paired with ``AudioWAV/<same stem>.wav``
  when that folder exists (``meta["audio_path"]``); also a flat folder of CREMA-D clips;
- ``folder``: ``<root>/<label>/*.<video>``; ``csv``: a manifest with ``file`` (or ``path``), ``label``
  (or ``emotion``) and optional ``subject``/``speaker``/``actor`` columns;
- :func:`read_ravdess_au`: the paired RAVDESS benchmark, one row per clip in ``ravdess_face_au/au.csv``
  (actor, emotion, 35 OpenFace action-unit features), with ``audio_file`` resolved in ``ravdess_speech``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emotion_keras.data.files import VIDEO_EXTENSIONS, has_extension, list_files, require_dir, require_file
from emotion_keras.data.records import Record
from emotion_keras.data.speech import LICENCES, parse_name
from emotion_keras.errors import InputError
from emotion_keras.labels import LabelError, canonical


AU_COLUMNS_PREFIX = "AU"


def is_video(p: Path) -> bool:
    return has_extension(p, VIDEO_EXTENSIONS)


def _named_clips(folder: Path, kind: str):
    """``(file, label, actor, meta)`` of every video under ``folder`` whose name follows ``kind``'s
    pattern (:func:`~emotion_keras.data.speech.parse_name`); other files are passed over."""
    for f in list_files(folder, VIDEO_EXTENSIONS):
        parsed = parse_name(f)
        if parsed and parsed[0] == kind:
            yield f, *parsed[1:]


def read_ravdess_video(root: str | Path, include_calm: bool = True, silent: bool = False) -> list[Record]:
    """RAVDESS video files (``01-...`` audio-video; ``02-...`` video-only only when ``silent``)."""
    root = require_dir(root)
    out = []
    for f, label, actor, meta in _named_clips(root, "ravdess"):
        if meta["modality"] not in ("01", "02") or (meta["modality"] == "02" and not silent):
            continue
        if label == "calm" and not include_calm:
            continue
        out.append(Record(label=canonical(label), path=f, subject=actor, dataset="ravdess",
                          meta={**meta, "audio": meta["modality"] == "01"}))
    if not out:
        raise InputError(root, "no RAVDESS video files found (expected names like 01-01-05-01-02-01-12.mp4)")
    return out


def read_cremad_video(root: str | Path) -> list[Record]:
    """CREMA-D clips: ``VideoFlash/*.flv`` (paired with ``AudioWAV/*.wav`` when present) or a flat folder."""
    root = require_dir(root)
    video_dir = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    audio_dir = root / "AudioWAV" if (root / "AudioWAV").is_dir() else None
    out = []
    for f, label, actor, meta in _named_clips(video_dir, "cremad"):
        meta = dict(meta)
        if audio_dir is not None and (audio_dir / f"{f.stem}.wav").exists():
            meta["audio_path"] = str(audio_dir / f"{f.stem}.wav")
        out.append(Record(label=canonical(label), path=f, subject=actor, dataset="cremad", meta=meta))
    if not out:
        raise InputError(root, "no CREMA-D video files found (expected VideoFlash/1001_DFA_ANG_XX.flv)")
    return out


def read_video_folder(root: str | Path, dataset: str | None = None) -> list[Record]:
    """``<root>/<label>/*.<video>``; the subject comes from a known corpus name pattern when there is one."""
    root = require_dir(root)
    out, bad = [], set()
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            label = canonical(d.name)
        except LabelError:
            bad.add(d.name)
            continue
        for f in list_files(d, VIDEO_EXTENSIONS):
            parsed = parse_name(f)
            out.append(Record(label=label, path=f, subject=parsed[2] if parsed else None,
                              dataset=dataset or root.name))
    if not out:
        raise InputError(root, "no labelled video clips found (expected <root>/<label>/*.mp4"
                               + (f"; folders that are not labels: {sorted(bad)}" if bad else ")"))
    return out


def read_video_csv(path: str | Path, video_dir: str | Path | None = None, dataset: str | None = None,
                   ) -> list[Record]:
    """A CSV manifest: ``file``/``path`` and ``label``/``emotion`` columns, optional subject column.

    Relative paths resolve against ``video_dir`` and then the CSV's own folder; missing files are
    reported together.
    """
    path = require_file(path, "CSV manifest not found")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputError(path, "CSV manifest has no rows")
    cols = {c.lower(): c for c in rows[0]}
    fcol = cols.get("file") or cols.get("path") or cols.get("video")
    lcol = cols.get("label") or cols.get("emotion")
    scol = cols.get("subject") or cols.get("speaker") or cols.get("actor")
    if not fcol or not lcol:
        raise InputError(path, f"CSV needs a file (or path) and a label (or emotion) column; has {list(rows[0])}")
    bases = [Path(video_dir)] if video_dir else []
    bases.append(path.parent)
    out, missing = [], []
    for i, row in enumerate(rows):
        rel = Path(row[fcol])
        found = rel if rel.is_absolute() and rel.exists() else next(
            (b / rel for b in bases if (b / rel).exists()), None)
        if found is None:
            missing.append(row[fcol])
            continue
        try:
            label = canonical(row[lcol])
        except LabelError as e:
            raise InputError(path, f"row {i + 2}: {e}") from None
        subject = row.get(scol) if scol else None
        if not subject and (parsed := parse_name(found)):
            subject = parsed[2]
        out.append(Record(label=label, path=found, subject=subject or None, dataset=dataset or path.stem,
                          meta={"row": i}))
    if missing:
        raise InputError(path, f"{len(missing)} files listed but not found, e.g. {missing[:3]}")
    return out


def read_video(spec: str | Path, **kwargs) -> list[Record]:
    """Dispatch ``kind:/path`` (ravdess, cremad, folder, csv) or guess from the path."""
    text = str(spec)
    kind, _, rest = text.partition(":")
    if rest and kind in ("ravdess", "cremad", "folder", "csv"):
        path = Path(rest)
    else:
        kind, path = "", Path(text)
    if not kind:
        if path.suffix.lower() == ".csv":
            kind = "csv"
        elif path.is_dir() and ((path / "VideoFlash").is_dir() or any(
                (parse_name(p) or ("",))[0] == "cremad" for p in path.glob("*") if is_video(p))):
            kind = "cremad"
        elif path.is_dir() and any((parse_name(p) or ("",))[0] == "ravdess"
                                   for p in path.rglob("*") if is_video(p)):
            kind = "ravdess"
        else:
            kind = "folder"
    reader = {"ravdess": read_ravdess_video, "cremad": read_cremad_video, "folder": read_video_folder,
              "csv": read_video_csv}[kind]
    return reader(path, **kwargs)


# ------------------------------------------------------------------- the paired RAVDESS benchmark

def read_ravdess_au(au_csv: str | Path, speech_root: str | Path | None = None,
                    actors: Iterable[int] | None = None) -> tuple[list[Record], np.ndarray, list[str]]:
    """RAVDESS clips with their face as OpenFace action units and their speech file.

    Returns ``(records, au, columns)``: one record per clip (``path`` = the speech file in
    ``speech_root/Actor_XX/``, ``subject`` = actor, 8 classes), the ``(n, 35)`` float32 AU matrix in
    record order and the AU column names. Rows whose audio file is missing raise ``InputError``.
    """
    au_csv = require_file(au_csv, "action-unit CSV not found")
    speech_root = Path(speech_root) if speech_root else au_csv.parent.parent / "ravdess_speech"
    with open(au_csv, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c for c in reader.fieldnames or [] if c.startswith(AU_COLUMNS_PREFIX)]
        rows = list(reader)
    if not columns or not rows:
        raise InputError(au_csv, "no AU columns or no rows")
    keep = {int(a) for a in actors} if actors is not None else None
    records, feats, missing = [], [], []
    for i, row in enumerate(rows):
        actor = int(row["actor"])
        if keep is not None and actor not in keep:
            continue
        audio = speech_root / f"Actor_{actor:02d}" / row["audio_file"]
        if not audio.exists():
            missing.append(str(audio))
            continue
        parsed = parse_name(audio)
        meta = dict(parsed[3]) if parsed else {}
        records.append(Record(label=canonical(row["emotion"]), path=audio, subject=str(actor),
                              dataset="ravdess", meta={**meta, "row": i}))
        feats.append([float(row[c]) for c in columns])
    if missing:
        raise InputError(au_csv, f"{len(missing)} audio files named in the CSV are missing, e.g. {missing[0]}")
    return records, np.asarray(feats, np.float32), columns


def corpus_licence(records: Iterable[Record]) -> str:
    kinds = sorted({r.dataset for r in records})
    return "; ".join(LICENCES.get(k, f"{k}: see its licence") for k in kinds)
