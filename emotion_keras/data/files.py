"""Path checks and file listing shared by the corpus readers (faces, speech, video).

A reader names the corpus path in its error (:class:`~emotion_keras.errors.InputError`) before it
looks inside, and lists media files the same way whatever the modality: by extension, skipping
hidden files (``.DS_Store``, ``._x.wav`` resource forks), in sorted order so records are stable.
"""

from __future__ import annotations

from collections.abc import Collection, Container
from pathlib import Path

from emotion_keras.errors import InputError

# The media each modality reads; ``predict`` dispatches on the same lists.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aiff", ".aif")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".flv", ".m4v", ".mpg", ".mpeg", ".wmv",
                    ".3gp", ".ts")


def require_dir(root: str | Path) -> Path:
    """``root`` as a Path (``~`` expanded), or an InputError saying it is missing or not a folder."""
    root = Path(root).expanduser()
    if not root.exists():
        raise InputError(root, "no such folder")
    if not root.is_dir():
        raise InputError(root, "expected a folder")
    return root


def require_file(path: str | Path, problem: str = "no such file") -> Path:
    """``path`` as a Path (``~`` expanded), or an InputError with ``problem`` when it is no file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, problem)
    return path


def has_extension(p: Path, extensions: Collection[str]) -> bool:
    """A visible file whose (lower-cased) suffix is one of ``extensions`` (with the dot)."""
    return p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")


def list_files(root: Path, extensions: Collection[str]) -> list[Path]:
    """Every file under ``root`` (recursively) with one of ``extensions``, sorted."""
    return sorted(p for p in root.rglob("*") if has_extension(p, extensions))


def split_spec(spec: str | Path, kinds: Container[str]) -> tuple[str | None, Path]:
    """``"kind:/path"`` -> ``(kind, path)`` when ``kind`` (any case) is one of ``kinds``; otherwise
    ``(None, path)`` for the whole spec, whose kind the reader then guesses. ``~`` is expanded."""
    text = str(spec)
    kind, sep, rest = text.partition(":")
    if sep and len(kind) > 1 and kind.lower() in kinds:  # len>1: not a Windows drive letter
        return kind.lower(), Path(rest).expanduser()
    return None, Path(text).expanduser()
