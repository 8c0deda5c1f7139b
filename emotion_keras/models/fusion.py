"""Face + speech fusion: a new head on what the trained face and speech models see, and the late-fusion
baseline it has to beat.

``build_fusion_model(config, classes)`` returns a functional model whose inputs are named:

- ``"face_frames"`` ``(max_frames, face_dim)`` per-frame face embeddings (the face model's ``"embedding"``
  layer) with ``"face_mask"`` ``(max_frames,)`` (1 for a real frame, 0 for padding / no face), pooled over
  time by ``config.pooling`` (``mean`` | ``attention`` | ``gru`` | ``lstm``); or ``"face"`` ``(face_dim,)``, one
  face-descriptor vector per clip (e.g. the 35 OpenFace action units of the RAVDESS benchmark), when
  ``config.face_input == "descriptor"``;
- ``"speech"`` ``(speech_dim,)``: the speech model's ``"embedding"`` of the window (or any speech
  descriptor vector);
- ``"geometry"`` ``(geometry_dim,)`` optional face geometry, when ``config.geometry_dim > 0``.

Each modality is normalised (``Normalization`` adapted on the training data by :func:`adapt`), projected
to ``config.projection`` units, optionally dropped out as a whole during training (``ModalityDropout``,
so the head learns not to lean on one modality only), concatenated and classified by a small MLP
ending in ``"embedding"`` and ``"probabilities"`` like every model here. ``config.modalities`` may hold a
single modality: the benchmark's face-only and speech-only heads come from the same builder.

With ``face_model``/``speech_model`` given, the encoders are built into the graph instead (inputs
``"face_images"`` ``(max_frames, H, W, C)`` + ``"face_mask"``, and the speech model's ``"features"``), frozen
unless ``config.finetune``: end-to-end fine-tuning on paired data. The default path caches embeddings
(:mod:`emotion_keras.data.cache`), so training a head takes seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from emotion_keras.config import Config, ConfigError
from emotion_keras.models.io import pad_frames  # noqa: F401  (its home is models.io: no keras)

POOLINGS = ("mean", "attention", "gru", "lstm")


@dataclasses.dataclass
class FusionConfig(Config):
    """Shape of a fusion head; stored on the model card as ``model_config``."""

    modalities: tuple = ("face", "speech")  # any non-empty subset
    face_input: str = "frames"  # frames (sequence of embeddings) | descriptor (one vector per clip)
    face_dim: int = 128
    speech_dim: int = 128
    geometry_dim: int = 0  # > 0 adds a "geometry" input
    max_frames: int = 16  # frames per window (2.5 s at 5 fps = 13)
    pooling: str = "attention"  # mean | attention | gru | lstm
    recurrent_units: int = 64
    projection: int = 64  # units each modality is projected to before concatenation
    hidden: int = 128
    embedding_dim: int = 64
    dropout: float = 0.3
    modality_dropout: float = 0.15  # training-time probability of blanking one modality per sample
    normalize: bool = True  # Normalization layers adapted on training data
    finetune: bool = False  # end-to-end mode: train the face/speech encoders too

    def __post_init__(self):
        mods = tuple(self.modalities)
        if not mods or any(m not in ("face", "speech") for m in mods):
            raise ConfigError(f"modalities must be a non-empty subset of ('face', 'speech'), not {mods}")
        self.modalities = mods
        if self.face_input not in ("frames", "descriptor"):
            raise ConfigError(f"face_input must be 'frames' or 'descriptor', not {self.face_input!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")
        if not 0 <= self.dropout < 1 or not 0 <= self.modality_dropout < 0.5:
            raise ConfigError("dropout must be in [0, 1) and modality_dropout in [0, 0.5)")
        if self.max_frames < 1 or self.face_dim < 1 or self.speech_dim < 1:
            raise ConfigError("max_frames, face_dim and speech_dim must be positive")


@keras.saving.register_keras_serializable(package="emotion_keras")
class ModalityDropout(keras.layers.Layer):
    """Blank whole modalities at training time: each sample keeps all of them with probability
    ``1 - rate``, else one modality chosen at random is zeroed (never all of them)."""

    def __init__(self, rate: float = 0.15, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate <= 0 or len(inputs) < 2:
            return list(inputs)
        n = len(inputs)
        batch = ops.shape(inputs[0])[0]
        drop = keras.random.uniform((batch, 1), seed=self.seed_generator) < self.rate
        which = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator) * n)
        out = []
        for i, x in enumerate(inputs):
            blank = ops.logical_and(drop, ops.equal(which, float(i)))
            out.append(ops.where(blank, ops.zeros_like(x), x))
        return out

    def compute_output_shape(self, input_shape):
        return list(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="emotion_keras")
class MaskedMean(keras.layers.Layer):
    """Mean over frames whose mask is 1 (zeros when a window has no face at all)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, x, mask=None):
        if mask is None:
            return ops.mean(x, axis=1)
        m = ops.cast(mask, x.dtype)[..., None]
        return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _layers():
    """The custom layer classes (kept for callers written before they moved to module level)."""
    return ModalityDropout, MaskedMean


def _embedding_layer(model):
    try:
        return model.get_layer("embedding")
    except ValueError:
        raise ConfigError(f"model {model.name!r} has no layer named 'embedding' (see docs/architecture.md)"
                          ) from None


def _embedding_and_probabilities(model):
    """``model``'s ``(embedding, probabilities)`` tensors on its inputs; for an ensemble
    (:mod:`emotion_keras.models.ensemble`), its members' embeddings side by side, and their
    probabilities combined by a copy of the ensemble's own layer (a weighted ensemble stays weighted)."""
    from emotion_keras.models.ensemble import members_of

    members = members_of(model)
    if not members:
        return _embedding_layer(model).output, model.output
    feed = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    pairs = [embedding_and_probabilities(m)(feed) for m in members]
    combine = model.get_layer("probabilities")
    combine = type(combine).from_config(combine.get_config())
    return keras.layers.Concatenate(name="embedding")([e for e, _ in pairs]), combine([p for _, p in pairs])


def embedding_model(model, name: str | None = None):
    """The sub-model from ``model``'s inputs to its ``"embedding"`` layer (the fusion contract)."""
    return keras.Model(model.inputs, _embedding_and_probabilities(model)[0], name=name or f"{model.name}_embedding")


def embedding_and_probabilities(model):
    """One model returning ``[embedding, probabilities]``: both from a single forward pass."""
    return keras.Model(model.inputs, list(_embedding_and_probabilities(model)))


def probabilities_of_embedding(model):
    """The layers after a model's ``"embedding"``, as a model of that embedding: one Dense layer for
    most models, the averaged solved heads of an ``lda`` model with several shrinkages."""
    return keras.Model(model.get_layer("embedding").output, model.output)


def _copy(model):
    """A copy with the same weights: freezing or fine-tuning it never changes the caller's model."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def build_fusion_model(config: FusionConfig, classes: Sequence[str], face_model=None, speech_model=None,
                       name: str = "fusion"):
    """A fusion head (see the module docstring); encoders included when ``face_model``/``speech_model``."""
    from keras import layers

    from emotion_keras.models.layers import AttentionPooling1D

    inputs, branches = {}, []
    T = config.max_frames

    def project(x, tag):
        if config.normalize and face_model is None and speech_model is None:
            x = layers.Normalization(name=f"{tag}_norm")(x)
        x = layers.Dense(config.projection, activation="gelu", name=f"{tag}_proj")(x)
        return layers.LayerNormalization(name=f"{tag}_ln")(x)

    if "face" in config.modalities:
        if config.face_input == "descriptor":
            if face_model is not None:
                raise ConfigError("face_input='descriptor' takes a face vector, not a face model")
            inputs["face"] = keras.Input((config.face_dim,), name="face")
            face = project(inputs["face"], "face")
        else:
            mask = keras.Input((T,), name="face_mask")
            if face_model is not None:
                if len(face_model.inputs) != 1:
                    raise ConfigError("end-to-end fusion needs a face model with the single input 'image' "
                                      "(train the face model without geometry, or use cached embeddings)")
                image_shape = tuple(face_model.inputs[0].shape[1:])
                encoder = _copy(embedding_model(face_model, "face_encoder"))
                encoder.trainable = bool(config.finetune)
                frames_in = keras.Input((T, *image_shape), name="face_images")
                inputs["face_images"] = frames_in
                seq = layers.TimeDistributed(encoder, name="face_frames_encoder")(frames_in)
            else:
                inputs["face_frames"] = keras.Input((T, config.face_dim), name="face_frames")
                seq = inputs["face_frames"]
            inputs["face_mask"] = mask
            if config.normalize and face_model is None:
                seq = layers.Normalization(name="face_norm")(seq)
            seq = layers.Dense(config.projection, activation="gelu", name="face_frame_proj")(seq)
            if config.pooling == "mean":
                face = MaskedMean(name="face_pool")(seq, mask=mask)
            elif config.pooling == "attention":
                face = AttentionPooling1D(units=config.projection, name="face_pool")(seq, mask=mask)
            else:
                rnn = layers.GRU if config.pooling == "gru" else layers.LSTM
                face = rnn(config.recurrent_units, name="face_pool")(seq, mask=ops_bool(mask))
            face = layers.LayerNormalization(name="face_ln")(face)
        branches.append(face)

    if "speech" in config.modalities:
        if speech_model is not None:
            encoder = _copy(embedding_model(speech_model, "speech_encoder"))
            encoder.trainable = bool(config.finetune)
            feats = keras.Input(tuple(speech_model.inputs[0].shape[1:]), name="features")
            inputs["features"] = feats
            speech = project(encoder(feats), "speech")
        else:
            inputs["speech"] = keras.Input((config.speech_dim,), name="speech")
            speech = project(inputs["speech"], "speech")
        branches.append(speech)

    if config.geometry_dim > 0:
        inputs["geometry"] = keras.Input((config.geometry_dim,), name="geometry")
        branches.append(project(inputs["geometry"], "geometry"))

    if len(branches) > 1 and config.modality_dropout > 0:
        branches = ModalityDropout(config.modality_dropout, seed=0, name="modality_dropout")(branches)
    x = layers.Concatenate(name="concat")(branches) if len(branches) > 1 else branches[0]
    x = layers.Dropout(config.dropout, name="dropout_1")(x)
    x = layers.Dense(config.hidden, activation="gelu", name="hidden")(x)
    x = layers.Dropout(config.dropout, name="dropout_2")(x)
    x = layers.Dense(config.embedding_dim, activation="gelu", name="embedding")(x)
    out = layers.Dense(len(classes), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, out, name=name)


def ops_bool(mask):
    """A float 0/1 mask as the boolean mask Keras RNNs expect."""
    return ops.cast(mask, "bool")


def adapt(model, x: dict[str, np.ndarray]) -> None:
    """Fit the model's ``Normalization`` layers on training inputs (masked frames left out)."""
    for tag, key in (("face", "face"), ("face", "face_frames"), ("speech", "speech"),
                     ("geometry", "geometry")):
        if key not in x:
            continue
        try:
            layer = model.get_layer(f"{tag}_norm")
        except ValueError:
            continue
        data = np.asarray(x[key], np.float32)
        if key == "face_frames":
            mask = np.asarray(x["face_mask"]) > 0
            data = data[mask] if mask.any() else data.reshape(-1, data.shape[-1])
            data = data[:, None, :]  # the layer was built on (batch, frames, dim)
        layer.adapt(data)


def inputs_for(config: FusionConfig, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The subset of ``arrays`` the model built from ``config`` takes (benchmarks keep all of them)."""
    keys = []
    if "face" in config.modalities:
        keys += ["face"] if config.face_input == "descriptor" else ["face_frames", "face_mask"]
    if "speech" in config.modalities:
        keys.append("speech")
    if config.geometry_dim > 0:
        keys.append("geometry")
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ConfigError(f"fusion inputs missing: {missing}")
    return {k: np.asarray(arrays[k], np.float32) for k in keys}


# ------------------------------------------------------------------------------------ late fusion

def late_fusion(p_face: np.ndarray, p_speech: np.ndarray, weight: float) -> np.ndarray:
    """``weight * p_face + (1 - weight) * p_speech``; a row missing one modality (NaN) uses the other."""
    p_face = np.asarray(p_face, np.float64)
    p_speech = np.asarray(p_speech, np.float64)
    face_ok = np.isfinite(p_face).all(-1, keepdims=True)
    speech_ok = np.isfinite(p_speech).all(-1, keepdims=True)
    w = np.where(face_ok & speech_ok, weight, np.where(face_ok, 1.0, 0.0))
    out = w * np.nan_to_num(p_face) + (1 - w) * np.nan_to_num(p_speech)
    return out.astype(np.float32)


def tune_late_weight(p_face: np.ndarray, p_speech: np.ndarray, y: np.ndarray, classes: Sequence[str],
                     grid: Sequence[float] | None = None, metric: str = "uar") -> tuple[float, float]:
    """The face weight in ``grid`` maximising ``metric`` on the given (training-fold, out-of-fold)
    predictions; ties go to the weight nearest 0.5. Returns ``(weight, score)``."""
    from emotion_keras.evaluate import metrics

    grid = np.linspace(0, 1, 21) if grid is None else np.asarray(grid, float)
    scores = [metrics(y, late_fusion(p_face, p_speech, w), list(classes))[metric] for w in grid]
    best = max(range(len(grid)), key=lambda i: (round(scores[i], 9), -abs(grid[i] - 0.5)))
    return float(grid[best]), float(scores[best])
