"""The shared fit wrapper: learns a separable toy problem, monitors UAR, resumes after a kill."""

import numpy as np
import pytest

from emotion_keras.config import TrainConfig
from emotion_keras.train import class_weights, fit, read_history


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 8)).astype("float32")
    x[np.arange(n), y] += 3.0
    return x, y


def _model():
    import keras

    inp = keras.Input((8,), name="features")
    h = keras.layers.Dense(16, activation="relu", name="embedding")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="probabilities", dtype="float32")(h)
    return keras.Model(inp, out)


def test_class_weights_balance_counts():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[1] == 3 * w[0] and w[2] == 1.0


def test_class_weight_power_softens_the_balance():
    y = np.array([0] * 16 + [1])
    full, root = class_weights(y, 2), class_weights(y, 2, power=0.5)
    assert np.isclose(full[1] / full[0], 16) and np.isclose(root[1] / root[0], 4)
    assert np.isclose((root[0] + root[1]) / 2, 1.0)  # still mean 1
    assert class_weights(y, 2, power=0.0) == {0: 1.0, 1: 1.0}


def test_fit_learns_and_records_history(tmp_path):
    x, y = _data()
    xv, yv = _data(90, 1)
    cfg = TrainConfig(epochs=4, batch_size=32, learning_rate=1e-2, verbose=0, mixed_precision="off")
    out = fit(_model(), x, y, xv, yv, ["angry", "happy", "sad"], cfg, tmp_path)
    assert out["validation"]["accuracy"] > 0.8
    assert "val_uar" in out["history"] and out["epochs_run"] == 4
    assert len(read_history(tmp_path)) == 4 and (tmp_path / "best.weights.h5").exists()


def test_killed_run_resumes_from_last_epoch(tmp_path):
    import keras

    x, y = _data()
    xv, yv = _data(60, 1)
    cfg = TrainConfig(epochs=4, batch_size=32, verbose=0, early_stopping=0, mixed_precision="off")

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg, tmp_path, extra_callbacks=[Kill()])
    out = fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg, tmp_path)
    assert out["epochs_run"] == 2  # epochs 3 and 4 only: the first two were restored
    assert [int(r["epoch"]) for r in read_history(tmp_path)] == [0, 1, 2, 3]


def test_killed_run_refuses_to_resume_under_other_settings(tmp_path):
    """Keras would restore the weights and silently drop the EMA's optimizer state: the rerun is
    refused, naming the setting; more epochs may be asked for; ``--force`` starts over."""
    import keras

    from emotion_keras.commands.common import skip_finished_run
    from emotion_keras.config import ConfigError

    x, y = _data()
    xv, yv = _data(60, 1)
    cfg = TrainConfig(epochs=3, batch_size=32, verbose=0, early_stopping=0, mixed_precision="off")

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg, tmp_path, extra_callbacks=[Kill()])
    with pytest.raises(ConfigError, match=r"other settings \(ema 0.0, now 0.999\).*--force"):
        fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg.replace(ema=0.999), tmp_path)
    out = fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg.replace(epochs=4), tmp_path)
    assert out["epochs_run"] == 3  # resumed after the first epoch, to the four now asked for

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg, tmp_path / "again", extra_callbacks=[Kill()])
    assert not skip_finished_run(tmp_path / "again", force=True)
    out = fit(_model(), x, y, xv, yv, ["a", "b", "c"], cfg.replace(ema=0.999), tmp_path / "again")
    assert out["epochs_run"] == 3 and len(read_history(tmp_path / "again")) == 3


def test_resume_refuses_targets_from_another_teacher(tmp_path):
    """A distillation's teacher shapes every target: a killed run resumes only with the same one;
    a settings file from before teachers were recorded is not held against it."""
    import json

    from emotion_keras.config import ConfigError
    from emotion_keras.train import check_resume

    cfg = TrainConfig(epochs=3)
    check_resume(tmp_path, cfg, {"teacher": "a" * 64})
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "state").write_text("killed here")
    check_resume(tmp_path, cfg.replace(epochs=5), {"teacher": "a" * 64})
    for other in ("b" * 64, None):
        with pytest.raises(ConfigError, match=r"other settings \(teacher 'a+', now .*--force"):
            check_resume(tmp_path, cfg, {"teacher": other})
    settings = json.loads((tmp_path / "fit_settings.json").read_text())
    del settings["teacher"]
    (tmp_path / "fit_settings.json").write_text(json.dumps(settings))
    check_resume(tmp_path, cfg, {"teacher": "b" * 64})
    assert json.loads((tmp_path / "fit_settings.json").read_text())["teacher"] == "b" * 64


def test_fit_epochs_takes_indices_or_distributions_alike():
    # The one fit step train.fit, the tuner's trials and the retrain of the best trial share: class
    # indices are one-hot targets, so both spellings train the same weights from the same seed.
    import keras

    from emotion_keras.train import compile_model, fit_epochs

    x, y = _data(96)
    cfg = TrainConfig(epochs=2, batch_size=32, verbose=0, mixed_precision="off", seed=3)
    weights = []
    for targets in (y, np.eye(3, dtype="float32")[y]):
        keras.utils.set_random_seed(cfg.seed)
        model = _model()
        compile_model(model, cfg, 3)
        keras.utils.set_random_seed(cfg.seed)
        h = fit_epochs(model, x, targets, ["a", "b", "c"], cfg, validation=(x[:32], y[:32]))
        assert len(h.history["loss"]) == 2 and "val_loss" in h.history
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
