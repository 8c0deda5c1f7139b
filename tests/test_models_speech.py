"""Speech model builder: every architecture, the naming contract, SpecAugment, save/load (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.config import ConfigError
from emotion_keras.models.speech import ARCHITECTURES, SpeechModelConfig, build_speech_model

SHAPE = (32, 16)  # (frames, features): tiny, so JAX compiles quickly
TINY = dict(filters=4, conv_blocks=2, rnn_units=8, attention_units=8, d_model=16, heads=2, layers=1,
            ff_dim=16, embedding_dim=16)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_contract(arch, tmp_path):
    import keras

    from emotion_keras.models import store

    model = build_speech_model(SpeechModelConfig(architecture=arch, **TINY), 5, SHAPE)
    assert [t.name.split(":")[0] for t in model.inputs] == ["features"]
    assert model.layers[-1].name == "probabilities" and model.get_layer("embedding") is not None
    # the embedding feeds the classifier directly (the multi-shrinkage lda: through one head per value)
    heads = [la.name for la in model.layers[model.layers.index(model.get_layer("embedding")) + 1:-1]]
    assert heads == ([f"lda{i}" for i in range(4)] if arch == "lda" else []), heads
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype("float32")
    p = np.asarray(model({"features": x}, training=False))  # eager: no whole-model compile
    assert p.shape == (3, 5) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert keras.backend.standardize_dtype(model.get_layer("probabilities").compute_dtype) == "float32"
    store.save(model, tmp_path / arch, {"task": "speech", "classes": list("abcde")})
    loaded, card = store.load(tmp_path / arch)  # safe mode: only registered layers
    assert np.allclose(np.asarray(loaded({"features": x}, training=False)), p, atol=1e-5)
    assert card["parameters"] == model.count_params()


def test_lstm_and_embedding_output():
    import keras

    model = build_speech_model(SpeechModelConfig(rnn="lstm", **TINY), ["angry", "sad"], SHAPE)
    assert model.get_layer("bilstm") is not None
    emb = keras.Model(model.inputs, model.get_layer("embedding").output)
    assert tuple(emb({"features": np.zeros((2, *SHAPE), "float32")}).shape) == (2, 16)


def test_specaugment_only_in_training():
    import keras

    model = build_speech_model(SpeechModelConfig(architecture="cnn1d", time_masks=2, time_width=0.5,
                                                 **TINY), 3, SHAPE)
    layer = model.get_layer("spec_augment")
    x = keras.ops.convert_to_tensor(np.random.default_rng(1).standard_normal((4, *SHAPE)).astype("float32"))
    assert np.array_equal(np.asarray(layer(x, training=False)), np.asarray(x))
    masked = np.asarray(layer(x, training=True))
    assert not np.array_equal(masked, np.asarray(x))
    assert masked.shape == tuple(x.shape)


def test_bad_configs():
    with pytest.raises(ConfigError, match="architecture"):
        SpeechModelConfig(architecture="wav2vec")
    with pytest.raises(ConfigError, match="divisible"):
        SpeechModelConfig(d_model=10, heads=4)
    with pytest.raises(ConfigError, match="halve"):
        build_speech_model(SpeechModelConfig(conv_blocks=5), 3, (16, 16))
    with pytest.raises(ConfigError, match="2 classes"):
        build_speech_model(SpeechModelConfig(), 1, SHAPE)
    assert SpeechModelConfig.from_dict(SpeechModelConfig(rnn="lstm").to_dict()).rnn == "lstm"


def test_prosody_second_input_saves_and_loads(tmp_path):
    from emotion_keras.models import store
    from emotion_keras.models.io import input_names, model_feed

    cfg = SpeechModelConfig(architecture="cnn1d", filters=4, conv_blocks=2, embedding_dim=8, prosody_dim=14)
    model = build_speech_model(cfg, 3, (40, 12))
    assert input_names(model) == ["features", "prosody"]
    x = {"features": np.random.default_rng(0).normal(size=(2, 40, 12)).astype("float32"),
         "prosody": np.random.default_rng(1).normal(0, 1, size=(2, 14)).astype("float32")}
    p = np.asarray(model.predict(model_feed(model, x), verbose=0))
    store.save(model, tmp_path / "m", {"task": "speech", "name": "p", "classes": ["a", "b", "c"]})
    again, _ = store.load(tmp_path / "m")
    assert np.allclose(np.asarray(again.predict(model_feed(again, x), verbose=0)), p, atol=1e-5)
    x["prosody"] += 3.0  # the prosody input is used
    assert not np.allclose(np.asarray(model.predict(model_feed(model, x), verbose=0)), p, atol=1e-4)
