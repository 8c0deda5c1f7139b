"""Fusion model: builds for each face input and pooling, trains, saves and loads in safe mode, encoders
frozen or fine-tuned, modality dropout, and the late-fusion baseline."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.models.fusion import (FusionConfig, adapt, build_fusion_model, inputs_for, late_fusion,
                                         pad_frames, tune_late_weight)

CLASSES = ["angry", "happy", "sad"]


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    seqs = [rng.normal(size=(rng.integers(0, 12), 8)) + y[i] for i in range(n)]
    frames, mask = pad_frames(seqs, 16, 8)
    return {"face": (rng.normal(size=(n, 35)) + 2 * y[:, None]).astype("f4"),
            "speech": (rng.normal(size=(n, 12)) - 0.5 * y[:, None]).astype("f4"),
            "face_frames": frames, "face_mask": mask}, y


def test_config_validation():
    with pytest.raises(ConfigError):
        FusionConfig(pooling="max")
    with pytest.raises(ConfigError):
        FusionConfig(modalities=("face", "text"))
    cfg = FusionConfig.from_dict(FusionConfig(modalities=["speech"]).to_dict())
    assert cfg.modalities == ("speech",)


def test_the_head_is_the_default_only_where_it_beats_late_fusion_beyond_noise():
    from emotion_keras.pipelines.fusion import choose_inference

    late = {"uar": 0.708, "n": 3589}  # the shipped card's pseudo-pairs: standard error 0.0076
    assert choose_inference({"uar": 0.712}, late) == "late_fusion"
    assert choose_inference({"uar": 0.72}, late) == "fusion_head"
    assert choose_inference({"uar": 0.72}, {"uar": 0.708, "n": 100}) == "late_fusion"  # 0.045 on 100 pairs
    assert choose_inference({"uar": 0.3}, None) == "fusion_head"  # real clips: no late-fusion baseline


def test_pad_frames_subsamples_and_masks():
    frames, mask = pad_frames([np.ones((3, 4)), np.arange(40).reshape(20, 2).repeat(2, 1), None], 8, 4)
    assert frames.shape == (3, 8, 4) and mask.sum(1).tolist() == [3, 8, 0]
    assert frames[1, 0, 0] == 0 and frames[1, -1, 0] == 38  # first and last frame kept


def test_descriptor_fusion_trains_saves_loads(tmp_path):
    from emotion_keras.models import store
    from emotion_keras.train import fit

    x, y = _data()
    cfg = FusionConfig(face_input="descriptor", face_dim=35, speech_dim=12, projection=16, hidden=16,
                       embedding_dim=8)
    model = build_fusion_model(cfg, CLASSES)
    xi = inputs_for(cfg, x)
    adapt(model, xi)
    result = fit(model, xi, y, xi, y, CLASSES, TrainConfig(epochs=10, batch_size=8, learning_rate=1e-2,
                                                                      warmup_epochs=0, verbose=0), tmp_path / "run")
    assert result["validation"]["accuracy"] > 0.5
    assert model.get_layer("embedding").output.shape[-1] == 8
    store.save(model, tmp_path / "m", {"task": "fusion", "classes": CLASSES, "model_config": cfg.to_dict()})
    loaded, card = store.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(xi, verbose=0), model.predict(xi, verbose=0), atol=1e-5)
    assert FusionConfig.from_dict(card["model_config"]) == cfg


@pytest.mark.parametrize("pooling", ["attention", "gru"])
def test_frame_pooling_handles_empty_windows(pooling, tmp_path):
    from emotion_keras.models import store

    x, _ = _data(n=8)
    x["face_mask"][0] = 0  # a window with no face at all
    x["face_frames"][0] = 0
    cfg = FusionConfig(face_dim=8, speech_dim=12, pooling=pooling, projection=8, hidden=8, embedding_dim=8,
                       recurrent_units=8)
    model = build_fusion_model(cfg, CLASSES)
    xi = inputs_for(cfg, x)
    adapt(model, xi)
    p = model.predict(xi, verbose=0)
    assert p.shape == (8, 3) and np.all(np.isfinite(p)) and np.allclose(p.sum(1), 1, atol=1e-5)
    store.save(model, tmp_path / pooling, {"task": "fusion"})
    loaded, _ = store.load(tmp_path / pooling)
    np.testing.assert_allclose(loaded.predict(xi, verbose=0), p, atol=1e-5)


def test_modality_dropout_only_in_training():
    import keras

    from emotion_keras.models.fusion import _layers

    ModalityDropout, _ = _layers()
    layer = ModalityDropout(0.45, seed=1)
    a, b = np.ones((400, 4), "f4"), np.ones((400, 4), "f4")
    ta, tb = layer([a, b], training=True)
    ta, tb = keras.ops.convert_to_numpy(ta), keras.ops.convert_to_numpy(tb)
    blank_a, blank_b = (ta.sum(1) == 0), (tb.sum(1) == 0)
    assert 0.25 < (blank_a | blank_b).mean() < 0.65 and not np.any(blank_a & blank_b)
    ia, ib = layer([a, b], training=False)
    assert keras.ops.convert_to_numpy(ia).min() == 1 and keras.ops.convert_to_numpy(ib).min() == 1


def test_end_to_end_encoders_frozen_or_finetuned():
    import keras

    inp = keras.Input((24, 24, 1), name="image")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    e = keras.layers.Dense(8, name="embedding")(h)
    face = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probabilities")(e))
    sinp = keras.Input((20, 6), name="features")
    se = keras.layers.Dense(8, name="embedding")(keras.layers.GlobalAveragePooling1D()(sinp))
    speech = keras.Model(sinp, keras.layers.Dense(3, activation="softmax", name="probabilities")(se))
    encoder_weights = sum(int(np.prod(w.shape)) for w in face.trainable_weights[:-2] + speech.trainable_weights[:-2])

    frozen = build_fusion_model(FusionConfig(max_frames=4, projection=8, hidden=8, embedding_dim=8), CLASSES,
                                face_model=face, speech_model=speech)
    assert sorted(i.name for i in frozen.inputs) == ["face_images", "face_mask", "features"]
    tuned = build_fusion_model(FusionConfig(max_frames=4, projection=8, hidden=8, embedding_dim=8,
                                            finetune=True), CLASSES, face_model=face, speech_model=speech)
    count = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    assert count(tuned) - count(frozen) == encoder_weights
    x = {"face_images": np.random.uniform(0, 255, (2, 4, 24, 24, 1)).astype("f4"),
         "face_mask": np.ones((2, 4), "f4"), "features": np.zeros((2, 20, 6), "f4")}
    assert frozen.predict(x, verbose=0).shape == (2, 3)


def test_late_fusion_baseline():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    onehot = np.eye(3)[y]
    p_face = 0.55 * onehot + 0.45 * rng.dirichlet([1, 1, 1], 300)  # the more reliable modality
    p_speech = 0.25 * onehot + 0.75 * rng.dirichlet([1, 1, 1], 300)
    w, score = tune_late_weight(p_face, p_speech, y, CLASSES)
    assert w >= 0.5 and score >= 0.9
    fused = late_fusion(p_face, p_speech, 0.3)
    np.testing.assert_allclose(fused, 0.3 * p_face + 0.7 * p_speech, atol=1e-6)
    p_face[0] = np.nan  # a window without a face falls back to speech
    np.testing.assert_allclose(late_fusion(p_face, p_speech, 0.3)[0], p_speech[0], atol=1e-6)


def test_pseudo_pairs_match_labels():
    from emotion_keras.pipelines.fusion import pseudo_pairs

    rng = np.random.default_rng(0)
    face = {"embedding": rng.normal(size=(30, 6)).astype("f4"),
            "labels": np.array(["happy", "sad", "disgust"] * 10)}
    speech = {"embedding": np.repeat(np.arange(4)[:, None], 5, 1).astype("f4"),
              "labels": np.array(["happy", "sad", "calm", "happy"])}
    x, y, keep = pseudo_pairs(face, speech, ["happy", "sad"], seed=0)
    assert len(y) == len(keep) == 20  # disgust has no speech partner: left out
    assert x["face_frames"].shape == (20, 16, 6) and set(x["face_mask"].sum(1)) <= set(range(3, 14))
    for i in range(20):  # each face's partner speech window has its label
        partner = int(x["speech"][i, 0])
        assert speech["labels"][partner] == ["happy", "sad"][y[i]]
        assert face["labels"][keep[i]] == ["happy", "sad"][y[i]]


def test_saved_fusion_model_loads_in_a_fresh_process(tmp_path, backend):
    """Custom layers must be registered by ``store.load`` itself, not by having built a model before."""
    import os
    import subprocess
    import sys

    from emotion_keras.models import store

    cfg = FusionConfig(face_dim=4, speech_dim=4, projection=4, hidden=4, embedding_dim=4, pooling="mean",
                       normalize=False)
    store.save(build_fusion_model(cfg, CLASSES), tmp_path / "m", {"task": "fusion"})
    code = ("from emotion_keras.models import store; m, _ = store.load(r'%s'); "
            "print(sorted(l.__class__.__name__ for l in m.layers))" % (tmp_path / "m"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": backend}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ModalityDropout" in out.stdout and "MaskedMean" in out.stdout


def test_train_fusion_says_which_data_its_pairs_need():
    # The library raises a ConfigError naming the missing arguments (the CLI checks them first and
    # exits as it always has); nothing is read before the check.
    from emotion_keras.pipelines.fusion import FusionTrainSettings, train_fusion

    with pytest.raises(ConfigError, match="--face-data and --speech-data"):
        train_fusion(FusionTrainSettings(pairs="pseudo", face_data="fer2013:/nowhere"))
    with pytest.raises(ConfigError, match="needs --data"):
        train_fusion(FusionTrainSettings(pairs="real", face_dir="/nowhere", speech_dir="/nowhere"))


def test_fusion_train_cli_exits_as_before_without_its_data(capsys):
    from emotion_keras.cli import main

    with pytest.raises(SystemExit, match="--pairs pseudo needs --face-data and --speech-data"):
        main(["fusion", "train", "--pairs", "pseudo", "--face-data", "fer2013:/nowhere"])
    with pytest.raises(SystemExit, match="fusion train needs --data"):
        main(["fusion", "train"])
