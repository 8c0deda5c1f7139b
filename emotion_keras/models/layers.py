"""Custom layers shared by the face, speech and fusion models.

Everything here is written with ``keras.ops`` and ``keras.random`` only, so the same saved model runs
under TensorFlow, JAX (and torch), and stays XLA-compilable: Keras' own random preprocessing layers
set ``supports_jit = False``, which silently drops a whole JAX training step out of ``jit`` (about
1 s/step instead of milliseconds on a GPU). Augmentations are identity at inference; softmaxes are
computed in float32 so mixed precision cannot overflow them. All layers are registered for
safe-mode loading under the ``emotion_keras`` package name.
"""

from __future__ import annotations

import math

import keras
from keras import ops

PACKAGE = "emotion_keras"


def _register(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------

@_register
class SelfAttention2D(keras.layers.Layer):
    """SAGAN self-attention over the positions of a feature map: ``gamma * attend(x) + x``.

    Query/key are 1x1 projections to ``C // reduction`` channels, value keeps ``C``; the attention of
    every position over all positions is ``softmax(q . k)``. ``gamma`` starts at 0, so a freshly
    inserted layer is the identity and the network learns how much global context to mix in.

    With ``return_attention=True`` the call returns ``(output, attention)`` where ``attention`` has
    shape ``(batch, H*W, H*W)`` (rows: query positions, columns: attended positions).
    ``attention_scores(x)`` gives the same map from any layer instance, which is how
    :mod:`emotion_keras.explain` reads it from a trained model built without that flag.
    """

    def __init__(self, reduction: int = 8, return_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"reduction must be >= 1, not {reduction}")
        self.reduction = int(reduction)
        self.return_attention = bool(return_attention)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"SelfAttention2D expects (batch, H, W, C) with known C, got {input_shape}")
        c = int(input_shape[-1])
        ck = max(1, c // self.reduction)
        self.channels = c
        init = keras.initializers.GlorotUniform()
        self.query_kernel = self.add_weight(name="query_kernel", shape=(c, ck), initializer=init)
        self.query_bias = self.add_weight(name="query_bias", shape=(ck,), initializer="zeros")
        self.key_kernel = self.add_weight(name="key_kernel", shape=(c, ck), initializer=init)
        self.key_bias = self.add_weight(name="key_bias", shape=(ck,), initializer="zeros")
        self.value_kernel = self.add_weight(name="value_kernel", shape=(c, c), initializer=init)
        self.value_bias = self.add_weight(name="value_bias", shape=(c,), initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def _flat(self, x):
        return ops.reshape(x, (-1, ops.shape(x)[1] * ops.shape(x)[2], self.channels))

    def _attention(self, flat):
        q = ops.matmul(flat, self.query_kernel) + self.query_bias
        k = ops.matmul(flat, self.key_kernel) + self.key_bias
        logits = ops.matmul(ops.cast(q, "float32"), ops.transpose(ops.cast(k, "float32"), (0, 2, 1)))
        return ops.softmax(logits, axis=-1)  # float32 (batch, N, N)

    def attention_scores(self, x):
        """Attention map ``(batch, H*W, H*W)`` in float32 for feature maps ``x`` (the layer's input)."""
        x = ops.convert_to_tensor(x, dtype=self.compute_dtype)
        if not self.built:
            self.build(tuple(x.shape))
        return self._attention(self._flat(x))

    def call(self, x):
        flat = self._flat(x)
        attn = self._attention(flat)
        v = ops.matmul(flat, self.value_kernel) + self.value_bias
        attended = ops.matmul(ops.cast(attn, v.dtype), v)
        attended = ops.reshape(attended, ops.shape(x))
        out = ops.cast(self.gamma, x.dtype) * attended + x
        return (out, attn) if self.return_attention else out

    def compute_output_shape(self, input_shape):
        if not self.return_attention:
            return tuple(input_shape)
        n = None if None in input_shape[1:3] else input_shape[1] * input_shape[2]
        return tuple(input_shape), (input_shape[0], n, n)

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "return_attention": self.return_attention}


@_register
class AttentionPooling1D(keras.layers.Layer):
    """Learned attention pooling over time: ``sum_t softmax(v . tanh(W x_t + b)) x_t``.

    ``(batch, frames, channels) -> (batch, channels)``. A Keras mask (from ``Masking``) or an explicit
    ``mask`` argument keeps padded frames out of the softmax; ``attention_weights(x)`` returns the
    per-frame weights for inspection.
    """

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.supports_masking = True

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(c, self.units),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score = self.add_weight(name="score", shape=(self.units, 1), initializer="glorot_uniform")

    def attention_weights(self, x, mask=None):
        """Per-frame weights ``(batch, frames)`` in float32; masked frames get 0."""
        h = ops.tanh(ops.matmul(x, self.kernel) + self.bias)
        logits = ops.cast(ops.squeeze(ops.matmul(h, self.score), -1), "float32")
        if mask is not None:
            mask = ops.cast(mask, "bool")
            logits = ops.where(mask, logits, ops.full_like(logits, -1e9))
        weights = ops.softmax(logits, axis=-1)
        if mask is not None:  # an all-masked row would otherwise be uniform over padding
            weights = weights * ops.cast(mask, "float32")
        return weights

    def call(self, x, mask=None):
        w = self.attention_weights(x, mask)
        return ops.sum(ops.cast(w, x.dtype)[..., None] * x, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------

def _uniform(shape, low, high, seed):
    return keras.random.uniform(shape, minval=low, maxval=high, dtype="float32", seed=seed)


@_register
class ImageAugment(keras.layers.Layer):
    """Random flip, shift, rotation, zoom, brightness, contrast and erasing, in-graph and jit-safe.

    Geometry: one random similarity transform per sample, applied by bilinear sampling with edge
    replication (``ops.take`` on the flattened batch, so shapes stay static for XLA). Photometric
    changes are relative to ``value_range`` (the model feeds raw 0-255 pixels). Identity unless
    ``training`` is true. ``max_shift``/``zoom`` are fractions of the image size, ``max_rotation`` is in
    degrees, ``erase`` is the probability of blanking one random rectangle (up to a quarter of the
    area) with the image mean.
    """

    def __init__(self, flip: bool = True, max_shift: float = 0.1, max_rotation: float = 10.0,
                 zoom: float = 0.1, brightness: float = 0.2, contrast: float = 0.2, erase: float = 0.0,
                 value_range=(0.0, 255.0), seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.flip = bool(flip)
        self.max_shift = float(max_shift)
        self.max_rotation = float(max_rotation)
        self.zoom = float(zoom)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.erase = float(erase)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def _geometric(self) -> bool:
        return self.flip or self.max_shift > 0 or self.max_rotation > 0 or self.zoom > 0

    def call(self, x, training=None):
        if not training:
            return x
        dtype = x.dtype
        x = ops.cast(x, "float32")
        if self._geometric:
            x = self._transform(x)
        x = self._photometric(x)
        if self.erase > 0:
            x = self._erase(x)
        return ops.cast(x, dtype)

    def _transform(self, x):
        shape = ops.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        hf, wf = ops.cast(h, "float32"), ops.cast(w, "float32")
        sg = self.seed_generator
        angle = _uniform((b,), -1.0, 1.0, sg) * (self.max_rotation * math.pi / 180.0)
        scale = 1.0 + _uniform((b,), -1.0, 1.0, sg) * self.zoom
        tx = _uniform((b,), -1.0, 1.0, sg) * self.max_shift * wf
        ty = _uniform((b,), -1.0, 1.0, sg) * self.max_shift * hf
        if self.flip:
            sign = ops.where(_uniform((b,), 0.0, 1.0, sg) < 0.5, -1.0, 1.0)
        else:
            sign = ops.ones((b,), "float32")
        # Output pixel centre (u, v) relative to the image centre -> source (xs, ys): inverse map.
        cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
        u = ops.arange(w, dtype="float32") - cx  # (w,)
        v = ops.arange(h, dtype="float32") - cy  # (h,)
        u = u[None, None, :] - tx[:, None, None]
        v = v[None, :, None] - ty[:, None, None]
        cos = (ops.cos(angle) / scale)[:, None, None]
        sin = (ops.sin(angle) / scale)[:, None, None]
        xs = sign[:, None, None] * (cos * u + sin * v) + cx  # (b, h, w)
        ys = -sin * u + cos * v + cy
        xs = ops.clip(xs, 0.0, wf - 1.0)
        ys = ops.clip(ys, 0.0, hf - 1.0)
        x0, y0 = ops.floor(xs), ops.floor(ys)
        ax, ay = (xs - x0)[..., None], (ys - y0)[..., None]
        x0i, y0i = ops.cast(x0, "int32"), ops.cast(y0, "int32")
        x1i = ops.minimum(x0i + 1, w - 1)
        y1i = ops.minimum(y0i + 1, h - 1)
        flat = ops.reshape(x, (-1, c))
        base = (ops.arange(b, dtype="int32") * (h * w))[:, None, None]

        def gather(yi, xi):
            return ops.take(flat, ops.reshape(base + yi * w + xi, (-1,)), axis=0)

        def px(yi, xi):
            return ops.reshape(gather(yi, xi), shape)

        top = px(y0i, x0i) * (1.0 - ax) + px(y0i, x1i) * ax
        bottom = px(y1i, x0i) * (1.0 - ax) + px(y1i, x1i) * ax
        return top * (1.0 - ay) + bottom * ay

    def _photometric(self, x):
        lo, hi = self.value_range
        b = ops.shape(x)[0]
        sg = self.seed_generator
        if self.contrast > 0:
            mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
            factor = 1.0 + _uniform((b, 1, 1, 1), -self.contrast, self.contrast, sg)
            x = (x - mean) * factor + mean
        if self.brightness > 0:
            x = x + _uniform((b, 1, 1, 1), -self.brightness, self.brightness, sg) * (hi - lo)
        return ops.clip(x, lo, hi)

    def _erase(self, x):
        shape = ops.shape(x)
        b, h, w = shape[0], shape[1], shape[2]
        hf, wf = ops.cast(h, "float32"), ops.cast(w, "float32")
        sg = self.seed_generator
        eh = _uniform((b,), 0.1, 0.5, sg) * hf
        ew = _uniform((b,), 0.1, 0.5, sg) * wf
        y0 = _uniform((b,), 0.0, 1.0, sg) * (hf - eh)
        x0 = _uniform((b,), 0.0, 1.0, sg) * (wf - ew)
        apply = _uniform((b,), 0.0, 1.0, sg) < self.erase
        rows = ops.arange(h, dtype="float32")[None, :]
        cols = ops.arange(w, dtype="float32")[None, :]
        in_rows = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])  # (b, h)
        in_cols = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])  # (b, w)
        box = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
        fill = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        return ops.where(box[..., None], fill, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "max_shift": self.max_shift,
                "max_rotation": self.max_rotation, "zoom": self.zoom,
                "brightness": self.brightness, "contrast": self.contrast, "erase": self.erase,
                "value_range": list(self.value_range), "seed": self.seed}


@_register
class SpecAugment(keras.layers.Layer):
    """Time and frequency masking (SpecAugment) for ``(batch, frames, features)``, training only.

    Each sample gets ``time_masks`` bands of up to ``time_width * frames`` frames and ``freq_masks``
    bands of up to ``freq_width * features`` features replaced by that sample's mean. Masks come from
    comparisons with an ``arange``, so shapes stay static and the step stays jit-compiled.
    """

    def __init__(self, time_masks: int = 2, time_width: float = 0.1, freq_masks: int = 2,
                 freq_width: float = 0.15, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.time_masks = int(time_masks)
        self.time_width = float(time_width)
        self.freq_masks = int(freq_masks)
        self.freq_width = float(freq_width)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def _bands(self, b, n, count, width):
        """Boolean ``(b, n)``: union of ``count`` random bands, each up to ``width * n`` long."""
        nf = ops.cast(n, "float32")
        pos = ops.arange(n, dtype="float32")[None, :]
        out = ops.zeros((b, n), "bool")
        for _ in range(count):
            size = ops.floor(_uniform((b, 1), 0.0, 1.0, self.seed_generator) * width * nf)
            start = ops.floor(_uniform((b, 1), 0.0, 1.0, self.seed_generator) * (nf - size + 1.0))
            out = out | ((pos >= start) & (pos < start + size))
        return out

    def masks(self, x):
        """The ``(batch, frames, features)`` boolean mask one training call would apply."""
        shape = ops.shape(x)
        b, t, f = shape[0], shape[1], shape[2]
        time = self._bands(b, t, self.time_masks, self.time_width)
        freq = self._bands(b, f, self.freq_masks, self.freq_width)
        return time[:, :, None] | freq[:, None, :]

    def call(self, x, training=None):
        if not training or (self.time_masks == 0 and self.freq_masks == 0):
            return x
        m = self.masks(x)
        fill = ops.mean(x, axis=(1, 2), keepdims=True)
        return ops.where(m, ops.cast(fill, x.dtype), x)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "time_masks": self.time_masks, "time_width": self.time_width,
                "freq_masks": self.freq_masks, "freq_width": self.freq_width, "seed": self.seed}


# --------------------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------------------

@_register
class WeightedAverage(keras.layers.Layer):
    """The weighted mean of several same-shaped tensors: an ensemble whose members earned different
    trust (e.g. models of two label sets, weighed towards the one a user scores on). ``weights`` are
    positive numbers, one per input, normalised to sum to 1."""

    def __init__(self, weights=(1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        weights = [float(w) for w in weights]
        if len(weights) < 2 or any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ValueError(f"WeightedAverage needs two or more positive weights, got {weights}")
        self.member_weights = weights

    def call(self, inputs):
        if len(inputs) != len(self.member_weights):
            raise ValueError(f"{len(inputs)} inputs for {len(self.member_weights)} weights")
        total = sum(self.member_weights)
        out = inputs[0] * (self.member_weights[0] / total)
        for x, w in zip(inputs[1:], self.member_weights[1:]):
            out = out + x * (w / total)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "weights": list(self.member_weights)}
