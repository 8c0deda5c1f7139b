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

from emotion_keras.config import ConfigError
from emotion_keras.errors import InputError
from emotion_keras.models.card import face_views
from emotion_keras.preprocess.preprocessors import FacePreprocessor, PreparedFaces
from emotion_keras.preprocess.preprocessors import as_rgb as _as_rgb
from emotion_keras.preprocess.faces import TTA_MODES, tta_views
from emotion_keras.recognizers.base import Recognizer


class FaceEmotionRecognizer(Recognizer):
    """Faces and their emotions in an image.

    Load with ``FaceEmotionRecognizer.from_dir(model_dir, detector=None, runtime="keras")`` (or the
    shorthand ``FaceEmotionRecognizer(model_dir, ...)``, or ``Recognizer.from_preset("face")``).
    ``runtime="onnx"`` runs the folder's exported ``model.onnx`` with onnxruntime instead of Keras
    (no TensorFlow/JAX import; no heatmaps). Probabilities are calibrated by the card's temperature.
    """

    task = "face"
    preprocessor_class = FacePreprocessor
    main_input = "image"
    zero_inputs = ("geometry",)  # crops carry no landmarks: geometry zeros, as in training

    def __init__(self, *, tta: str | None = None, **parts):
        """Args:
            tta: test-time views averaged for each face: ``"none"``, ``"flip"`` (the mirror image
                too) or ``"ten_crop"`` (None: the card's ``tta``, else none).
            **parts: as for :class:`~emotion_keras.recognizers.base.Recognizer`.
        """
        super().__init__(**parts)
        card_tta, self.crop = face_views(self.card)
        self.tta = tta or card_tta
        if self.tta not in TTA_MODES:
            raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, not {self.tta!r}")

    @classmethod
    def from_dir(cls, directory: str | Path | None = None, detector=None, runtime: str = "keras",
                 balance: float | None = None, tta: str | None = None):
        """Load a saved face model.

        Args:
            directory: the model folder (None: ``saved_models/face``).
            detector: any object with ``detect(rgb) -> list[Face]`` (None: the package's MTCNN,
                built on first use).
            runtime: ``"keras"`` or ``"onnx"``.
            balance: the prior correction, 0..1 (None: the card's): how far to move the decision
                from the training corpus's class frequencies towards equal ones
                (:mod:`emotion_keras.calibration`).
            tta: test-time views (None: the card's ``tta``, else none).
        """
        net, card, model, directory = cls._load(directory, runtime)
        return cls(net=net, card=card, preprocessor=FacePreprocessor.from_card(card, detector=detector),
                   model=model, model_dir=directory, runtime=runtime, balance=balance, tta=tta)

    @property
    def prep(self):
        """The card's :class:`~emotion_keras.preprocess.faces.FacePrepConfig`."""
        return self.preprocessor.config

    @property
    def detector(self):
        return self.preprocessor.detector

    # ------------------------------------------------------------ core

    def predict_proba(self, inputs) -> np.ndarray:
        """Calibrated class probabilities of prepared faces, each the mean over the :attr:`tta` views
        (:func:`~emotion_keras.preprocess.faces.tta_views`) before calibration, as ``face evaluate``
        averages them.

        Args:
            inputs: face crops ``(n, H, W, C)`` or ``{"image", ["geometry"]}``.
        """
        x = self._feed(inputs)
        n = len(x["image"])
        views = tta_views(x["image"], self.tta, self.crop) if n else [x["image"]]
        if len(views) == 1:
            return super().predict_proba(x)
        feed = {k: np.concatenate(views if k == "image" else [v] * len(views)) for k, v in x.items()}
        (probs,) = self._batched(lambda c: (self.net.probabilities(c),), feed)
        return self._calibrated(probs.reshape(len(views), n, -1).mean(0))

    def _run(self, images: np.ndarray, geometry: np.ndarray | None) -> np.ndarray:
        """Class probabilities for a batch of prepared faces, in one model call."""
        return self.predict_proba({"image": images, "geometry": geometry})

    def classify_crops(self, crops) -> np.ndarray:
        """Probabilities for already-cropped faces (arrays of any size), without detection.

        Args:
            crops: face crops, each an RGB or grey array.
        """
        return self.predict_proba(self.preprocessor.crops(crops))

    def _prepare(self, rgb: np.ndarray) -> PreparedFaces:
        """Detect and align (or take the whole crop): ``(faces, images, geometry, cropped)``;
        ``images`` is None when no face was found."""
        return self.preprocessor.prepare(rgb)

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
            entry["probabilities"] = self.labels(p)
            out.append(entry)
        return out

    def predict(self, image, heatmaps: bool = False) -> list[dict[str, Any]]:
        """Every face in an RGB uint8 image: ``box`` [x, y, w, h], ``confidence``, ``keypoints``,
        ``emotion``, ``probabilities`` {label: p}; with ``heatmaps=True`` also ``heatmap`` (an
        (H, W) float array in [0, 1] over the face crop, and ``crop``, the crop it explains).

        Args:
            image: an RGB (or grey) image array, uint8 or floats in [0, 1].
            heatmaps: also explain each face (Keras runtime only).
        """
        rgb = _as_rgb(image)
        faces, images, geometry, cropped = self.preprocessor.prepare(rgb)
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
        of images is held at a time, so memory stays bounded however many paths stream in.

        Args:
            paths: image paths (any iterable; consumed lazily).
            batch_size: images whose faces share one model call.
            workers: threads that decode and detect.
        """
        from concurrent.futures import ThreadPoolExecutor
        from itertools import islice

        def prepare(path):
            try:
                rgb = self.preprocessor.load(path)
                return path, rgb.shape, self.preprocessor.prepare(rgb)
            except InputError as e:
                return path, None, e

        paths = iter(paths)
        with ThreadPoolExecutor(max(1, int(workers))) as pool:
            while chunk := list(islice(paths, batch_size)):
                done = list(pool.map(prepare, chunk))
                found = [p for _, _, p in done if not isinstance(p, Exception) and p.images is not None]
                probs = self._run(*self._stack(found)) if found else None
                k = 0
                for path, shape, got in done:
                    if isinstance(got, Exception):
                        yield {"file": str(path), "error": got.problem}
                        continue
                    n = got.count
                    yield {"file": str(path), "faces": self._entries(shape, got.faces, probs[k:k + n], got.cropped)
                           if n else []}
                    k += n

    def _stack(self, found: list[PreparedFaces]) -> tuple[np.ndarray, np.ndarray | None]:
        """The faces of several images as one batch (geometry zeros for images without it)."""
        images = np.concatenate([p.images for p in found])
        if "geometry" not in self.net.input_names:
            return images, None
        dim = int(self.net.input_shapes["geometry"][-1])
        return images, np.concatenate([p.geometry if p.geometry is not None else
                                       np.zeros((p.count, dim), np.float32) for p in found])

    def _heatmaps(self, images: np.ndarray, geometry: np.ndarray | None) -> list[np.ndarray]:
        from emotion_keras import explain

        if self.model is None:
            raise InputError(self.model_dir, "heatmaps need the Keras model (runtime 'keras'), not ONNX")

        x: dict[str, np.ndarray] = {"image": images}
        if geometry is not None and "geometry" in self.net.input_names:
            x["geometry"] = geometry
        return [np.asarray(m, np.float32) for m in explain.heatmap(self.model, x)]

    def predict_file(self, path: str | Path, heatmaps: bool = False) -> dict[str, Any]:
        """``{"file", "faces": [...]}`` for an image file; a bad file raises ``InputError``.

        Args:
            path: an image file (JPEG, PNG, BMP, WebP, TIFF...).
            heatmaps: as for :meth:`predict`.
        """
        rgb = self.preprocessor.load(path)
        return {"file": str(path), "faces": self.predict(rgb, heatmaps=heatmaps)}
