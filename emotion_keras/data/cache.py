"""Content-keyed array caches, written atomically so a killed run never leaves a half file.

The key is a digest of the source (records fingerprint) and the preprocessing config, so changing
either recomputes, and rerunning with the same inputs is free.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DIR = Path(os.environ.get("EMOTION_KERAS_CACHE", Path.home() / ".cache" / "emotion_keras"))


def cache_key(*parts: Any) -> str:
    """A digest of JSON-serialisable parts (configs, fingerprints, version tags)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def publish(tmp: str | Path, path: Path) -> None:
    """Rename a finished temporary file over ``path`` with the mode a plain ``open()`` would give it
    (``mkstemp`` makes files only their owner can read, which would hide models from other users)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through ``write(fileobj)`` into a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Save named arrays as a compressed ``.npz`` atomically (no pickled objects inside)."""
    return atomic_write(Path(path), lambda f: np.savez_compressed(f, **arrays))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def cached(name: str, key: str, compute: Callable[[], dict[str, np.ndarray]],
           cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Return the arrays stored under ``name-key``, computing and saving them on a miss."""
    path = Path(cache_dir or DEFAULT_DIR) / f"{name}-{key}.npz"
    if path.exists():
        try:
            return load_arrays(path)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a damaged cache is recomputed, never trusted
    arrays = compute()
    save_arrays(path, arrays)
    return arrays
