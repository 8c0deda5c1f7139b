"""Preprocessor objects: raw input in, the model's named input arrays out, as the model card says.

A saved model's card records how its training data was prepared (``card["preprocessing"]``, and for
speech models trained on speaker-normalised features the ``speaker_norm_prior``). A preprocessor is
that record as one serialisable object, so every consumer (the recognisers, evaluation, fusion,
tuning) rebuilds exactly the same preparation from a card instead of re-deriving it:

- :class:`FacePreprocessor`: an RGB image -> detected, aligned crops ``{"image", ["geometry"]}``
  (or the whole image when it is a face crop already, by the card's ``detect`` rule);
- :class:`SpeechPreprocessor`: a waveform or an audio file -> window inputs ``{"features",
  ["prosody"]}`` and their spans, trimmed, VAD-filtered and (per-file) speaker-normalised.

``get_config()`` is JSON-able and ``from_config(get_config())`` rebuilds an equal preprocessor (the
KerasHub convention); ``from_card(card)`` reads the same keys off a model card. Plain numpy: no Keras.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from emotion_keras.errors import InputError
from emotion_keras.preprocess.audio import SpeechFeatureConfig
from emotion_keras.preprocess.faces import FacePrepConfig


class Preprocessor:
    """Base: one ``Config`` (the card's ``preprocessing``) plus the card fields named in ``CARD_KEYS``.

    Subclasses set ``config_class`` and ``task`` and may add card fields to ``CARD_KEYS``.
    """

    config_class: type = FacePrepConfig
    task: str = ""
    CARD_KEYS: tuple[str, ...] = ("preprocessing",)

    def __init__(self, config=None):
        """Args:
            config: a ``config_class`` instance or its dict (None: the defaults).
        """
        if config is None or isinstance(config, dict):
            config = self.config_class.from_dict(config or {})
        self.config = config

    @classmethod
    def from_card(cls, card: dict[str, Any], **options):
        """The preprocessing a saved model was trained with.

        Args:
            card: the model card (``card.json`` as a dict).
            **options: constructor options that are not on the card (e.g. a face detector).
        """
        return cls.from_config({k: card.get(k) for k in cls.CARD_KEYS}, **options)

    def get_config(self) -> dict[str, Any]:
        """JSON-able state; ``from_config`` of it gives an equal preprocessor."""
        return {"preprocessing": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any], **options):
        """Args:
            config: a dict from ``get_config`` (or the ``CARD_KEYS`` fields of a card).
            **options: constructor options that are not part of the config.
        """
        return cls(cls.config_class.from_dict(config.get("preprocessing") or {}), **options)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()!r})"


# ---------------------------------------------------------------------- faces

def as_rgb(image, name: str = "<array>") -> np.ndarray:
    """Validate an in-memory image: (H, W, 3) or (H, W) uint8; grey is replicated to RGB, floats in
    [0, 1] are scaled to [0, 255]; anything else raises ``InputError``."""
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


class PreparedFaces(NamedTuple):
    """The faces of one image: detections (empty for a whole-image crop), crops and geometry.

    ``images`` is None when no face was found; ``cropped`` says the image was classified whole.
    """

    faces: list
    images: np.ndarray | None
    geometry: np.ndarray | None
    cropped: bool

    @property
    def count(self) -> int:
        return 0 if self.images is None else len(self.images)


class FacePreprocessor(Preprocessor):
    """Images -> aligned face crops exactly as the model's training faces were prepared.

    Which images are face crops already follows the config's ``detect`` rule, as at training time:
    under ``"auto"`` an image no larger than ``SMALL_SIDE`` on its longer side is a crop and is
    classified whole; ``"never"`` treats every image so. Detection uses ``detector`` (any object
    with ``detect(rgb) -> list[Face]``; default the package's MTCNN, built on first use).
    """

    config_class = FacePrepConfig
    task = "face"

    def __init__(self, config: FacePrepConfig | dict | None = None, detector=None):
        """Args:
            config: a :class:`~emotion_keras.preprocess.faces.FacePrepConfig` or its dict.
            detector: a face detector (``detect(rgb) -> list[Face]``); None: MTCNN on first use.
        """
        super().__init__(config)
        self._detector = detector

    @property
    def detector(self):
        if self._detector is None:
            from emotion_keras.preprocess.faces import make_detector

            self._detector = make_detector(self.config)
        return self._detector

    @detector.setter
    def detector(self, value) -> None:
        self._detector = value

    def is_crop(self, rgb: np.ndarray) -> bool:
        """The training-time rule that says an image is a face crop already (no detection)."""
        from emotion_keras.preprocess.faces import SMALL_SIDE

        return self.config.detect == "never" or (self.config.detect == "auto" and max(rgb.shape[:2]) <= SMALL_SIDE)

    def __call__(self, image, name: str = "<array>") -> PreparedFaces:
        """Detect and align every face of an image (or take it whole when it is a crop).

        Args:
            image: an RGB (or grey) image array, uint8 or floats in [0, 1] (checked by :func:`as_rgb`).
            name: what an ``InputError`` about a bad array names.
        """
        return self.prepare(as_rgb(image, name))

    def prepare(self, rgb: np.ndarray) -> PreparedFaces:
        """:meth:`__call__` for an image that is RGB uint8 already (a decoded file, a video frame).

        Args:
            rgb: an ``(H, W, 3)`` uint8 array.
        """
        from emotion_keras.preprocess.faces import crop_inputs, detect_faces

        if self.is_crop(rgb):  # the same rule that decided, at training time, which images were crops
            images, geometry = crop_inputs(rgb, self.config)
            return PreparedFaces([], images, geometry, True)
        faces = detect_faces(rgb, self.config, self.detector)
        if not faces:
            return PreparedFaces([], None, None, False)
        return PreparedFaces(faces, *self.align(rgb, faces), False)

    def align(self, rgb: np.ndarray, faces) -> tuple[np.ndarray, np.ndarray | None]:
        """Crops ``(N, H, W, C)`` uint8 (and geometry rows) of given detections, e.g. a tracked face.

        Args:
            rgb: the RGB uint8 image the faces were found in.
            faces: detections (``Face`` objects with ``box`` and ``keypoints``).
        """
        from emotion_keras.preprocess.faces import face_inputs

        return face_inputs(rgb, faces, self.config)

    def crops(self, crops) -> np.ndarray:
        """Already-cropped faces (arrays of any size) -> one ``(N, H, W, C)`` uint8 batch.

        Args:
            crops: face crops, each an RGB or grey array.
        """
        from emotion_keras.preprocess.faces import crop_inputs

        if not len(crops):
            return np.zeros((0, *self.config.shape), np.uint8)
        return np.concatenate([crop_inputs(as_rgb(c), self.config)[0] for c in crops])

    def load(self, path: str | Path) -> np.ndarray:
        """An image file as RGB uint8 (``InputError`` naming the file when it is not an image)."""
        from emotion_keras.preprocess.images import load_image

        return load_image(path)


# ---------------------------------------------------------------------- speech

class SpeechPreprocessor(Preprocessor):
    """Waveforms and audio files -> the speech model's window inputs and their spans in seconds.

    Trimming, windowing, silence and VAD filtering follow the card's
    :class:`~emotion_keras.preprocess.audio.SpeechFeatureConfig`; models trained with
    ``speaker_norm: speaker`` get per-file standardisation shrunk towards ``speaker_norm_prior``
    (running statistics when a long file is streamed), or, after :meth:`enrol`, towards the enrolled
    speaker's own statistics.
    """

    config_class = SpeechFeatureConfig
    task = "speech"
    CARD_KEYS = ("preprocessing", "speaker_norm_prior")

    def __init__(self, config: SpeechFeatureConfig | dict | None = None,
                 speaker_norm_prior: dict[str, Any] | None = None):
        """Args:
            config: a :class:`~emotion_keras.preprocess.audio.SpeechFeatureConfig` or its dict.
            speaker_norm_prior: per input name, the typical training speaker's ``{"mean", "var"}``
                (the card's ``speaker_norm_prior``); used only under ``speaker_norm: speaker``.
        """
        super().__init__(config)
        self.speaker_norm_prior = speaker_norm_prior or None
        self.speaker = None  # an enrolled speaker's statistics per input (:meth:`enrol`)
        self._basis = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "speaker_norm_prior": self.speaker_norm_prior}

    @classmethod
    def from_config(cls, config: dict[str, Any], **options):
        return cls(cls.config_class.from_dict(config.get("preprocessing") or {}),
                   config.get("speaker_norm_prior"), **options)

    @property
    def sr(self) -> int:
        return self.config.sr

    @property
    def basis(self) -> np.ndarray:
        """The mel filter bank of this config, computed once."""
        if self._basis is None:
            from emotion_keras.preprocess.audio import mel_basis

            c = self.config
            self._basis = mel_basis(c.sr, c.n_fft, c.n_mels, c.fmin, c.fmax)
        return self._basis

    def check_model(self, input_names, input_shapes, where: str | Path) -> None:
        """Raise ``ModelLoadError`` when a model's inputs are not what this preprocessing gives.

        Args:
            input_names: the model's input names.
            input_shapes: ``{name: shape without the batch axis}``.
            where: the model folder, named in the error.
        """
        from emotion_keras.models.store import ModelLoadError

        if "prosody" in input_names and self.config.prosody == "none":
            raise ModelLoadError(f"{where}: the model takes prosody but its card's preprocessing computes none")
        expected = tuple(int(d) for d in input_shapes["features"])
        if expected != self.config.input_shape:
            raise ModelLoadError(f"{where}: the model takes {expected} features but its card's preprocessing "
                                 f"gives {self.config.input_shape}")

    def mono(self, waveform, sr: int, name: str = "<waveform>") -> np.ndarray:
        """A ``(samples,)`` or ``(samples, channels)`` waveform at ``sr`` -> mono float32 at ``config.sr``."""
        y = np.asarray(waveform, np.float32)
        if y.ndim == 2:
            y = y.mean(axis=1)
        elif y.ndim != 1:
            raise InputError(name, f"expected (samples,) or (samples, channels), got {y.shape}")
        if int(sr) != self.config.sr and len(y):
            import soxr

            y = soxr.resample(y, int(sr), self.config.sr).astype(np.float32)
        return y

    def normalise(self, inputs: dict[str, np.ndarray], running: dict | None = None) -> dict[str, np.ndarray]:
        """Per-file speaker normalisation of one file's window inputs, as the model was trained.

        Args:
            inputs: window inputs of one file (``{"features", ["prosody"]}``).
            running: a dict kept across the batches of one stream (a running normaliser per input);
                None: ``inputs`` is the whole file.
        """
        from emotion_keras.preprocess import speaker_norm

        if self.config.speaker_norm == "none":
            return inputs
        prior = self.speaker or self.speaker_norm_prior or {}
        if running is not None:
            return {k: running.setdefault(k, speaker_norm.RunningNormaliser(prior.get(k)))(v)
                    for k, v in inputs.items()}
        return {k: speaker_norm.normalise_file(v, prior.get(k)) for k, v in inputs.items()}

    def enrol(self, inputs: list[dict[str, np.ndarray]]) -> int:
        """Normalise from now on with one speaker's statistics, measured on window inputs of their
        unlabelled clips (unnormalised, as :func:`~emotion_keras.preprocess.audio.waveform_inputs`
        gives them), instead of each file's shrunk towards the typical speaker's. Returns the windows.

        Raises ConfigError for a model trained without speaker normalisation (nothing would change).
        """
        from emotion_keras.config import ConfigError
        from emotion_keras.preprocess import speaker_norm

        if self.config.speaker_norm == "none":
            raise ConfigError("this model was trained without speaker normalisation (its card's "
                              "speaker_norm is 'none'): enrolling a speaker would change nothing")
        if not inputs:
            raise ConfigError("enrolment needs at least one clip of the speaker")
        prior = self.speaker_norm_prior or {}
        self.speaker = {k: speaker_norm.enrolment(np.concatenate([x[k] for x in inputs]), prior.get(k))
                        for k in inputs[0]}
        return int(sum(len(x["features"]) for x in inputs))

    def __call__(self, waveform, sr: int | None = None, name: str | Path = "<waveform>",
                 running: dict | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """A whole clip -> normalised window inputs and their spans ``(n, 2)`` in seconds.

        Args:
            waveform: ``(samples,)`` or ``(samples, channels)`` float audio.
            sr: its sample rate (None: already at ``config.sr`` and mono).
            name: what an ``InputError`` (too short, silence only, no speech) names.
            running: a dict kept across the pieces of one recording (a video's windows): each is
                normalised with the statistics of everything heard so far (see :meth:`normalise`).
        """
        from emotion_keras.preprocess import audio

        y = waveform if sr is None else self.mono(waveform, sr, str(name))
        x, spans = audio.waveform_inputs(y, self.config, name, self.basis)
        return self.normalise(x, running), spans

    def iter_file(self, path: str | Path, stream_seconds: float = 600.0, batch: int = 64,
                  ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """An audio file's normalised window inputs and spans, in one piece when it lasts at most
        ``stream_seconds`` (trimmed like a training clip), else streamed in batches of ``batch``
        windows with bounded memory (untrimmed: a recording is not an utterance).

        Args:
            path: the audio file (WAV, FLAC, MP3, OGG, M4A...); a bad file raises ``InputError``.
            stream_seconds: files longer than this (or of unknown length) are streamed.
            batch: windows per streamed piece.
        """
        from emotion_keras.preprocess import audio

        path = Path(path)
        duration = audio.audio_duration(path) if path.is_file() else None
        if duration is not None and duration <= stream_seconds:
            yield self(audio.load_audio(path, self.config.sr), name=path)
            return
        running: dict = {}
        for x, spans in audio.stream_windows(path, self.config, batch=batch, basis=self.basis, inputs=True):
            yield self.normalise(x, running), spans


PREPROCESSORS: dict[str, type[Preprocessor]] = {"face": FacePreprocessor, "speech": SpeechPreprocessor}


def from_card(card: dict[str, Any], **options) -> Preprocessor:
    """The preprocessor of a face or speech model card (dispatching on its ``task``).

    Args:
        card: a face or speech model card.
        **options: constructor options not on the card (a face ``detector``).
    """
    task = card.get("task")
    if task not in PREPROCESSORS:
        raise ValueError(f"no preprocessor for a {task!r} model (face and speech models have one)")
    return PREPROCESSORS[task].from_card(card, **options)
