"""The FER training recipe pieces: soft targets through fit, mixup/CutMix batches, SGD + EMA, crops
with ten-crop TTA, XLA by default, and the time budget that sizes epochs and survives a resume."""

import json

import numpy as np
import pytest

from emotion_keras.batches import MixedBatches, mix_batch
from emotion_keras.config import ConfigError, TrainConfig, parse_duration
from emotion_keras.train import as_distributions, fit, hard_labels, read_history, training_record


def _images(n=96, seed=0):
    """Three classes told apart by where a bright square sits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 40, (n, 48, 48, 1)).astype("float32")
    for i, c in enumerate(y):
        x[i, 4 + 14 * c: 18 + 14 * c, 10:38] = 230
    return x, y


def test_targets_and_durations():
    assert as_distributions(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="sum to 1"):
        as_distributions(np.array([[0.5, 0.2, 0.1]]), 3)
    assert hard_labels(np.array([[0.2, 0.8], [0.9, 0.1]])).tolist() == [1, 0]
    assert parse_duration("90m") == 5400 and parse_duration("1.5h") == 5400 and parse_duration(30) == 30
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_mixup_and_cutmix_keep_targets_consistent():
    rng = np.random.default_rng(0)
    x = np.stack([np.full((8, 8, 1), v, np.float32) for v in (0, 100, 200, 250)])
    y = np.eye(4, dtype=np.float32)
    xm, ym = mix_batch(x, y, rng, mixup=0.4)
    assert np.allclose(ym.sum(1), 1) and xm.shape == x.shape
    # mixup: each image is the same blend of two images as its target is of two labels
    lam = ym.max(1)
    assert np.allclose(xm.mean((1, 2, 3)), (ym * np.array([0, 100, 200, 250])).sum(1), atol=1e-3)
    xc, yc = mix_batch({"image": x}, y, np.random.default_rng(3), cutmix=1.0)
    pasted = (xc["image"] != x).any(-1).mean((1, 2))  # share of each image replaced
    assert np.allclose(yc.sum(1), 1) and lam.shape == (4,)
    assert np.allclose(1 - yc[np.arange(4), np.arange(4)], pasted, atol=1e-6)
    batches = MixedBatches(x, y, 3, mixup=0.2)
    assert len(batches) == 1 and batches[0][0].shape == (3, 8, 8, 1)  # remainder dropped: one shape


def test_recipe_trains_with_soft_targets_crop_sgd_ema_mixup(tmp_path):
    import keras

    from emotion_keras.pipelines.face import adapt_batchnorm, predict_arrays
    from emotion_keras.models.face import FaceModelConfig, build_face_model
    from emotion_keras.preprocess.faces import FaceArrays, tta_views

    x, y = _images(192)
    xv, yv = _images(60, 1)
    soft = np.full((len(y), 3), 0.05, np.float32)
    soft[np.arange(len(y)), y] = 0.9
    cfg = FaceModelConfig(width=4, depth=2, attention=False, attention_after=1, crop=40, max_shift=0.08, max_rotation=0,
                          zoom=0, erase=0.2, embedding_dim=16, dropout=0.0)
    model = build_face_model(cfg, 3)
    adapt_batchnorm(model, 36)  # as train_face does: 36 steps cannot move BatchNorm's 0.99 averages
    tc = TrainConfig(epochs=6, batch_size=32, learning_rate=0.05, optimizer="sgd", ema=0.9, mixup=0.2,
                     class_weights=True, verbose=0, mixed_precision="off", early_stopping=0,
                     warmup_epochs=0, label_smoothing=0.0, jit_compile="on")
    out = fit(model, {"image": x}, soft, {"image": xv}, yv, ["a", "b", "c"], tc, tmp_path)
    assert out["validation"]["accuracy"] > 0.6, out["validation"]
    assert isinstance(model.optimizer, keras.optimizers.SGD) and model.optimizer.use_ema
    assert model.jit_compile  # XLA asked for, and the model has no recurrent layer
    arrays = FaceArrays(images=xv.astype(np.uint8), labels=["a"] * len(yv), subjects=[None] * len(yv),
                        names=[str(i) for i in range(len(yv))])
    views = tta_views(arrays.images, "ten_crop", crop=40)
    assert len(views) == 10
    # a corner view shifted by the crop margin: its centre 40 px are the top-left 40 px of the face
    assert np.array_equal(views[1][:, 4:44, 4:44], arrays.images[:, :40, :40])
    p10 = predict_arrays(model, arrays, tta="ten_crop", crop=40)
    assert p10.shape == (len(yv), 3) and np.allclose(p10.sum(1), 1, atol=1e-4)
    assert (p10.argmax(1) == yv).mean() > 0.6


def test_xla_by_default_only_where_it_pays(monkeypatch):
    import keras

    from emotion_keras import train
    from emotion_keras.train import XLA_MIN_STEPS, resolve_jit

    cnn = _tiny_model()
    inp = keras.Input((10, 4), name="features")
    rnn = keras.Model(inp, keras.layers.Dense(3, name="probabilities")(keras.layers.GRU(4)(inp)))
    img = keras.Input((48, 48, 1), name="image")  # the depthwise convolutions of MobileNet / EfficientNet
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.DepthwiseConv2D(3)(img))
    dw = keras.Model(img, keras.layers.Dense(3, name="probabilities")(h))
    auto = TrainConfig()
    if keras.backend.backend() == "jax":  # JAX is always compiled: without jit it runs op by op
        assert resolve_jit(cnn, auto, 1) and resolve_jit(rnn, auto, 1) and resolve_jit(dw, auto, 1)
    else:
        monkeypatch.setattr(train, "_has_gpu", lambda: False)  # on a CPU: TensorFlow is faster without
        assert not resolve_jit(cnn, auto, 10_000) and not resolve_jit(cnn, auto)
        monkeypatch.setattr(train, "_has_gpu", lambda: True)  # on a GPU: long schedules of plain CNNs
        assert resolve_jit(cnn, auto, XLA_MIN_STEPS) and not resolve_jit(cnn, auto, XLA_MIN_STEPS - 1)
        assert not resolve_jit(rnn, auto, 10_000) and not resolve_jit(dw, auto, 10_000)
    assert resolve_jit(rnn, TrainConfig(jit_compile="on"), 10)
    assert not resolve_jit(cnn, TrainConfig(jit_compile="off"), 10_000)


def _tiny_model():
    import keras

    inp = keras.Input((48, 48, 1), name="image")
    h = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(inp))
    h = keras.layers.Dense(8, activation="relu", name="embedding")(h)
    out = keras.layers.Dense(3, activation="softmax", name="probabilities", dtype="float32")(h)
    return keras.Model(inp, out)


def test_time_budget_sizes_epochs_from_measured_steps(tmp_path):
    from emotion_keras.budget import size_epochs

    x, y = _images(128)
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    tc = TrainConfig(batch_size=32, time_budget=120, verbose=0, mixed_precision="off")
    plan = size_epochs(model, x, as_distributions(y, 3), x[:32], tc, 4, tmp_path)
    assert plan["epochs"] > 1 and plan["step_seconds"] > 0
    assert plan["epochs"] * plan["epoch_seconds"] <= 120 * 1.02  # epoch_seconds is rounded
    assert plan["max_epochs"] == 3 * plan["epochs"]  # room to grow if the timed steps were slow
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # timing left no trace
    assert json.loads((tmp_path / "budget.json").read_text())["epochs"] == plan["epochs"]


def test_time_budget_resume_keeps_the_planned_schedule(tmp_path, capsys):
    x, y = _images(128)
    tc = TrainConfig(batch_size=32, time_budget=600, verbose=2, mixed_precision="off", early_stopping=0)
    # a killed run left its plan: the rerun follows it instead of measuring again
    (tmp_path / "budget.json").write_text(json.dumps({"budget_seconds": 600, "batch_size": 32, "epochs": 2,
                                                      "used_seconds": 100.0}))
    res = fit(_tiny_model(), x, y, x[:32], y[:32], ["a", "b", "c"], tc, tmp_path)
    assert res["epochs_run"] == 2 and res["train_config"]["epochs"] == 2
    assert training_record(res) == {"seconds": res["train_seconds"], "epochs_run": 2}  # not a resumed run
    assert "time budget 10 min: 2 epochs planned, up to 2" in capsys.readouterr().err  # Keras counts to the most
    assert json.loads((tmp_path / "budget.json").read_text())["used_seconds"] > 100.0


@pytest.mark.parametrize("epoch_seconds, epochs_run", [(100, 8), (200, 4), (50, 16), (25, 24)])
def test_time_budget_paces_the_cosine_by_the_clock(tmp_path, monkeypatch, epoch_seconds, epochs_run):
    """Planned: 8 epochs of 100 s in 800 s. On a host twice as slow only 4 fit: the rate must still
    come down the whole cosine in those 4, not stop near its peak as a step-counted one would. On
    one twice as fast (the plan was timed while the host was busy) the schedule grows to the 16 that
    fit, up to three times the plan (24 epochs of 25 s leave 200 s unused)."""
    import keras

    from emotion_keras import budget

    clock = {"t": 0.0}
    monkeypatch.setattr(budget, "_clock", lambda: clock["t"])
    seen = []  # the rate the optimizer trained each epoch with
    tick = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda *a: clock.update(t=clock["t"] + epoch_seconds),
        on_epoch_end=lambda *a: seen.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    x, y = _images(64)
    tc = TrainConfig(batch_size=32, time_budget=800, learning_rate=0.01, warmup_epochs=1, verbose=0,
                     mixed_precision="off", early_stopping=0)
    (tmp_path / "budget.json").write_text(json.dumps({"budget_seconds": 800, "batch_size": 32, "epochs": 8,
                                                      "max_epochs": 24}))
    model = _tiny_model()
    res = fit(model, x, y, x[:32], y[:32], ["a", "b", "c"], tc, tmp_path, extra_callbacks=[tick])
    rates = json.loads((tmp_path / "budget.json").read_text())["rates"]
    assert res["epochs_run"] == epochs_run and len(rates) == epochs_run
    assert res["train_config"]["epochs"] == max(8, epochs_run)  # the card records the schedule that ran
    assert rates[0] == pytest.approx(0.005)  # half-way up the one warm-up epoch
    assert all(a > b for a, b in zip(rates[1:], rates[2:])) and rates[1] > 0.009
    assert rates[-1] < 0.1 * 0.01  # annealed by the end of the budget, however many epochs it held
    assert seen == pytest.approx(rates, rel=1e-4)


def test_grown_schedule_resumed_after_a_kill_records_every_epoch(tmp_path, monkeypatch):
    """A plan of 2 epochs whose epochs run in a quarter of the timed pace grows; killed after its
    second epoch and resumed, the card's schedule length counts the epochs before the kill too."""
    import keras

    from emotion_keras import budget

    clock = {"t": 0.0}
    monkeypatch.setattr(budget, "_clock", lambda: clock["t"])
    tick = keras.callbacks.LambdaCallback(on_epoch_begin=lambda *a: clock.update(t=clock["t"] + 100))

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("killed")

    x, y = _images(64)
    tc = TrainConfig(batch_size=32, time_budget=800, verbose=0, mixed_precision="off", early_stopping=0)
    (tmp_path / "budget.json").write_text(json.dumps({"budget_seconds": 800, "batch_size": 32, "epochs": 2,
                                                      "max_epochs": 6}))
    with pytest.raises(KeyboardInterrupt):
        fit(_tiny_model(), x, y, x[:32], y[:32], ["a", "b", "c"], tc, tmp_path, extra_callbacks=[tick, Kill()])
    res = fit(_tiny_model(), x, y, x[:32], y[:32], ["a", "b", "c"], tc, tmp_path, extra_callbacks=[tick])
    assert res["epochs_run"] == 4  # this process's: epochs 3 to 6, up to the cap
    assert res["train_config"]["epochs"] == 6 and len(json.loads((tmp_path / "budget.json").read_text())["rates"]) == 6
    # the card counts the whole run: the two epochs before the kill, their seconds, and says so
    record = training_record(res)
    earlier = sum(r["epoch_seconds"] for r in read_history(tmp_path)[:2])
    assert record["epochs_run"] == 6 and record["resumed"] == {"after_epochs": 2, "epochs": 4,
                                                                "seconds": res["train_seconds"]}
    assert earlier > 0 and record["seconds"] == pytest.approx(res["train_seconds"] + earlier, abs=0.02)


def test_warm_start_copies_a_saved_model_and_refuses_another_architecture(tmp_path):
    import keras
    import pytest

    from emotion_keras.pipelines.face import warm_start
    from emotion_keras.config import ConfigError
    from emotion_keras.models import store
    from emotion_keras.models.face import FaceModelConfig, build_face_model

    cfg = FaceModelConfig(width=4, depth=2, attention=False, attention_after=1, embedding_dim=8, augment=False)
    src = build_face_model(cfg, 3)
    src.save(tmp_path / "model.keras")
    card = {"task": "face", "name": "first", "classes": ["a", "b", "c"], "training": {"epochs_run": 5}}
    (tmp_path / "card.json").write_text(__import__("json").dumps(card))
    keras.utils.set_random_seed(1)
    net = build_face_model(cfg, 3)
    start = warm_start(net, tmp_path, ["a", "b", "c"])
    assert start["name"] == "first" and start["epochs_run"] == 5
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    assert np.allclose(net.predict({"image": x}, verbose=0), src.predict({"image": x}, verbose=0), atol=1e-5)
    with pytest.raises(ConfigError, match="architecture"):
        warm_start(build_face_model(cfg.replace(width=8), 3), tmp_path, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="classes"):
        warm_start(build_face_model(cfg, 3), tmp_path, ["a", "b", "d"])
    assert store.read_card(tmp_path)["name"] == "first"
