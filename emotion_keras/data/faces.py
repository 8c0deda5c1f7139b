"""Face corpus readers: each turns a corpus on disk into ``list[Record]`` with canonical labels.

Readers only list files and labels (no decoding, except FER2013's CSV whose pixels live in the CSV):
preprocessing and caching happen later in :mod:`emotion_keras.preprocess.faces`. Every reader sets
``dataset``, ``subject`` where the corpus names one (CK+, JAFFE), ``split`` where the corpus declares
one (FER2013, RAF-DB), and ``meta["cropped"] = True`` for corpora whose images are already face crops,
so preprocessing does not run a detector on them.

``read_faces("kind:/path")`` dispatches on a spec, or guesses the kind from the path.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emotion_keras.data.files import (IMAGE_EXTENSIONS, has_extension, list_files, require_dir, require_file,
                                      split_spec)
from emotion_keras.data.ferplus import LICENCE as FERPLUS_LICENCE
from emotion_keras.data.ferplus import SPLIT_FOLDERS as FERPLUS_FOLDERS
from emotion_keras.data.ferplus import read_ferplus, read_ferplus_probability
from emotion_keras.data.records import Record
from emotion_keras.errors import InputError
from emotion_keras.labels import (FER2013_CODES, JAFFE_CODES, RAFDB_CODES, LabelError, canonical,
                                  map_labels)


# Folder names that mean a corpus-declared split rather than a label.
SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation", "publictest": "validation",
    "test": "test", "testing": "test", "privatetest": "test",
}
FER_USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}

LICENCES = {
    "fer2013": "FER2013 (ICML 2013 challenge, Goodfellow et al.): research use",
    "ckplus": "CK+ (Lucey et al. 2010): research use only, by agreement with the authors",
    "rafdb": "RAF-DB (Li et al. 2017): research use only, by agreement with the authors",
    "jaffe": "JAFFE (Lyons et al. 1998): research use only, by agreement with the authors",
    "ferplus": FERPLUS_LICENCE,
}


def _is_image(p: Path) -> bool:
    return has_extension(p, IMAGE_EXTENSIONS)


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _label_folders(root: Path, source: str, split: str | None, dataset: str, cropped: bool,
                   subject_of=None) -> list[Record]:
    """``root/<label>/*image*`` -> records; all unmappable folder names reported together."""
    folders = [d for d in _subdirs(root) if any(_is_image(f) for f in d.iterdir())]
    names = map_labels([d.name for d in folders], source=f"{source} (label folders)")
    records = []
    for folder, label in zip(folders, names):
        for f in sorted(folder.iterdir()):
            if _is_image(f):
                records.append(Record(label=label, path=f, subject=subject_of(f) if subject_of else None,
                                      split=split, dataset=dataset, meta={"cropped": cropped} if cropped else {}))
    return records


def read_folder(root: str | Path, dataset: str | None = None, cropped: bool = False) -> list[Record]:
    """Any ``<root>/<label>/*`` image folder, or ``<root>/<split>/<label>/*`` (train/validation/test).

    Folder names map through the label aliases (``happiness`` -> ``happy``); a folder that is no
    emotion is a :class:`LabelError` naming it rather than a silently dropped class.
    """
    root = require_dir(root)
    dataset = dataset or root.name
    subs = _subdirs(root)
    split_dirs = [d for d in subs if d.name.lower() in SPLIT_FOLDERS]
    records: list[Record] = []
    if split_dirs and len(split_dirs) == len(subs):
        for d in split_dirs:
            records += _label_folders(d, str(d), SPLIT_FOLDERS[d.name.lower()], dataset, cropped)
    else:
        records = _label_folders(root, str(root), None, dataset, cropped)
    if not records:
        raise InputError(root, "no images found (expected <root>/<label>/*.jpg or "
                               "<root>/<split>/<label>/*.jpg)")
    return records


# ---------------------------------------------------------------- FER2013

def read_fer2013(path: str | Path) -> list[Record]:
    """FER2013 as the Kaggle CSV (``emotion,pixels,Usage``) or as ``{train,validation}/<label>/*.jpg``.

    The CSV's 48x48 pixels go into ``Record.array`` (uint8); ``Usage`` becomes the split (Training ->
    train, PublicTest -> validation, PrivateTest -> test). FER2013 names no subjects.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return _read_fer2013_csv(path)
    if path.is_dir() and (path / "fer2013.csv").is_file():
        return _read_fer2013_csv(path / "fer2013.csv")
    return read_folder(path, dataset="fer2013", cropped=True)


def _read_fer2013_csv(path: Path) -> list[Record]:
    records, bad_usage = [], set()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        if not {"emotion", "pixels"} <= fields:
            raise InputError(path, f"not a FER2013 CSV: expected columns emotion,pixels[,Usage], "
                                   f"found {sorted(fields)}")
        rows = list(reader)
    labels = map_labels([r["emotion"].strip() for r in rows], FER2013_CODES, source=str(path))
    for i, (row, label) in enumerate(zip(rows, labels)):
        try:
            pixels = np.array(row["pixels"].split(), dtype=np.int32)
        except ValueError:
            raise InputError(path, f"row {i + 2}: pixels are not integers") from None
        if pixels.size != 48 * 48 or pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
            raise InputError(path, f"row {i + 2}: expected 2304 pixel values 0-255, got {pixels.size}")
        usage = (row.get("Usage") or "").strip()
        split = FER_USAGE.get(usage)
        if usage and split is None:
            bad_usage.add(usage)
        records.append(Record(label=label, array=pixels.astype(np.uint8).reshape(48, 48), split=split,
                              dataset="fer2013", meta={"cropped": True, "row": i}))
    if bad_usage:
        raise InputError(path, f"unknown Usage values {sorted(bad_usage)}; "
                               "expected Training, PublicTest or PrivateTest")
    if not records:
        raise InputError(path, "the CSV has no rows")
    return records


# ---------------------------------------------------------------- CK+

_CK_SUBJECT = re.compile(r"^(S\d+)_", re.IGNORECASE)


def read_ckplus(root: str | Path) -> list[Record]:
    """CK+48: ``<root>/<label>/S###_###_########.png``, subject from the ``S###`` prefix.

    The labels include ``contempt`` (an optional class) and no ``neutral``.
    """
    root = require_dir(root)

    def subject(f: Path) -> str:
        m = _CK_SUBJECT.match(f.name)
        if not m:
            raise InputError(f, "CK+ file name does not start with a subject id S###_")
        return m.group(1).upper()

    records = _label_folders(root, str(root), None, "ckplus", True, subject_of=subject)
    if not records:
        raise InputError(root, "no CK+ images found (expected <root>/<label>/S###_*.png)")
    return records


# ---------------------------------------------------------------- RAF-DB

def read_rafdb(root: str | Path, aligned: bool | None = None) -> list[Record]:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``) and ``Image/``.

    ``aligned=None`` uses ``Image/aligned`` (100x100 crops, ``*_aligned.jpg``) when present, else
    ``Image/original`` (whole photos, which go through face detection). Split from the name prefix.
    """
    root = require_dir(root)
    label_file = None
    for cand in ("EmoLabel/list_patition_label.txt", "list_patition_label.txt",
                 "basic/EmoLabel/list_patition_label.txt"):
        if (root / cand).is_file():
            label_file = root / cand
            break
    if label_file is None:
        raise InputError(root, "no RAF-DB label list (EmoLabel/list_patition_label.txt) found")
    base = label_file.parent.parent if label_file.parent.name == "EmoLabel" else label_file.parent
    image_dir = None
    for cand in ("Image", "basic/Image", "."):
        if (base / cand).is_dir() and ((base / cand / "aligned").is_dir() or (base / cand / "original").is_dir()):
            image_dir = base / cand
            break
    if image_dir is None:
        raise InputError(base, "no RAF-DB Image/aligned or Image/original folder found")
    if aligned is None:
        aligned = (image_dir / "aligned").is_dir()
    folder = image_dir / ("aligned" if aligned else "original")
    if not folder.is_dir():
        raise InputError(folder, "no such folder")

    names, codes = [], []
    for n, line in enumerate(label_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise InputError(label_file, f"line {n}: expected '<image> <code>', got {line!r}")
        names.append(parts[0])
        codes.append(parts[1])
    labels = map_labels(codes, RAFDB_CODES, source=str(label_file))
    records, missing = [], []
    for name, label in zip(names, labels):
        stem, ext = name.rsplit(".", 1) if "." in name else (name, "jpg")
        path = folder / (f"{stem}_aligned.{ext}" if aligned else name)
        if not path.is_file():
            missing.append(path.name)
            continue
        split = "train" if stem.startswith("train") else "test" if stem.startswith("test") else None
        records.append(Record(label=label, path=path, split=split, dataset="rafdb",
                              meta={"cropped": True} if aligned else {}))
    if missing:
        raise InputError(folder, f"{len(missing)} images named in {label_file.name} are missing "
                                 f"(e.g. {', '.join(missing[:3])})")
    if not records:
        raise InputError(label_file, "the label list is empty")
    return records


# ---------------------------------------------------------------- JAFFE

_JAFFE_NAME = re.compile(r"^([A-Z]{2})\.([A-Z]{2})\d*\.\d+\.(tiff?|png|jpe?g)$", re.IGNORECASE)


def read_jaffe(root: str | Path) -> list[Record]:
    """JAFFE: ``KA.AN1.39.tiff`` = subject KA, emotion code AN (angry), take 1, image 39.

    Images are 256x256 grey portraits with background, so they go through face detection.
    """
    root = require_dir(root)
    files = [f for f in list_files(root, IMAGE_EXTENSIONS) if _JAFFE_NAME.match(f.name)]
    if not files:
        raise InputError(root, "no JAFFE images found (expected names like KA.AN1.39.tiff)")
    matches = [_JAFFE_NAME.match(f.name) for f in files]
    labels = map_labels([m.group(2).upper() for m in matches], JAFFE_CODES, source=str(root))
    return [Record(label=label, path=f, subject=m.group(1).upper(), dataset="jaffe")
            for f, m, label in zip(files, matches, labels)]


# ---------------------------------------------------------------- CSV manifest

IMAGE_COLUMNS = ("image", "path", "file", "filename")
LABEL_COLUMNS = ("label", "emotion")


def read_csv(path: str | Path, dataset: str | None = None, cropped: bool = False) -> list[Record]:
    """Any CSV manifest with an image column and a label column; optional ``subject`` and ``split``.

    Relative image paths resolve from the CSV's folder, then from its ``images/`` subfolder (the
    layout of ``wild_faces/labels.csv``). All missing files are reported together.
    """
    path = require_file(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = {(c or "").strip().lower(): c for c in (reader.fieldnames or ())}
        rows = list(reader)
    img_col = next((fields[c] for c in IMAGE_COLUMNS if c in fields), None)
    lab_col = next((fields[c] for c in LABEL_COLUMNS if c in fields), None)
    if img_col is None or lab_col is None:
        raise InputError(path, f"expected columns image,label (or image,emotion); found "
                               f"{sorted(fields)}")
    rows = [r for r in rows if (r.get(img_col) or "").strip()]
    labels = map_labels([r[lab_col] for r in rows], source=str(path))
    subj_col, split_col = fields.get("subject"), fields.get("split")
    records, missing = [], []
    for row, label in zip(rows, labels):
        rel = Path(row[img_col].strip())
        cands = [rel] if rel.is_absolute() else [path.parent / rel, path.parent / "images" / rel]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            missing.append(str(rel))
            continue
        split = (row.get(split_col) or "").strip().lower() if split_col else ""
        records.append(Record(
            label=label, path=found, subject=(row.get(subj_col) or "").strip() or None if subj_col else None,
            split=SPLIT_FOLDERS.get(split, split or None), dataset=dataset or path.parent.name,
            meta={"cropped": True} if cropped else {}))
    if missing:
        raise InputError(path, f"{len(missing)} listed images are missing (e.g. {', '.join(missing[:3])})")
    if not records:
        raise InputError(path, "the manifest lists no images")
    return records


# ---------------------------------------------------------------- dispatch

READERS = {
    "fer2013": read_fer2013, "fer": read_fer2013,
    "ferplus": read_ferplus, "fer+": read_ferplus,
    "ferplus-probability": read_ferplus_probability, "ferplus-prob": read_ferplus_probability,
    "ckplus": read_ckplus, "ck+": read_ckplus, "ckplus48": read_ckplus,
    "rafdb": read_rafdb, "raf-db": read_rafdb,
    "jaffe": read_jaffe,
    "folder": read_folder,
    "csv": read_csv,
}


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """``"kind:/path"`` -> (kind, path); a bare path gets its kind guessed by :func:`detect_kind`."""
    kind, path = split_spec(spec, READERS)
    return kind or detect_kind(path), path


def detect_kind(path: Path) -> str:
    """Guess a corpus kind from its layout (see :data:`READERS`)."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputError(path, "a data spec must be a folder or a CSV file")
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = f.readline().lower()
        return "fer2013" if "pixels" in header else "csv"
    if (path / "fer2013.csv").is_file():
        return "fer2013"
    if any((path / name / "label.csv").is_file() for name in FERPLUS_FOLDERS) or (
            path.name in FERPLUS_FOLDERS and (path / "label.csv").is_file()):
        return "ferplus"
    if any((path / c).is_file() for c in ("EmoLabel/list_patition_label.txt", "list_patition_label.txt",
                                          "basic/EmoLabel/list_patition_label.txt")):
        return "rafdb"
    subs = _subdirs(path)
    if not subs:
        if (path / "labels.csv").is_file():
            return "csv"
        if any(_JAFFE_NAME.match(f.name) for f in path.iterdir() if f.is_file()):
            return "jaffe"
        if any(f.suffix.lower() == ".csv" for f in path.iterdir()):
            return "csv"
        raise InputError(path, "cannot tell the corpus layout; use a spec like folder:/path or csv:/path")
    names_ok = all(_is_label_name(d.name) or d.name.lower() in SPLIT_FOLDERS for d in subs)
    csvs = [f for f in path.iterdir() if f.is_file() and f.suffix.lower() == ".csv"]
    if not names_ok and ((path / "labels.csv").is_file() or len(csvs) == 1):
        return "csv"
    inner = [sub for d in subs for sub in ([d] + _subdirs(d)[:1])]
    sample = [f for d in inner for f in _first(d.iterdir(), 3) if f.is_file()]
    if path.name.lower().startswith("fer") or any(
            f.name.startswith(("Training_", "PublicTest_", "PrivateTest_")) for f in sample):
        return "fer2013"
    if sample and all(_CK_SUBJECT.match(f.name) for f in sample):
        return "ckplus"
    return "folder"


def _is_label_name(name: str) -> bool:
    try:
        canonical(name)
        return True
    except LabelError:
        return False


def _first(it: Iterable, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


def read_faces(spec: str | Path) -> list[Record]:
    """Read a face corpus from a spec like ``fer2013:/data/fer2013`` or a bare path (kind guessed).

    A folder holding ``labels.csv`` reads as a CSV manifest (``wild_faces``).
    """
    kind, path = parse_spec(spec)
    if kind == "csv" and path.is_dir():
        csvs = sorted(path.glob("*.csv"))
        path = path / "labels.csv" if (path / "labels.csv").is_file() else csvs[0] if len(csvs) == 1 \
            else path / "labels.csv"
    return READERS[kind](path)


def corpus_licence(records: list[Record]) -> str:
    """The licence line for a model card's ``data`` field."""
    names = sorted({r.dataset for r in records})
    return "; ".join(LICENCES.get(n, f"{n}: see the corpus's own licence") for n in names)
