"""Explanations: hand-set models whose right answer is known (attention on the brightest pixel,
Grad-CAM on the evidence for each class), plus the contract on real face models."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from emotion_keras import explain  # noqa: E402
from emotion_keras.models.face import FaceModelConfig, build_face_model  # noqa: E402
from emotion_keras.models.layers import SelfAttention2D  # noqa: E402

H, W = 12, 20  # not square: a transposed map would show


def _bright_spot(n=2):
    x = np.full((n, H, W, 1), 10.0, "float32")
    spots = [(3, 15), (9, 4)][:n]
    for i, (r, c) in enumerate(spots):
        x[i, r, c] = 255.0
    return x, spots


def _set(layer, **weights):
    for name, value in weights.items():
        getattr(layer, name).assign(np.asarray(value, "float32"))


def test_attention_map_points_at_what_every_query_attends_to():
    """Key = 10 * pixel, constant query: every position attends to the brightest pixel."""
    image = keras.Input((H, W, 1), name="image")
    h = keras.layers.Rescaling(1 / 255)(image)
    h = SelfAttention2D(reduction=1, name="attention")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(2, name="embedding")(h)
    model = keras.Model({"image": image}, keras.layers.Dense(2, activation="softmax",
                                                             name="probabilities")(h))
    _set(model.get_layer("attention"), query_kernel=[[0.0]], query_bias=[1.0],
         key_kernel=[[10.0]], key_bias=[0.0])
    x, spots = _bright_spot()
    maps = explain.attention_map(model, {"image": x})
    assert maps.shape == (2, H, W) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for m, spot in zip(maps, spots):
        assert np.unravel_index(m.argmax(), m.shape) == spot
    np.testing.assert_array_equal(explain.heatmap(model, {"image": x}), maps)  # attention wins


def _evidence_model():
    """Channel 0 = brightness, channel 1 = darkness; class 0 <- brightness, class 1 <- darkness."""
    image = keras.Input((H, W, 1), name="image")
    h = keras.layers.Rescaling(1 / 255)(image)
    h = keras.layers.Conv2D(2, 1, activation="relu", name="features")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(2, name="embedding")(h)
    model = keras.Model({"image": image}, keras.layers.Dense(2, activation="softmax",
                                                             name="probabilities")(h))
    _set(model.get_layer("features"), kernel=[[[[1.0, -1.0]]]], bias=[0.0, 1.0])
    _set(model.get_layer("embedding"), kernel=np.eye(2), bias=[0.0, 0.0])
    _set(model.get_layer("probabilities"), kernel=[[5.0, -5.0], [-5.0, 5.0]], bias=[0.0, 0.0])
    return model


def test_grad_cam_highlights_the_evidence_for_the_asked_class():
    model = _evidence_model()
    x, spots = _bright_spot()
    bright = explain.grad_cam(model, {"image": x}, class_index=0)
    dark = explain.grad_cam(model, {"image": x}, class_index=1, layer_name="features")
    assert bright.shape == dark.shape == (2, H, W) and bright.dtype == np.float32
    for b, d, (r, c) in zip(bright, dark, spots):
        assert np.unravel_index(b.argmax(), b.shape) == (r, c)
        assert b[r, c] == 1.0 and np.median(b) == 0.0
        assert d[r, c] < 0.5 and np.median(d) == 1.0
    # default class: the prediction (mostly dark images -> class 1)
    np.testing.assert_allclose(explain.grad_cam(model, x), dark, atol=1e-6)
    np.testing.assert_allclose(explain.heatmap(model, x), dark, atol=1e-6)


def test_single_image_gets_a_batch_of_one():
    model = _evidence_model()
    x, (spot, _) = _bright_spot()
    maps = explain.grad_cam(model, x[0], class_index=0)
    assert maps.shape == (1, H, W)
    assert np.unravel_index(maps[0].argmax(), (H, W)) == spot
    maps = explain.grad_cam(model, x[0, :, :, 0], class_index=0)  # grey without channel axis
    assert maps.shape == (1, H, W)


@pytest.mark.parametrize("kwargs", [
    dict(backbone="vgg", attention=True, geometry=True, geometry_dim=4),
    dict(backbone="resnet", attention=False, channels=3),
])
def test_face_models_give_unit_range_maps_at_input_size(kwargs):
    cfg = FaceModelConfig(**{**dict(input_size=32, width=4, depth=3, attention_after=1,
                                    embedding_dim=8), **kwargs})
    model = build_face_model(cfg, 3)
    rng = np.random.default_rng(0)
    x = {"image": (rng.random((2, *cfg.image_shape)) * 255).astype("float32")}
    if cfg.geometry:
        x["geometry"] = rng.normal(size=(2, 4)).astype("float32")
    maps = explain.heatmap(model, x)
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    assert maps.max() == 1.0  # not flat
    if not cfg.attention:
        with pytest.raises(ValueError, match="no SelfAttention2D"):
            explain.attention_map(model, x)
    else:
        cam = explain.grad_cam(model, x, layer_name="attention")
        assert cam.shape == (2, 32, 32)
        with pytest.raises(ValueError, match="geometry"):
            explain.heatmap(model, {"image": x["image"]})


def test_overlay_blends_a_colour_map_over_grey_or_rgb():
    heat = np.zeros((12, 20), np.float32)
    heat[:, 10:] = 1.0
    grey = np.full((24, 40), 100, np.uint8)  # heat is resized to the image
    out = explain.overlay(grey, heat)
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    cold, hot = out[:, :15].reshape(-1, 3).mean(0), out[:, 25:].reshape(-1, 3).mean(0)
    assert cold[2] > cold[0] and hot[0] > hot[2]  # JET: blue where 0, red where 1 (RGB order)
    rgb = explain.overlay(np.zeros((12, 20, 3), np.float32) + 0.5, heat)  # [0, 1] floats accepted
    assert rgb.shape == (12, 20, 3) and rgb.dtype == np.uint8
