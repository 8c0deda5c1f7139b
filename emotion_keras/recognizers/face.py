"""Facial emotion recognition on photos and video frames with a saved face model.

``FaceEmotionRecognizer`` finds every face (MTCNN), aligns and crops each exactly as the model's card
says its training data was prepared (:func:`emotion_keras.preprocess.faces.face_inputs`), and runs
all faces of one image through the model in a single batch.

An image where no face is found gives ``faces: []``: that is a result ("no face here"), not an error.
Which images count as face crops follows the preprocessing's ``detect`` rule on the model card, as at
training time: under ``"auto"`` an image no larger than ``SMALL_SIDE`` pixels on its longer side (a
48x48 FER2013 crop, say) is already a face and is classified whole, with ``"cropped": true`` and the
whole image as its box; ``"never"`` treats every image so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.calibration import apply_temperature, temperature_of
from emotion_keras.errors import InputError
from emotion_keras.preprocess.faces import (SMALL_SIDE, FacePrepConfig, crop_inputs, detect_faces,
                                            face_inputs, make_detector)


def _as_rgb(image, name: str = "<array>") -> np.ndarray:
    """Validate an in-memory image: (H, W, 3) or (H, W) uint8; grey is replicated to RGB."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 8 or img.shape[1] < 8:
        raise InputError(name, f"expected an RGB image array (H, W, 3), got shape {img.shape}")
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and float(np.nanmax(img)) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)




class FaceEmotionRecognizer:
    """Faces and their emotions in an image.

    ``model_dir`` defaults to ``saved_models/face``; ``detector`` is any object with
    ``detect(rgb) -> list[Face]`` (default: the package's MTCNN, built on first use).
    ``runtime="onnx"`` runs the folder's exported ``model.onnx`` with onnxruntime instead of Keras
    (no TensorFlow/JAX import; no heatmaps). Probabilities are calibrated by the card's temperature.
    """

    task = "face"

    def __init__(self, model_dir: str | Path | None = None, detector=None, runtime: str = "keras"):
        from emotion_keras.models import store
        from emotion_keras.runtime import load_net

        self.model_dir = Path(model_dir) if model_dir else store.default_model_dir("face")
        self.runtime = runtime
        self.net, self.card, self.model = load_net(self.model_dir, runtime)
        self.classes: list[str] = list(self.card["classes"])
        self.temperature = temperature_of(self.card)
        self.prep = FacePrepConfig.from_dict(self.card.get("preprocessing") or {})
        self._detector = detector
        self._input_names = self.net.input_names

    @property
    def detector(self):
        if self._detector is None:
            self._detector = make_detector(self.prep)
        return self._detector

    # ------------------------------------------------------------ core

    def _run(self, images: np.ndarray, geometry: np.ndarray | None) -> np.ndarray:
        """Class probabilities for a batch of prepared faces, in one model call (padded to a power of
        two, so the compiled predict function sees few distinct shapes)."""
        n = len(images)
        x: dict[str, np.ndarray] = {"image": images}
        if "geometry" in self._input_names:
            x["geometry"] = geometry if geometry is not None else \
                np.zeros((n, int(self.net.input_shapes["geometry"][-1])), np.float32)
        size = 1 << max(0, (n - 1).bit_length())
        if size > n:
            x = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)]) for k, v in x.items()}
        return apply_temperature(self.net.probabilities(x)[:n], self.temperature)

    def classify_crops(self, crops) -> np.ndarray:
        """Probabilities for already-cropped faces (arrays of any size), without detection."""
        if not len(crops):
            return np.zeros((0, len(self.classes)), np.float32)
        batch = np.concatenate([crop_inputs(_as_rgb(c), self.prep)[0] for c in crops])
        return self._run(batch, None)  # crops carry no landmarks: geometry zeros, as in training

    def _prepare(self, rgb: np.ndarray):
        """Detect and align (or take the whole crop): ``(faces, images, geometry, cropped)``;
        ``images`` is None when no face was found."""
        small = max(rgb.shape[:2]) <= SMALL_SIDE
        cropped = self.prep.detect == "never" or (self.prep.detect == "auto" and small)
        if cropped:  # the same rule that decided, at training time, which images were crops
            images, geometry = crop_inputs(rgb, self.prep)
            return [], images, geometry, True
        faces = detect_faces(rgb, self.prep, self.detector)
        if not faces:
            return [], None, None, False
        images, geometry = face_inputs(rgb, faces, self.prep)
        return faces, images, geometry, False

    def _entries(self, shape, faces, probs: np.ndarray, cropped: bool) -> list[dict[str, Any]]:
        out = []
        for i, p in enumerate(probs):
            if cropped:
                h, w = shape[:2]
                entry: dict[str, Any] = {"box": [0, 0, int(w), int(h)], "confidence": None,
                                         "keypoints": {}, "cropped": True}
            else:
                f = faces[i]
                entry = {"box": [int(round(v)) for v in f.box],
                         "confidence": round(float(f.confidence), 4),
                         "keypoints": {k: [int(round(x)), int(round(y))] for k, (x, y) in f.keypoints.items()}}
            entry["emotion"] = self.classes[int(np.argmax(p))]
            entry["probabilities"] = {c: round(float(v), 4) for c, v in zip(self.classes, p)}
            out.append(entry)
        return out

    def predict(self, image, heatmaps: bool = False) -> list[dict[str, Any]]:
        """Every face in an RGB uint8 image: ``box`` [x, y, w, h], ``confidence``, ``keypoints``,
        ``emotion``, ``probabilities`` {label: p}; with ``heatmaps=True`` also ``heatmap`` (an
        (H, W) float array in [0, 1] over the face crop, and ``crop``, the crop it explains)."""
        rgb = _as_rgb(image)
        faces, images, geometry, cropped = self._prepare(rgb)
        if images is None:
            return []
        out = self._entries(rgb.shape, faces, self._run(images, geometry), cropped)
        if heatmaps:
            for entry, m, crop in zip(out, self._heatmaps(images, geometry), images):
                entry["heatmap"], entry["crop"] = m, crop
        return out

    def predict_files(self, paths, batch_size: int = 32, workers: int = 2) -> Iterator[dict[str, Any]]:
        """``predict_file`` over many images, one result per path in input order, bad files as
        ``{"file", "error"}``. Images are decoded and searched for faces by ``workers`` threads, and
        the faces of up to ``batch_size`` images go through the model in one call; only one batch
        of images is held at a time, so memory stays bounded however many paths stream in."""
        from concurrent.futures import ThreadPoolExecutor
        from itertools import islice

        from emotion_keras.preprocess.images import load_image

        def prepare(path):
            try:
                rgb = load_image(path)
                return path, rgb.shape, self._prepare(rgb)
            except InputError as e:
                return path, None, e

        paths = iter(paths)
        with ThreadPoolExecutor(max(1, int(workers))) as pool:
            while chunk := list(islice(paths, batch_size)):
                done = list(pool.map(prepare, chunk))
                stacks = [p for _, _, p in done if not isinstance(p, Exception) and p[1] is not None]
                probs = None
                if stacks:
                    geo = None
                    if "geometry" in self._input_names:  # crops carry no landmarks: zeros, as in training
                        dim = int(self.net.input_shapes["geometry"][-1])
                        geo = np.concatenate([g if g is not None else np.zeros((len(im), dim), np.float32)
                                              for _, im, g, _ in stacks])
                    probs = self._run(np.concatenate([im for _, im, _, _ in stacks]), geo)
                k = 0
                for path, shape, got in done:
                    if isinstance(got, Exception):
                        yield {"file": str(path), "error": got.problem}
                        continue
                    faces, images, _, cropped = got
                    n = 0 if images is None else len(images)
                    yield {"file": str(path), "faces": self._entries(shape, faces, probs[k:k + n], cropped)
                           if n else []}
                    k += n

    def _heatmaps(self, images: np.ndarray, geometry: np.ndarray | None) -> list[np.ndarray]:
        from emotion_keras import explain

        if self.model is None:
            raise InputError(self.model_dir, "heatmaps need the Keras model (runtime 'keras'), not ONNX")

        x: dict[str, np.ndarray] = {"image": images}
        if geometry is not None and "geometry" in self._input_names:
            x["geometry"] = geometry
        return [np.asarray(m, np.float32) for m in explain.heatmap(self.model, x)]

    def predict_file(self, path: str | Path, heatmaps: bool = False) -> dict[str, Any]:
        """``{"file", "faces": [...]}`` for an image file; a bad file raises ``InputError``."""
        from emotion_keras.preprocess.images import load_image

        rgb = load_image(path)
        return {"file": str(path), "faces": self.predict(rgb, heatmaps=heatmaps)}
