"""Records -> cached uint8 face arrays (+ optional geometry features), with a no-face report.

Two paths, chosen per record:

* **Pre-cropped corpora** (``meta["cropped"]``: FER2013, CK+48, RAF-DB aligned) are only decoded and
  resized; running a detector on a 48x48 crop would waste time and often miss the face. These crops
  carry no landmarks, so their geometry row is zeros and ``geometry_valid`` is False for them: a model
  that takes geometry sees the same "unknown" input at training and inference time for such images.
* **Photos** (wild faces, JAFFE, RAF-DB originals, anything a user hands us) go through
  ``load_image -> FaceDetector -> most confident face -> align_face``. Photos where no face is found are
  listed in ``FaceArrays.no_face`` (and printed), never silently dropped; unreadable files are listed in
  ``FaceArrays.failed`` with the reason.

``detect="auto"`` follows that rule, and additionally treats any image no larger than
``SMALL_SIDE`` pixels on its longer side as a crop (a detector cannot find a face filling a thumbnail);
``"always"`` / ``"never"`` force one path for every record.

Results are cached (``emotion_keras.data.cache.cached``) under a key made of the records' fingerprint,
the config and :data:`VERSION`, so a second call with the same inputs only loads an ``.npz``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import Config, ConfigError
from emotion_keras.data.cache import DEFAULT_DIR, cache_key, cached
from emotion_keras.data.records import Record, fingerprint
from emotion_keras.errors import InputError

# Bump when the preprocessing code changes in a way that changes its output (invalidates caches).
VERSION = "faces-1"
# An image whose longer side is at most this is treated as an existing face crop under detect="auto".
SMALL_SIDE = 128


@dataclasses.dataclass
class FacePrepConfig(Config):
    """How images become model inputs; stored on every face model's card so inference matches."""

    size: int = 48                # output side in pixels (48..112)
    grayscale: bool = True        # one channel (FER2013, CK+ are grey) or RGB
    margin: float = 0.1           # extra context around an aligned face, as a fraction of its size
    detect: str = "auto"          # auto | always | never (see module docstring)
    keep: str = "best"            # best: most confident face per image; all: every face is a sample
    max_side: int = 640           # photos are scaled down to this for detection (speed)
    geometry: bool = False        # also compute landmark geometry features ("geometry" input)
    min_confidence: float = 0.9   # detector faces below this are ignored

    def __post_init__(self):
        if not 48 <= int(self.size) <= 112:
            raise ConfigError(f"size must be between 48 and 112 pixels, not {self.size}")
        if self.detect not in ("auto", "always", "never"):
            raise ConfigError(f"detect must be auto, always or never, not {self.detect!r}")
        if self.keep not in ("best", "all"):
            raise ConfigError(f"keep must be best or all, not {self.keep!r}")
        if not 0 <= self.margin <= 1:
            raise ConfigError(f"margin must be between 0 and 1, not {self.margin}")
        if self.max_side < 64:
            raise ConfigError(f"max_side must be at least 64, not {self.max_side}")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)


@dataclasses.dataclass
class FaceArrays:
    """Preprocessed faces of a list of records, index-aligned (one row per kept face)."""

    images: np.ndarray                 # (N, H, W, C) uint8
    labels: list[str]
    subjects: list[str | None]
    names: list[str]                   # source file (or dataset#row); "#k" suffix for extra faces
    geometry: np.ndarray | None = None  # (N, GEOMETRY_DIM) float32 when config.geometry
    geometry_valid: np.ndarray | None = None  # (N,) bool: False where geometry is zeros (crops)
    no_face: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.images)

    def inputs(self) -> dict[str, np.ndarray]:
        """The named model inputs (``image`` and, if computed, ``geometry``)."""
        out = {"image": self.images}
        if self.geometry is not None:
            out["geometry"] = self.geometry
        return out

    def targets(self, classes: list[str]) -> np.ndarray:
        from emotion_keras.labels import to_indices

        return to_indices(self.labels, classes)

    def take(self, idx) -> FaceArrays:
        """A subset by index array or mask (for splits after preprocessing)."""
        idx = np.arange(len(self))[idx]
        return dataclasses.replace(
            self, images=self.images[idx], labels=[self.labels[i] for i in idx],
            subjects=[self.subjects[i] for i in idx], names=[self.names[i] for i in idx],
            geometry=None if self.geometry is None else self.geometry[idx],
            geometry_valid=None if self.geometry_valid is None else self.geometry_valid[idx])


# ---------------------------------------------------------------- single images

def resize_crop(image: np.ndarray, config: FacePrepConfig) -> np.ndarray:
    """A face crop (grey 2-D or RGB) -> (size, size, C) uint8 in the config's colour mode."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if config.grayscale and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif not config.grayscale and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    if h != w:  # centre square crop keeps the face's aspect ratio
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        img = img[y0:y0 + s, x0:x0 + s]
    if img.shape[0] != config.size:
        interp = cv2.INTER_AREA if img.shape[0] > config.size else cv2.INTER_CUBIC
        img = cv2.resize(img, (config.size, config.size), interpolation=interp)
    if img.ndim == 2:
        img = img[..., None]
    return np.ascontiguousarray(img, dtype=np.uint8)


def _read_crop(path: Path, config: FacePrepConfig) -> np.ndarray:
    """Fast decode of a small crop with OpenCV; falls back to ``load_image`` for its clear errors."""
    import cv2

    flag = cv2.IMREAD_GRAYSCALE if config.grayscale else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None:
        from emotion_keras.preprocess.images import load_image

        img = load_image(path)  # raises InputError naming the problem
    elif img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return resize_crop(img, config)


def make_detector(config: FacePrepConfig | None = None):
    """The face detector used for photos (numpy MTCNN, any backend); it downscales photos whose
    longer side exceeds ``config.max_side`` before searching (boxes come back in full resolution)."""
    from emotion_keras.preprocess.face_detect import FaceDetector

    return FaceDetector(max_side=(config or FacePrepConfig()).max_side)


def detect_faces(rgb: np.ndarray, config: FacePrepConfig, detector) -> list:
    """Faces in an RGB photo with confidence >= ``config.min_confidence``, most confident first."""
    faces = [x for x in detector.detect(rgb) if x.confidence >= config.min_confidence]
    faces.sort(key=lambda x: -x.confidence)
    return faces


def face_inputs(rgb: np.ndarray, faces: Sequence, config: FacePrepConfig,
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Aligned, resized crops (N, H, W, C) uint8 for detected ``faces`` of ``rgb`` (+ geometry rows).

    The one place that turns a detection into model input: training on photos and the recogniser
    both use it, so inference sees exactly what training saw.
    """
    from emotion_keras.preprocess import face_align

    crops, geoms = [], []
    for face in faces:
        crop = face_align.align_face(rgb, face.keypoints, size=config.size, margin=config.margin,
                                     grayscale=config.grayscale)
        crops.append(resize_crop(crop, config))
        if config.geometry:
            geoms.append(face_align.geometry_features(face.keypoints, face.box))
    images = np.stack(crops) if crops else np.zeros((0, *config.shape), np.uint8)
    geometry = None
    if config.geometry:
        geometry = (np.stack(geoms).astype(np.float32) if geoms
                    else np.zeros((0, face_align.GEOMETRY_DIM), np.float32))
    return images, geometry


def crop_inputs(image: np.ndarray, config: FacePrepConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """A pre-cropped face -> a batch of one model input (geometry zeros: crops carry no landmarks)."""
    images = resize_crop(image, config)[None]
    geometry = None
    if config.geometry:
        from emotion_keras.preprocess.face_align import GEOMETRY_DIM

        geometry = np.zeros((1, GEOMETRY_DIM), np.float32)
    return images, geometry


# ---------------------------------------------------------------- corpora

def _is_crop(record: Record, config: FacePrepConfig, shape: tuple[int, ...] | None = None) -> bool:
    if config.detect == "never":
        return True
    if config.detect == "always":
        return False
    if record.meta.get("cropped"):
        return True
    return shape is not None and max(shape[:2]) <= SMALL_SIDE


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _compute(records: Sequence[Record], config: FacePrepConfig, progress: bool) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    geometry_dim = None
    if config.geometry:
        from emotion_keras.preprocess.face_align import GEOMETRY_DIM

        geometry_dim = GEOMETRY_DIM
    n = len(records)
    # Crops first, in parallel (decode + resize, cv2 releases the GIL); photos then, one by one.
    crop_idx = [i for i, r in enumerate(records) if r.array is not None or _is_crop(r, config)]
    photo_idx = sorted(set(range(n)) - set(crop_idx))
    results: dict[int, Any] = {}

    def do_crop(i: int):
        r = records[i]
        try:
            img = resize_crop(r.array, config) if r.array is not None else _read_crop(r.path, config)
            return i, [img], None, None
        except InputError as e:
            return i, [], None, e.problem

    bar = tqdm(total=n, desc="preparing faces", unit="img", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(_workers()) as pool:
        for i, imgs, geo, err in pool.map(do_crop, crop_idx, chunksize=256):
            results[i] = (imgs, geo, err, False)
            bar.update(1)
    detector = None
    if photo_idx:
        from emotion_keras.preprocess.images import load_image

        for i in photo_idx:
            r = records[i]
            try:
                rgb = r.array if r.array is not None else load_image(r.path)
            except InputError as e:
                results[i] = ([], None, e.problem, False)
                bar.update(1)
                continue
            if _is_crop(r, config, rgb.shape):
                imgs, geo = crop_inputs(rgb, config)
                results[i] = (list(imgs), None, None, False)
            else:
                detector = detector or make_detector(config)
                faces = detect_faces(rgb, config, detector)
                if config.keep == "best":
                    faces = faces[:1]
                imgs, geo = face_inputs(rgb, faces, config)
                results[i] = (list(imgs), None if geo is None else list(geo), None, not faces)
            bar.update(1)
    bar.close()

    images, labels, subjects, names, geoms, valid, no_face, failed = [], [], [], [], [], [], [], []
    for i in range(n):
        imgs, geo, err, missing = results[i]
        r = records[i]
        if err is not None:
            failed.append((r.name, err))
            continue
        if missing:
            no_face.append(r.name)
            continue
        for k, img in enumerate(imgs):
            images.append(img)
            labels.append(r.label)
            subjects.append("" if r.subject is None else str(r.subject))
            names.append(r.name if k == 0 else f"{r.name}#{k}")
            if geometry_dim is not None:
                has = geo is not None
                geoms.append(np.asarray(geo[k], np.float32) if has else np.zeros(geometry_dim, np.float32))
                valid.append(has)
    arrays = {
        "images": np.stack(images) if images else np.zeros((0, *config.shape), np.uint8),
        "labels": np.asarray(labels, dtype=str),
        "subjects": np.asarray(subjects, dtype=str),
        "names": np.asarray(names, dtype=str),
        "no_face": np.asarray(no_face, dtype=str),
        "failed_files": np.asarray([f for f, _ in failed], dtype=str),
        "failed_reasons": np.asarray([why for _, why in failed], dtype=str),
    }
    if geometry_dim is not None:
        arrays["geometry"] = (np.stack(geoms) if geoms else np.zeros((0, geometry_dim), np.float32))
        arrays["geometry_valid"] = np.asarray(valid, dtype=bool)
    return arrays


TTA_MODES = ("none", "flip", "ten_crop")


def tta_views(images: np.ndarray, mode: str, crop: int = 0) -> list[np.ndarray]:
    """The test-time views of ``(N, H, W, C)`` faces: ``flip`` adds the mirror image; ``ten_crop``
    the four corner and the centre crops of side ``crop`` (the model centre-crops its input, so a
    corner crop is the input shifted by the crop margin) and their mirrors. Without a crop in the
    model, the shift is 1/12 of the side with edge pixels repeated."""
    if mode not in TTA_MODES:
        raise ConfigError(f"TTA must be one of {', '.join(TTA_MODES)}, not {mode!r}")
    views = [images]
    if mode == "ten_crop":
        side = images.shape[1]
        d = (side - crop) // 2 if crop and crop < side else max(1, side // 12)
        pad = np.pad(images, ((0, 0), (d, d), (d, d), (0, 0)), mode="edge")
        for dy, dx in ((0, 0), (0, 2 * d), (2 * d, 0), (2 * d, 2 * d)):
            views.append(np.ascontiguousarray(pad[:, dy:dy + side, dx:dx + side]))
    if mode in ("flip", "ten_crop"):
        views += [np.ascontiguousarray(v[:, :, ::-1]) for v in views]
    return views


def cache_dir_default() -> Path:
    """The cache folder, read at call time (tests and users set ``EMOTION_KERAS_CACHE``)."""
    return Path(os.environ.get("EMOTION_KERAS_CACHE", DEFAULT_DIR))


def prepare_faces(records: Sequence[Record], config: FacePrepConfig | None = None,
                  cache_dir: str | Path | None = None, progress: bool = True) -> FaceArrays:
    """Preprocess ``records`` into :class:`FaceArrays`, cached on disk by content and config.

    Faces that could not be found or files that could not be read are reported on stderr and listed
    in ``no_face`` / ``failed``; the returned arrays hold the rest, in record order.
    """
    config = config or FacePrepConfig()
    records = list(records)
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_dir_default()
    key = cache_key(VERSION, fingerprint(records), config.to_dict())
    hit = (cache_dir / f"faces-{key}.npz").exists()
    arrays = cached("faces", key, lambda: _compute(records, config, progress), cache_dir=cache_dir)
    subjects = [s or None for s in arrays["subjects"].tolist()]
    out = FaceArrays(
        images=arrays["images"], labels=arrays["labels"].tolist(), subjects=subjects,
        names=arrays["names"].tolist(), geometry=arrays.get("geometry"),
        geometry_valid=arrays.get("geometry_valid"), no_face=arrays["no_face"].tolist(),
        failed=list(zip(arrays["failed_files"].tolist(), arrays["failed_reasons"].tolist())),
        from_cache=hit)
    if progress and (out.no_face or out.failed):
        report(out, file=sys.stderr)
    return out


def report(arrays: FaceArrays, file=None, limit: int = 10) -> None:
    """Print the files without a face and the unreadable ones (the first ``limit`` of each)."""
    file = file or sys.stderr
    if arrays.no_face:
        print(f"no face found in {len(arrays.no_face)} image(s):", file=file)
        for name in arrays.no_face[:limit]:
            print(f"  {name}", file=file)
        if len(arrays.no_face) > limit:
            print(f"  ... and {len(arrays.no_face) - limit} more", file=file)
    if arrays.failed:
        print(f"could not read {len(arrays.failed)} file(s):", file=file)
        for name, why in arrays.failed[:limit]:
            print(f"  {name}: {why}", file=file)
