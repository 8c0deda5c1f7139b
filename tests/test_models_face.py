"""Face model builder: every backbone builds and predicts, contracts (names, dtypes, inputs) hold,
geometry input matters, a trained model survives save/load in safe mode, nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.config import ConfigError
from emotion_keras.models.face import FaceModelConfig

keras = pytest.importorskip("keras")

from emotion_keras.models.face import build_face_model  # noqa: E402
from emotion_keras.models.layers import ImageAugment, SelfAttention2D  # noqa: E402

RNG = np.random.default_rng(0)
TINY = dict(input_size=32, width=4, depth=3, attention_after=1, embedding_dim=8, dropout=0.1)


def _images(n, cfg):
    return (RNG.random((n, *cfg.image_shape)) * 255).astype("float32")


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """keras.applications must be built from scratch: any download attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args or kwargs}")

    monkeypatch.setattr(keras.utils, "get_file", refuse)
    import keras.src.utils.file_utils as fu

    monkeypatch.setattr(fu, "get_file", refuse)


def _check_contract(model, cfg, n_classes):
    assert model.layers[-1].name == "probabilities" and model.layers[-2].name == "embedding"
    assert model.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("embedding").units == cfg.embedding_dim
    assert tuple(model.input["image"].shape) == (None, *cfg.image_shape)
    assert tuple(model.output.shape) == (None, n_classes)


@pytest.mark.parametrize("backbone,channels", [("vgg", 1), ("resnet", 3)])
def test_cnn_backbones_build_and_predict(backbone, channels):
    cfg = FaceModelConfig(backbone=backbone, channels=channels, **TINY)
    model = build_face_model(cfg, ["anger", "happiness", "neutral", "sadness"])
    _check_contract(model, cfg, 4)
    probs = model.predict({"image": _images(3, cfg)}, verbose=0)
    assert probs.shape == (3, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    att = model.get_layer("attention")
    assert isinstance(att, SelfAttention2D) and float(keras.ops.convert_to_numpy(att.gamma)) == 0.0
    # attention follows block attention_after=1: its input is that block's output
    assert att.input.shape[1] == 32 // 4


@pytest.mark.parametrize("backbone", ["mobilenetv3small", "efficientnetv2b0"])
def test_application_backbones_build_offline(backbone):
    if backbone == "efficientnetv2b0" and keras.backend.backend() == "jax":
        pytest.skip("JAX compiles a random initialiser per weight shape (~40 s of CPU for "
                    "EfficientNetV2B0); built and run under TensorFlow, MobileNetV3 covers JAX")
    # with a centre crop (the FER recipe's 40 px of 48): the backbone is built for the cropped side
    cfg = FaceModelConfig(backbone=backbone, channels=1, input_size=40, crop=32, attention=False,
                          embedding_dim=8)
    model = build_face_model(cfg, 3)
    _check_contract(model, cfg, 3)
    assert model.get_layer("grey_to_rgb").output.shape[1:3] == (32, 32)
    assert model.get_layer("grey_to_rgb").output.shape[-1] == 3
    assert model.count_params() > 500_000  # the real architecture, randomly initialised
    if keras.backend.backend() == "tensorflow":  # one predict per backbone is enough (JAX jit is slow)
        probs = model.predict({"image": _images(2, cfg)}, verbose=0)
        assert probs.shape == (2, 3)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_geometry_input_is_named_and_used():
    cfg = FaceModelConfig(backbone="vgg", channels=1, geometry=True, geometry_dim=6, augment=False,
                          **TINY)
    model = build_face_model(cfg, 3)
    assert sorted(model.input) == ["geometry", "image"]
    assert tuple(model.input["geometry"].shape) == (None, 6)
    image = _images(2, cfg)
    a = model.predict({"image": image, "geometry": np.zeros((2, 6), "float32")}, verbose=0)
    b = model.predict({"image": image, "geometry": RNG.normal(size=(2, 6)).astype("float32") * 5},
                      verbose=0)
    assert np.abs(a - b).max() > 1e-4
    assert "augment" not in [layer.name for layer in model.layers]


def test_geometry_dim_defaults_to_the_preprocessing_constant():
    face_align = pytest.importorskip("emotion_keras.preprocess.face_align")
    cfg = FaceModelConfig(geometry=True)
    assert cfg.resolved_geometry_dim() == face_align.GEOMETRY_DIM > 0


def test_mixed_precision_keeps_pixels_and_softmax_in_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_face_model(FaceModelConfig(**TINY), 3)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(model.get_layer("augment"), ImageAugment)
    assert model.get_layer("augment").compute_dtype == "float32"
    assert model.get_layer("attention").compute_dtype == "bfloat16"
    assert model.get_layer("probabilities").compute_dtype == "float32"


def test_train_then_save_and_load_in_safe_mode(tmp_path):
    """A small attention + geometry model trains a few steps (augmentation on; jit-compiled under
    JAX), then the model store round-trips it with identical predictions."""
    from emotion_keras.models import store

    cfg = FaceModelConfig(backbone="vgg", channels=1, geometry=True, geometry_dim=5, erase=0.2, **TINY)
    model = build_face_model(cfg, 3)
    x = {"image": _images(16, cfg), "geometry": RNG.normal(size=(16, 5)).astype("float32")}
    y = keras.utils.to_categorical(RNG.integers(0, 3, 16), 3)
    # jit on JAX (as on any GPU); TF's XLA compile on CPU is slow and test_layers covers it
    jit = keras.backend.backend() == "jax"
    model.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy", jit_compile=jit or "auto")
    before = model.predict(x, verbose=0)
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert model.jit_compile is jit and np.isfinite(hist.history["loss"]).all()
    gamma = float(keras.ops.convert_to_numpy(model.get_layer("attention").gamma))
    assert gamma != 0.0
    after = model.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-4
    store.save(model, tmp_path / "face", {"task": "face", "classes": ["a", "b", "c"],
                                          "model_config": cfg.to_dict()})
    loaded, card = store.load(tmp_path / "face")
    assert FaceModelConfig.from_dict(card["model_config"]) == cfg
    np.testing.assert_allclose(loaded.predict(x, verbose=0), after, atol=1e-6)


# ------------------------------------------------------------------------------------ config

def test_config_round_trips_through_json(tmp_path):
    cfg = FaceModelConfig(backbone="resnet", input_size=64, channels=3, attention_after=-1,
                          geometry=True, max_rotation=15.0)
    cfg.save(tmp_path / "c.json")
    assert FaceModelConfig.load(tmp_path / "c.json") == cfg


@pytest.mark.parametrize("bad,match", [
    (dict(backbone="alexnet"), "backbone"),
    (dict(channels=2), "channels"),
    (dict(input_size=300), "input_size"),
    (dict(depth=4, attention_after=4), "attention_after"),
    (dict(input_size=32, depth=6), "depth"),
    (dict(dropout=1.0), "dropout"),
    (dict(colour=True), "unknown keys"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        FaceModelConfig.from_dict(bad)


def test_needs_two_classes():
    with pytest.raises(ConfigError, match="2 classes"):
        build_face_model(FaceModelConfig(**TINY), ["happiness"])
