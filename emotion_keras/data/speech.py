"""Speech corpus readers: each turns a corpus on disk into ``list[Record]`` with canonical labels.

Readers only list files, labels and speakers (no decoding): features are computed and cached later by
:mod:`emotion_keras.preprocess.audio`. Every record carries its speaker as ``subject``, because speech
emotion results are only honest when no speaker is on both sides of a split.

``read_speech("kind:/path")`` dispatches on a spec, or guesses the kind from file names. Kinds:
``ravdess`` (``03-01-05-01-02-01-12.wav``), ``cremad`` (``1001_DFA_ANG_XX.wav``), ``tess``
(``OAF_back_angry.wav``), ``savee`` (``DC_a01.wav`` or ``DC/a01.wav``), ``emodb`` (``03a01Fa.wav``),
``folder`` (``<root>/<label>/*``) and ``csv`` (a manifest).

The optional classes ``calm`` (RAVDESS) and ``boredom`` (EmoDB) are kept by default, so RAVDESS reads
as its 8 classes; ``include_calm=False`` / ``include_boredom=False`` or :func:`select_classes` drop them.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from emotion_keras.data.files import (AUDIO_EXTENSIONS, has_extension, list_files, require_dir, require_file,
                                      split_spec)
from emotion_keras.data.records import Record
from emotion_keras.errors import InputError
from emotion_keras.labels import (CREMAD_CODES, EMODB_CODES, RAVDESS_CODES, SAVEE_CODES, LabelError,
                                  canonical, map_labels)


LICENCES = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018): CC BY-NC-SA 4.0",
    "cremad": "CREMA-D (Cao et al. 2014): Open Database License 1.0 / Database Contents License 1.0",
    "tess": "TESS (Dupuis & Pichora-Fuller 2010): CC BY-NC-ND 4.0",
    "savee": "SAVEE (Haq & Jackson 2009): research use, free for non-commercial use",
    "emodb": "EmoDB (Burkhardt et al. 2005): research use",
}

# ---------------------------------------------------------------- file-name patterns

# RAVDESS: modality-channel-emotion-intensity-statement-repetition-actor.
_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
# CREMA-D: actor_sentence_emotion_level.
_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$", re.IGNORECASE)
# TESS: speaker_word_emotion (the word may itself hold underscores in a few copies).
_TESS = re.compile(r"^(OAF|YAF)_(.+)_([A-Za-z]+)$", re.IGNORECASE)
# SAVEE: [speaker_]code+sentence, e.g. DC_a01, JE_sa15 or a01 inside a DC/ folder.
_SAVEE = re.compile(r"^(?:([A-Z]{2})_)?(a|d|f|h|n|sa|su)(\d\d)$")
# EmoDB: speaker(2) text(a01..b10) emotion letter version letter.
_EMODB = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_TESS_EMOTIONS = {"angry", "disgust", "fear", "happy", "neutral", "ps", "sad", "surprise",
                  "pleasant_surprise", "pleasant_surprised", "surprised"}


def is_audio(p: Path) -> bool:
    return has_extension(p, AUDIO_EXTENSIONS)


def _audio_files(root: Path) -> list[Path]:
    return list_files(root, AUDIO_EXTENSIONS)


def parse_name(path: Path) -> tuple[str, str, str, dict] | None:
    """``(kind, raw_label, speaker, meta)`` when a file name follows a known corpus pattern, else None.

    Used by the corpus readers and to recover speakers in folder layouts and CSV manifests.
    """
    stem = path.stem
    if m := _RAVDESS.match(stem):
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        if emotion in RAVDESS_CODES:
            return "ravdess", RAVDESS_CODES[emotion], actor, {
                "modality": modality, "channel": "speech" if channel == "01" else "song",
                "intensity": "normal" if intensity == "01" else "strong", "statement": statement,
                "repetition": repetition, "gender": "male" if int(actor) % 2 else "female"}
    if m := _CREMAD.match(stem):
        actor, sentence, emotion, level = m.groups()
        if emotion.upper() in CREMAD_CODES:
            return "cremad", CREMAD_CODES[emotion.upper()], actor, {"sentence": sentence.upper(),
                                                                     "level": level.upper()}
    if m := _TESS.match(stem):
        speaker, word, emotion = m.groups()
        if emotion.lower() in _TESS_EMOTIONS:
            return "tess", emotion.lower(), speaker.upper(), {"word": word}
    if m := _SAVEE.match(stem):
        speaker, code, sentence = m.groups()
        speaker = speaker or (path.parent.name if path.parent.name in _SAVEE_SPEAKERS else None)
        if speaker:
            return "savee", SAVEE_CODES[code], speaker, {"sentence": sentence}
    if m := _EMODB.match(stem):
        speaker, text, emotion, version = m.groups()
        return "emodb", EMODB_CODES[emotion], speaker, {"text": text, "version": version}
    return None


def _read_pattern(root: str | Path, kind: str, describe: str) -> list[Record]:
    """Every audio file under ``root`` whose name follows ``kind``'s pattern."""
    root = require_dir(root)
    records, other = [], 0
    for f in _audio_files(root):
        parsed = parse_name(f)
        if parsed is None or parsed[0] != kind:
            other += 1
            continue
        _, label, speaker, meta = parsed
        records.append(Record(label=canonical(label), path=f, subject=speaker, dataset=kind, meta=meta))
    if not records:
        raise InputError(root, f"no {kind} audio files found (expected names like {describe})")
    if other:
        warnings.warn(f"{root}: skipped {other} audio files whose names are not {kind} names "
                      f"(like {describe})", stacklevel=3)
    return records


# ---------------------------------------------------------------- corpora

def read_ravdess(root: str | Path, channel: str = "both", include_calm: bool = True) -> list[Record]:
    """RAVDESS audio (``Actor_XX/03-01-EE-II-SS-RR-AA.wav``): 8 classes, actor from the last field.

    ``channel`` is ``speech``, ``song`` or ``both``; ``meta`` keeps intensity, statement, repetition and
    gender. Audio-visual (01) and video-only (02) files are read too when they have an audio track.
    """
    if channel not in ("speech", "song", "both"):
        raise ValueError(f"channel must be speech, song or both, not {channel!r}")
    records = _read_pattern(root, "ravdess", "03-01-05-01-02-01-12.wav")
    if channel != "both":
        records = [r for r in records if r.meta["channel"] == channel]
    if not include_calm:
        records = [r for r in records if r.label != "calm"]
    if not records:
        raise InputError(root, f"no RAVDESS {channel} files left after filtering")
    return records


def read_cremad(root: str | Path) -> list[Record]:
    """CREMA-D (``1001_DFA_ANG_XX.wav``): 6 classes, actor 1001-1091 from the first field."""
    return _read_pattern(root, "cremad", "1001_DFA_ANG_XX.wav")


def read_tess(root: str | Path) -> list[Record]:
    """TESS (``OAF_back_angry.wav``): 7 classes (``ps`` = pleasant surprise), speakers OAF and YAF.

    With only two speakers, a speaker-independent split is train on one, test on the other.
    """
    return _read_pattern(root, "tess", "OAF_back_angry.wav")


def read_savee(root: str | Path) -> list[Record]:
    """SAVEE (``DC_a01.wav``, or ``DC/a01.wav``): 7 classes, speakers DC JE JK KL."""
    return _read_pattern(root, "savee", "DC_a01.wav")


def read_emodb(root: str | Path, include_boredom: bool = True) -> list[Record]:
    """EmoDB (``03a01Fa.wav``): speaker 03, text a01, emotion letter W L E A F T N, version a.

    ``L`` (Langeweile) is ``boredom``, an optional class kept unless ``include_boredom=False``.
    """
    records = _read_pattern(root, "emodb", "03a01Fa.wav")
    if not include_boredom:
        records = [r for r in records if r.label != "boredom"]
    return records


def read_folder(root: str | Path, dataset: str | None = None) -> list[Record]:
    """Any ``<root>/<label>/*`` audio folder (nested folders under a label are read too).

    Folder names map through the label aliases; a folder that is no emotion is a LabelError naming
    it. The speaker comes from the file name when it follows a known corpus pattern (else ``None``,
    and grouped splits will say so).
    """
    root = require_dir(root)
    folders = [d for d in sorted(root.iterdir())
               if d.is_dir() and not d.name.startswith((".", "_")) and any(_audio_files(d))]
    labels = map_labels([d.name for d in folders], source=f"{root} (label folders)")
    records = []
    for folder, label in zip(folders, labels):
        for f in _audio_files(folder):
            parsed = parse_name(f)
            records.append(Record(label=label, path=f, subject=parsed[2] if parsed else None,
                                  dataset=dataset or root.name,
                                  meta={"corpus": parsed[0]} if parsed else {}))
    if not records:
        raise InputError(root, "no audio found (expected <root>/<label>/*.wav)")
    return records


PATH_COLUMNS = ("path", "file", "filename", "audio", "wav", "name")
LABEL_COLUMNS = ("label", "emotion")
SPEAKER_COLUMNS = ("speaker", "subject", "actor")


def _resolve(rel: str, bases: Sequence[Path]) -> Path | None:
    """A manifest entry as an existing file: as given, or with an audio extension added."""
    p = Path(rel)
    cands = [p] if p.is_absolute() else [b / p for b in bases]
    for c in cands:
        if is_audio(c):
            return c
        if not c.suffix or c.suffix.lower() not in AUDIO_EXTENSIONS:
            for ext in AUDIO_EXTENSIONS:
                if is_audio(c.with_name(c.name + ext)):
                    return c.with_name(c.name + ext)
    return None


def read_csv(path: str | Path, audio_dir: str | Path | None = None, dataset: str | None = None,
             ) -> list[Record]:
    """A CSV manifest: a path column (path/file/filename/audio/name) and a label column (label/emotion).

    Optional ``speaker`` (or subject/actor) and ``split`` columns; without a speaker column the speaker
    is parsed from known corpus file names. Paths resolve against ``audio_dir`` (default: the CSV's
    folder, then its immediate subfolders); names without an extension get one found on disk. Rows whose
    file does not exist are skipped with one warning listing them (a manifest often covers more than
    was downloaded); labels of the files that exist must all map, or a LabelError names them.
    """
    path = require_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = {(c or "").strip().lower(): c for c in (reader.fieldnames or ())}
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(path, f"not a readable CSV file ({e})") from None
    path_col = next((fields[c] for c in PATH_COLUMNS if c in fields), None)
    label_col = next((fields[c] for c in LABEL_COLUMNS if c in fields), None)
    if path_col is None or label_col is None:
        raise InputError(path, f"expected a path column ({'/'.join(PATH_COLUMNS)}) and a label column "
                               f"(label/emotion); found {sorted(fields)}")
    speaker_col = next((fields[c] for c in SPEAKER_COLUMNS if c in fields), None)
    split_col = fields.get("split")
    base = Path(audio_dir).expanduser() if audio_dir else path.parent
    bases = [base] + sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    found, missing = [], []
    for row in rows:
        rel = (row.get(path_col) or "").strip()
        if not rel:
            continue
        f = _resolve(rel, bases)
        if f is None:
            missing.append(rel)
        else:
            found.append((row, f))
    if missing:
        warnings.warn(f"{path}: skipped {len(missing)} rows whose audio file is missing "
                      f"(e.g. {', '.join(missing[:3])})", stacklevel=2)
    labels = map_labels([row[label_col] for row, _ in found], source=str(path))
    records = []
    for (row, f), label in zip(found, labels):
        speaker = (row.get(speaker_col) or "").strip() if speaker_col else ""
        parsed = parse_name(f)
        if not speaker and parsed:
            speaker = parsed[2]
        split = (row.get(split_col) or "").strip().lower() if split_col else ""
        records.append(Record(label=label, path=f, subject=speaker or None, split=split or None,
                              dataset=dataset or (parsed[0] if parsed else path.parent.name),
                              meta={"row": row}))
    if not records:
        raise InputError(path, "the manifest lists no existing audio files")
    return records


# ---------------------------------------------------------------- dispatch

READERS: dict[str, Callable[..., list[Record]]] = {
    "ravdess": read_ravdess, "cremad": read_cremad, "crema-d": read_cremad, "crema": read_cremad,
    "tess": read_tess, "savee": read_savee, "emodb": read_emodb, "emo-db": read_emodb,
    "folder": read_folder, "csv": read_csv,
}


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """``"kind:/path"`` -> (kind, path); a bare path gets its kind guessed by :func:`detect_kind`."""
    kind, path = split_spec(spec, READERS)
    if kind:
        return kind, path
    text = str(spec)
    given, sep, _ = text.partition(":")
    if sep and len(given) > 1 and "/" not in given and not Path(text).exists():
        raise InputError(text, f"unknown corpus kind {given!r}; known: {', '.join(sorted(READERS))}")
    return detect_kind(path), path


def detect_kind(path: Path) -> str:
    """Guess the corpus from file names (the most common known pattern among the files), else folder."""
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise InputError(path, "a data spec must be a folder or a CSV manifest")
    counts: dict[str, int] = {}
    n = 0
    for f in path.rglob("*"):
        if not is_audio(f):
            continue
        n += 1
        parsed = parse_name(f)
        if parsed:
            counts[parsed[0]] = counts.get(parsed[0], 0) + 1
        if n >= 200:
            break
    if counts:
        kind, hits = max(counts.items(), key=lambda kv: kv[1])
        if hits >= 0.5 * n:
            return kind
    subs = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith((".", "_"))]
    if subs and all(_is_label(d.name) for d in subs):
        return "folder"
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1:
        return "csv"
    if n == 0:
        raise InputError(path, "no audio files found")
    raise InputError(path, "cannot tell the corpus layout; use a spec like folder:/path or csv:/path "
                           f"(kinds: {', '.join(sorted(READERS))})")


def _is_label(name: str) -> bool:
    try:
        canonical(name)
        return True
    except LabelError:
        return False


def read_speech(spec: str | Path | Iterable[str | Path], include_calm: bool = True,
                include_boredom: bool = True) -> list[Record]:
    """Read one corpus spec (``ravdess:/data/ravdess``, ``csv:/x/labels.csv``, a bare path) or several.

    With several specs the speakers are prefixed by their dataset (``ravdess:03`` vs ``emodb:03``) so
    that two corpora's speaker numbers never merge into one group.
    """
    if isinstance(spec, (str, Path)):
        specs = [s for s in str(spec).split(",") if s] if "," in str(spec) else [spec]
    else:
        specs = list(spec)
    out: list[Record] = []
    for s in specs:
        kind, path = parse_spec(s)
        if kind == "csv" and path.is_dir():
            csvs = sorted(path.glob("*.csv"))
            if len(csvs) != 1:
                raise InputError(path, "expected exactly one CSV manifest in the folder")
            path = csvs[0]
        reader = READERS[kind]
        if reader is read_ravdess:
            records = reader(path, include_calm=include_calm)
        elif reader is read_emodb:
            records = reader(path, include_boredom=include_boredom)
        else:
            records = reader(path)
            records = [r for r in records if (include_calm or r.label != "calm")
                       and (include_boredom or r.label != "boredom")]
        if len(specs) > 1:
            for r in records:
                if r.subject is not None:
                    r.subject = f"{r.dataset}:{r.subject}"
        out += records
    return out


def select_classes(records: Sequence[Record], classes: Iterable[str]) -> list[Record]:
    """Keep only records whose label is among ``classes`` (names or aliases)."""
    keep = {canonical(c) for c in classes}
    return [r for r in records if r.label in keep]


def corpus_licence(records: Sequence[Record]) -> str:
    """The licence line for a model card's ``data`` field."""
    names = sorted({r.dataset for r in records})
    return "; ".join(LICENCES.get(n, f"{n}: see the corpus's own licence") for n in names)
