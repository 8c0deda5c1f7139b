"""Speech emotion classifiers over feature windows: one builder, four architectures.

``build_speech_model(config, classes, input_shape)`` returns a functional model with input
``"features"`` ``(frames, n_features)`` (log-mel or MFCC windows from
:mod:`emotion_keras.preprocess.audio`) and last layers ``"embedding"`` and ``"probabilities"``
(float32 softmax), as every classifier in the package.

Architectures:

* ``crnn``: 2D conv blocks over (time, frequency), then a bidirectional GRU or LSTM over time, then
  attention pooling: conv learns local spectro-temporal patterns, the RNN their evolution, and
  attention picks the emotionally salient frames of a window.
* ``cnn2d``: conv blocks on the log-mel "image", global average pooling.
* ``cnn1d``: 1D convolutions over time with features as channels (suits MFCC sequences).
* ``transformer``: strided conv subsampling, a convolutional position encoding (no custom layer, so
  saved models load in safe mode with the registered layers only) and a small pre-norm encoder.
* ``linear``: multinomial logistic regression over the flattened input (meant for ``functionals``),
  each statistic standardised with the training set's moments (the ``embedding``), L2-penalised.
* ``mlp``: the same standardisation, then one hidden layer (``embedding_dim``).
* ``lda``: the ``linear`` model's layers, its weights not trained but solved (:func:`fit_lda`):
  shrinkage linear discriminant analysis, one shared within-class covariance pulled towards a scaled
  identity. With a few hundred clips and a thousand statistics, a covariance estimate regularises
  better than an L2 penalty: 2-3 points over logistic regression on RAVDESS's speaker folds. Several
  ``shrinkage`` values give one solved head each and their posteriors are averaged: no value has
  to be chosen on a validation set (which, with 4 validation speakers, picks noise).

SpecAugment (time and frequency masks) runs in-graph at training time only, so it is compiled with
the training step on either backend.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emotion_keras.config import Config, ConfigError

ARCHITECTURES = ("crnn", "cnn2d", "cnn1d", "transformer", "linear", "mlp", "lda")
VECTOR = ("linear", "mlp", "lda")  # architectures over the flattened input: for ``functionals`` features
SOLVED = ("lda",)  # weights solved in closed form (:func:`fit_lda`), not trained by gradient descent


@dataclasses.dataclass
class SpeechModelConfig(Config):
    """Shape of a speech model; stored on the model card as ``model_config``."""

    architecture: str = "crnn"  # crnn | cnn2d | cnn1d | transformer | linear | mlp | lda
    filters: int = 32  # first conv block; doubles per block up to 4x
    conv_blocks: int = 3  # conv blocks (each halves time and frequency for 2D, time for 1D)
    kernel_size: int = 3  # 2D kernels (cnn1d uses 2 * kernel_size - 1 along time)
    rnn: str = "gru"  # crnn: gru | lstm
    rnn_units: int = 64  # per direction
    attention_units: int = 64  # AttentionPooling1D hidden size
    d_model: int = 64  # transformer width
    heads: int = 4
    layers: int = 2  # transformer encoder blocks
    ff_dim: int = 128
    dropout: float = 0.3
    bn_momentum: float = 0.9  # speech sets are small: 0.99 leaves inference statistics unsettled
    embedding_dim: int = 128
    augment: bool = True  # SpecAugment at training time
    time_masks: int = 2
    time_width: float = 0.1  # fraction of frames per mask, at most
    freq_masks: int = 2
    freq_width: float = 0.15  # fraction of features per mask, at most
    prosody_dim: int = 0  # > 0: a second input "prosody" (prosody_dim,) per window, joined before the embedding
    prosody_units: int = 32
    l2: float = 0.0  # linear / mlp: L2 penalty on the dense kernels (the strength of logistic regression)
    # lda: weight(s) of the scaled identity in the within-class covariance (0: none); one head each, averaged
    shrinkage: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                              f"not {self.architecture!r}")
        if self.rnn not in ("gru", "lstm"):
            raise ConfigError(f"rnn must be 'gru' or 'lstm', not {self.rnn!r}")
        if min(self.filters, self.conv_blocks, self.rnn_units, self.d_model, self.heads, self.layers,
               self.ff_dim, self.embedding_dim, self.attention_units, self.kernel_size) < 1:
            raise ConfigError("sizes (filters, blocks, units, heads, layers...) must be positive")
        if self.d_model % self.heads:
            raise ConfigError(f"d_model {self.d_model} must be divisible by heads {self.heads}")
        if not 0 < self.bn_momentum < 1:
            raise ConfigError(f"bn_momentum must be in (0, 1), not {self.bn_momentum}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")
        if isinstance(self.shrinkage, (int, float)):  # one value: plain shrinkage LDA
            self.shrinkage = (self.shrinkage,)
        self.shrinkage = tuple(float(v) for v in self.shrinkage)
        if not self.shrinkage or not all(0 <= v <= 1 for v in self.shrinkage):
            raise ConfigError(f"shrinkage must be one or more values in [0, 1], not {self.shrinkage}")


def build_speech_model(config: SpeechModelConfig, classes, input_shape):
    """Functional speech classifier for ``classes`` (labels or their count) on ``(frames, features)``."""
    import keras

    from emotion_keras.models.layers import AttentionPooling1D, SpecAugment

    n_classes = classes if isinstance(classes, int) else len(classes)
    if n_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {n_classes}")
    frames, n_feat = (int(d) for d in input_shape)
    if config.architecture in ("crnn", "cnn2d") and min(frames, n_feat) < 2 ** config.conv_blocks:
        raise ConfigError(f"{config.conv_blocks} conv blocks halve ({frames}, {n_feat}) below one cell")
    if config.architecture not in VECTOR and frames < 2 ** max(config.conv_blocks, 2):
        raise ConfigError(f"a {config.architecture} needs a sequence of frames, not {frames}: use "
                          f"'linear', 'mlp' or 'lda' for one vector per window (functionals)")
    L = keras.layers
    features = keras.Input((frames, n_feat), name="features")
    x = features
    if config.augment and frames > 1:  # time and frequency masks mean nothing on statistics
        x = SpecAugment(config.time_masks, config.time_width, config.freq_masks, config.freq_width,
                        dtype="float32", name="spec_augment")(x)

    if config.architecture in ("crnn", "cnn2d"):
        x = L.Reshape((frames, n_feat, 1), name="add_channel")(x)
        for i in range(config.conv_blocks):
            x = _conv_block2d(x, config.filters * 2 ** min(i, 2), config.kernel_size, f"block{i}",
                              config.bn_momentum)
        if config.architecture == "cnn2d":
            x = L.GlobalAveragePooling2D(name="pool")(x)
        else:
            t, f, c = x.shape[1], x.shape[2], x.shape[3]
            x = L.Reshape((t, f * c), name="to_sequence")(x)
            # project (frequency x channels) down before the RNN: its input weights dominate otherwise
            x = L.Dense(2 * config.rnn_units, activation="relu", name="project")(x)
            rnn = L.GRU if config.rnn == "gru" else L.LSTM
            x = L.Bidirectional(rnn(config.rnn_units, return_sequences=True), name=f"bi{config.rnn}")(x)
            x = AttentionPooling1D(config.attention_units, name="attention_pool")(x)
    elif config.architecture == "cnn1d":
        k = 2 * config.kernel_size - 1
        for i in range(config.conv_blocks):
            width = config.filters * 2 ** min(i, 2)
            x = L.Conv1D(width, k, padding="same", use_bias=False, name=f"block{i}_conv")(x)
            x = L.BatchNormalization(momentum=config.bn_momentum, name=f"block{i}_bn")(x)
            x = L.Activation("relu", name=f"block{i}_relu")(x)
            x = L.MaxPooling1D(2, name=f"block{i}_pool")(x)
        x = L.Concatenate(name="pool")([L.GlobalAveragePooling1D(name="avg")(x),
                                        L.GlobalMaxPooling1D(name="max")(x)])
    elif config.architecture in VECTOR:
        x = L.Flatten(name="flatten")(x)
    else:  # transformer
        d = config.d_model
        x = L.Conv1D(d, 3, strides=2, padding="same", activation="gelu", name="subsample1")(x)
        x = L.Conv1D(d, 3, strides=2, padding="same", activation="gelu", name="subsample2")(x)
        pos = L.DepthwiseConv1D(15, padding="same", activation="gelu", name="position_conv")(x)
        x = L.Add(name="position_add")([x, pos])
        for i in range(config.layers):
            h = L.LayerNormalization(epsilon=1e-5, name=f"enc{i}_ln1")(x)
            h = L.MultiHeadAttention(config.heads, d // config.heads, dropout=config.dropout / 2,
                                     name=f"enc{i}_mha")(h, h)
            x = L.Add(name=f"enc{i}_add1")([x, h])
            h = L.LayerNormalization(epsilon=1e-5, name=f"enc{i}_ln2")(x)
            h = L.Dense(config.ff_dim, activation="gelu", name=f"enc{i}_ff1")(h)
            h = L.Dropout(config.dropout / 2, name=f"enc{i}_drop")(h)
            h = L.Dense(d, name=f"enc{i}_ff2")(h)
            x = L.Add(name=f"enc{i}_add2")([x, h])
        x = L.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
        x = AttentionPooling1D(config.attention_units, name="attention_pool")(x)

    inputs = {"features": features}
    if config.architecture in VECTOR:
        return _vector_head(keras, config, x, inputs, n_classes)
    if config.prosody_dim:
        # prosody measures have wildly different scales (semitones, dB, ratios): batch-normalise them
        prosody = keras.Input((config.prosody_dim,), name="prosody")
        inputs["prosody"] = prosody
        p = L.BatchNormalization(momentum=config.bn_momentum, name="prosody_bn")(prosody)
        p = L.Dense(config.prosody_units, activation="relu", name="prosody_dense")(p)
        x = L.Concatenate(name="join_prosody")([x, p])
    if config.dropout:
        x = L.Dropout(config.dropout, name="dropout")(x)
    x = L.Dense(config.embedding_dim, activation="relu", name="embedding")(x)
    out = L.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, out, name=f"speech_{config.architecture}")


def _vector_head(keras, config: SpeechModelConfig, x, inputs: dict, n_classes: int):
    """linear / mlp / lda: each statistic standardised with training-set moments (:func:`adapt`),
    prosody (if any) joined, then logistic regression (or its solved twin, lda) or one hidden layer;
    L2 on the trained classifier's weights."""
    L = keras.layers
    x = L.Normalization(axis=-1, name="standardise")(x)
    if config.prosody_dim:
        inputs["prosody"] = keras.Input((config.prosody_dim,), name="prosody")
        p = L.Normalization(axis=-1, name="standardise_prosody")(inputs["prosody"])
        x = L.Concatenate(name="join_prosody")([x, p])
    if config.dropout and config.architecture not in SOLVED:
        x = L.Dropout(config.dropout, name="dropout")(x)
    if config.architecture in ("linear", "lda"):  # the standardised statistics are the embedding
        x = L.Activation("linear", name="embedding")(x)
    else:
        x = L.Dense(config.embedding_dim, activation="relu", name="embedding",
                    kernel_regularizer=keras.regularizers.L2(config.l2) if config.l2 else None)(x)
    if config.architecture in SOLVED and len(config.shrinkage) > 1:  # one solved head per shrinkage
        heads = [L.Dense(n_classes, activation="softmax", dtype="float32", name=head)(x)
                 for head in lda_heads(len(config.shrinkage))]
        out = L.Average(name="probabilities", dtype="float32")(heads)
        return keras.Model(inputs, out, name=f"speech_{config.architecture}")
    l2 = config.l2 if config.architecture not in SOLVED else 0.0
    out = L.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities",
                  kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
    return keras.Model(inputs, out, name=f"speech_{config.architecture}")


def lda_heads(n: int) -> list[str]:
    """The solved Dense layers of an ``lda`` model with ``n`` shrinkage values: the output layer
    itself for one, else one head each (averaged into ``probabilities``)."""
    return ["probabilities"] if n == 1 else [f"lda{i}" for i in range(n)]


def fit_lda(net, inputs: dict, targets: np.ndarray, shrinkage, balanced: bool = True) -> np.ndarray:
    """Solve an ``lda`` model's classifier head(s) from its (adapted) embedding of ``inputs``, one per
    ``shrinkage`` value (a number or a sequence, as the model was built); returns the class prior used.

    The softmax of ``z W + b`` with ``W = S^-1 M``, ``b_k = log p_k - m_k S^-1 m_k / 2`` is the posterior
    of Gaussian classes with means ``m_k`` and one covariance ``S``: the pooled within-class
    covariance shrunk as ``(1 - s) S + s tr(S) / d I`` (Ledoit and Wolf's target). ``balanced``: equal
    priors, as class-weighted training aims for (else the training frequencies).
    """
    import keras

    from emotion_keras.models.io import model_feed

    values = (shrinkage,) if isinstance(shrinkage, (int, float)) else tuple(shrinkage)
    heads = lda_heads(len(values))
    names = {la.name for la in net.layers}
    if not set(heads) <= names or (len(values) == 1 and lda_heads(2)[0] in names):
        raise ValueError(f"{net.name} has no solvable head(s) for shrinkage {values}: it was built with "
                         "another number of values")
    embed = keras.Model(net.inputs, net.get_layer("embedding").output)
    z = np.asarray(embed.predict(model_feed(embed, inputs), batch_size=1024, verbose=0), np.float64)
    y = np.asarray(targets).astype(int)
    n_classes = int(net.output.shape[-1])
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"lda needs training examples of every class; none of class {np.argmin(counts)}")
    means = np.stack([z[y == k].mean(0) for k in range(n_classes)])
    centred = z - means[y]
    cov = centred.T @ centred / max(len(z) - n_classes, 1)
    d = cov.shape[0]
    prior = np.full(n_classes, 1.0 / n_classes) if balanced else counts / counts.sum()
    for head, s in zip(heads, values):
        w = np.linalg.solve((1.0 - s) * cov + s * np.trace(cov) / d * np.eye(d), means.T)  # (d, classes)
        b = np.log(prior) - 0.5 * np.einsum("kd,dk->k", means, w)
        net.get_layer(head).set_weights([w.astype(np.float32), b.astype(np.float32)])
    return prior


def adapt(net, inputs: dict) -> None:
    """Fit a linear / mlp / lda model's standardisation to its training inputs (a no-op for other models):
    exact moments, fixed at inference, unlike batch statistics."""
    names = {la.name for la in net.layers}
    for layer, key in (("standardise", "features"), ("standardise_prosody", "prosody")):
        if layer in names and key in inputs:
            x = np.asarray(inputs[key], np.float32)
            net.get_layer(layer).adapt(x.reshape(len(x), -1))


def _conv_block2d(x, filters: int, kernel: int, name: str, momentum: float = 0.9):
    """Conv-BN-ReLU then 2x2 max pooling (halves time and frequency)."""
    import keras

    L = keras.layers
    x = L.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    x = L.Activation("relu", name=f"{name}_relu")(x)
    return L.MaxPooling2D(2, name=f"{name}_pool")(x)
