"""Custom layers: attention identity at init, masking, augmentation semantics, jit, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from emotion_keras.models.layers import (  # noqa: E402
    AttentionPooling1D,
    ImageAugment,
    SelfAttention2D,
    SpecAugment,
)

RNG = np.random.default_rng(0)


def np_(x):
    return np.asarray(ops.convert_to_numpy(x))


# ----------------------------------------------------------------------------- SelfAttention2D

def test_attention_starts_as_identity_and_rows_sum_to_one():
    x = RNG.normal(size=(2, 6, 5, 16)).astype("float32")
    layer = SelfAttention2D(reduction=4)
    np.testing.assert_array_equal(np_(layer(x)), x)  # gamma == 0
    attn = np_(layer.attention_scores(x))
    assert attn.shape == (2, 30, 30) and attn.dtype == np.float32
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
    assert layer.query_kernel.shape == (16, 4) and layer.value_kernel.shape == (16, 16)


def test_attention_returns_map_and_mixes_context_once_gamma_moves():
    x = RNG.normal(size=(2, 4, 4, 8)).astype("float32")
    layer = SelfAttention2D(reduction=2, return_attention=True)
    out, attn = layer(x)
    assert tuple(out.shape) == x.shape and tuple(attn.shape) == (2, 16, 16)
    np.testing.assert_allclose(np_(attn), np_(layer.attention_scores(x)), atol=1e-6)
    layer.gamma.assign(0.5)
    out2, _ = layer(x)
    # by hand: out = gamma * softmax(q k^T) v + x
    flat = x.reshape(2, 16, 8)
    v = flat @ np_(layer.value_kernel) + np_(layer.value_bias)
    expected = 0.5 * (np_(attn) @ v).reshape(x.shape) + x
    np.testing.assert_allclose(np_(out2), expected, atol=1e-4)


def test_attention_mixed_precision_keeps_softmax_in_float32():
    x = RNG.normal(size=(1, 4, 4, 8)).astype("float32")
    layer = SelfAttention2D(dtype="mixed_bfloat16")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.attention_scores(x).dtype) == "float32"


def test_attention_rejects_non_image_input():
    with pytest.raises(ValueError, match="batch, H, W, C"):
        SelfAttention2D()(np.zeros((2, 5, 3), "float32"))


# ----------------------------------------------------------------------------- AttentionPooling1D

def test_attention_pooling_shape_and_constant_sequence():
    layer = AttentionPooling1D(units=8)
    const = np.tile(RNG.normal(size=(1, 1, 6)).astype("float32"), (3, 7, 1))
    out = np_(layer(const))
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out, const[:, 0], atol=1e-5)  # weights sum to one


def test_attention_pooling_mask_ignores_padding():
    layer = AttentionPooling1D(units=8)
    seq = RNG.normal(size=(1, 5, 4)).astype("float32")
    padded = np.concatenate([seq, 100 * RNG.normal(size=(1, 3, 4)).astype("float32")], axis=1)
    mask = np.array([[True] * 5 + [False] * 3])
    np.testing.assert_allclose(np_(layer(padded, mask=mask)), np_(layer(seq)), atol=1e-5)
    w = np_(layer.attention_weights(padded, mask))
    assert np.all(w[0, 5:] == 0) and w[0, :5].sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_pooling_takes_keras_mask_from_masking_layer():
    inp = keras.Input((None, 4))
    out = AttentionPooling1D(4)(keras.layers.Masking(0.0)(inp))
    model = keras.Model(inp, out)
    seq = RNG.normal(size=(1, 5, 4)).astype("float32")
    padded = np.concatenate([seq, np.zeros((1, 3, 4), "float32")], axis=1)
    np.testing.assert_allclose(np_(model(padded)), np_(model(seq)), atol=1e-5)


# ----------------------------------------------------------------------------- ImageAugment

def _images(n=8, size=16, c=1):
    return (RNG.random((n, size, size, c)) * 255).astype("float32")


def test_augment_identity_at_inference_random_in_training():
    x = _images()
    layer = ImageAugment(seed=1, erase=0.5)
    np.testing.assert_array_equal(np_(layer(x)), x)
    np.testing.assert_array_equal(np_(layer(x, training=False)), x)
    a, b = np_(layer(x, training=True)), np_(layer(x, training=True))
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.abs(a - x).mean() > 1.0 and np.abs(a - b).mean() > 1.0  # a new draw every call
    assert a.min() >= 0.0 and a.max() <= 255.0


def test_augment_is_reproducible_with_a_seed():
    x = _images()
    a = np_(ImageAugment(seed=7)(x, training=True))
    b = np_(ImageAugment(seed=7)(x, training=True))
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_augment_flip_only_mirrors_whole_images():
    x = _images()
    layer = ImageAugment(flip=True, max_shift=0, max_rotation=0, zoom=0, brightness=0, contrast=0,
                         seed=3)
    out = np_(layer(x, training=True))
    flipped = [np.allclose(o, xi[:, ::-1], atol=1e-3) for o, xi in zip(out, x)]
    same = [np.allclose(o, xi, atol=1e-3) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 0 < sum(flipped) < len(x)


def test_augment_shift_moves_content():
    x = np.zeros((8, 16, 16, 1), "float32")
    x[:, 6:10, 6:10] = 255.0  # a bright square in the centre
    layer = ImageAugment(flip=False, max_shift=0.25, max_rotation=0, zoom=0, brightness=0,
                         contrast=0, seed=0)
    out = np_(layer(x, training=True))
    centres = [np.argwhere(o[..., 0] > 127).mean(0) for o in out]
    assert np.std(centres) > 0.5  # squares land in different places
    assert out.sum() == pytest.approx(x.sum(), rel=0.2)  # moved, not destroyed


def test_augment_brightness_only_adds_one_offset_per_image():
    x = np.full((8, 16, 16, 1), 128.0, "float32")
    layer = ImageAugment(flip=False, max_shift=0, max_rotation=0, zoom=0, brightness=0.2, contrast=0,
                         seed=0)
    out = np_(layer(x, training=True))
    per_image = out.reshape(8, -1)
    assert np.allclose(per_image.std(1), 0, atol=1e-3)
    assert np.all(np.abs(per_image[:, 0] - 128) <= 0.2 * 255 + 1e-3)
    assert per_image[:, 0].std() > 1.0


def test_augment_erase_blanks_a_rectangle_with_the_mean():
    x = _images()
    layer = ImageAugment(flip=False, max_shift=0, max_rotation=0, zoom=0, brightness=0, contrast=0,
                         erase=1.0, seed=0)
    out = np_(layer(x, training=True))
    for o, xi in zip(out, x):
        changed = np.any(np.abs(o - xi) > 1e-3, axis=-1)
        rows, cols = np.nonzero(changed)
        assert changed.sum() >= 4
        # the changed pixels form a rectangle filled with the image mean
        box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.9
        np.testing.assert_allclose(o[changed], xi.mean(), rtol=1e-3)


# ----------------------------------------------------------------------------- SpecAugment

def test_specaugment_masks_whole_bands_with_the_mean():
    x = RNG.normal(size=(4, 50, 20)).astype("float32")
    layer = SpecAugment(time_masks=2, time_width=0.1, freq_masks=1, freq_width=0.2, seed=0)
    np.testing.assert_array_equal(np_(layer(x)), x)
    m = np_(layer.masks(x))
    assert m.shape == x.shape and m.dtype == bool
    time_rows = m.all(axis=2)  # (4, 50): frames masked across every feature
    freq_cols = m.all(axis=1)  # (4, 20)
    assert np.all(time_rows.sum(1) <= 2 * 5) and np.all(freq_cols.sum(1) <= 4)
    assert np.all(m == (time_rows[:, :, None] | freq_cols[:, None, :]))  # nothing else masked
    out = np_(layer(x, training=True))
    masked = np.abs(out - x) > 1e-6
    assert masked.any()
    for o, xi, mk in zip(out, x, masked):
        np.testing.assert_allclose(o[mk], xi.mean(), atol=1e-5)


def test_specaugment_without_masks_is_identity():
    x = RNG.normal(size=(4, 50, 20)).astype("float32")
    np.testing.assert_array_equal(np_(SpecAugment(0, 0.1, 0, 0.1)(x, training=True)), x)


# ----------------------------------------------------------------------------- serialisation

@pytest.mark.parametrize("layer", [
    SelfAttention2D(reduction=4, return_attention=True),
    AttentionPooling1D(units=12),
    ImageAugment(flip=False, max_shift=0.05, max_rotation=5, zoom=0.2, brightness=0.1,
                 contrast=0.3, erase=0.25, value_range=(0, 1), seed=4),
    SpecAugment(time_masks=3, time_width=0.2, freq_masks=1, freq_width=0.05, seed=2),
], ids=lambda layer: type(layer).__name__)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # and through the registered name, as safe-mode loading does
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is type(layer) and again.get_config() == config


def test_model_with_all_layers_trains_jit_compiled_and_reloads_in_safe_mode(tmp_path, backend):
    """One small model holding every layer (one compile keeps this fast): it trains with
    ``jit_compile=True`` (none of our layers forces Keras off XLA), and a ``.keras`` save reloads in
    safe mode with equal predictions."""
    img = keras.Input((16, 16, 1), name="image")
    h = keras.layers.Rescaling(1 / 255)(ImageAugment(seed=0, erase=0.3)(img))
    h = SelfAttention2D(2)(keras.layers.Conv2D(4, 3, padding="same", activation="relu")(h))
    seq = keras.Input((10, 6), name="features")
    s = AttentionPooling1D(4)(SpecAugment(seed=0)(seq))
    h = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(h), s])
    model = keras.Model({"image": img, "features": seq}, keras.layers.Dense(3, activation="softmax")(h))
    model.compile("adam", "categorical_crossentropy", jit_compile=True)
    x = {"image": _images(), "features": RNG.normal(size=(8, 10, 6)).astype("float32")}
    y = keras.utils.to_categorical(RNG.integers(0, 3, 8), 3)
    hist = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert model.jit_compile is True
    assert np.isfinite(hist.history["loss"][-1])
    attention = next(la for la in model.layers if isinstance(la, SelfAttention2D))
    assert float(np_(attention.gamma)) != 0.0  # the residual weight is learned
    if backend == "jax":
        auto = keras.Model(model.input, model.output)
        auto.compile("adam", "categorical_crossentropy")  # jit_compile="auto"
        assert auto.jit_compile is True
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np_(loaded.predict(x, verbose=0)), np_(model.predict(x, verbose=0)),
                               atol=1e-6)
