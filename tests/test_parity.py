"""Backend parity: a model trained and saved under one backend predicts the same under the other.

The saved ``.keras`` file is the product users get; the dashboard or CLI may run it on a different
backend than the one it was trained on, so the custom layers must compute the same function
everywhere. The other backend runs in a subprocess (Keras picks its backend once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from emotion_keras.models import store  # noqa: E402
from emotion_keras.models.face import FaceModelConfig, build_face_model  # noqa: E402
from emotion_keras.models.layers import AttentionPooling1D, SpecAugment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

OTHER_SIDE = r"""
import json, sys
import numpy as np
from emotion_keras.models import store
jobs = json.loads(sys.argv[1])
for model_dir, inputs, out in jobs:
    model, _ = store.load(model_dir)
    data = dict(np.load(inputs))
    np.save(out, model.predict(data, verbose=0))
import keras
print(keras.backend.backend())
"""


def _speech_model():
    seq = keras.Input((20, 8), name="features")
    h = SpecAugment(seed=0)(seq)
    h = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(h)
    h = AttentionPooling1D(8)(h)
    h = keras.layers.Dense(6, activation="relu", name="embedding")(h)
    out = keras.layers.Dense(3, activation="softmax", dtype="float32", name="probabilities")(h)
    return keras.Model({"features": seq}, out)


@pytest.mark.once  # it runs the other backend itself
def test_saved_models_predict_the_same_on_the_other_backend(tmp_path, backend):
    other = "jax" if backend == "tensorflow" else "tensorflow"
    rng = np.random.default_rng(0)

    cfg = FaceModelConfig(backbone="vgg", input_size=32, channels=1, width=4, depth=3,
                          attention_after=1, embedding_dim=8, geometry=True, geometry_dim=5)
    face = build_face_model(cfg, 3)
    x_face = {"image": (rng.random((12, 32, 32, 1)) * 255).astype("float32"),
              "geometry": rng.normal(size=(12, 5)).astype("float32")}
    face.compile(keras.optimizers.Adam(1e-2), "categorical_crossentropy",
                 jit_compile=backend == "jax" or "auto")
    face.fit(x_face, keras.utils.to_categorical(rng.integers(0, 3, 12), 3), batch_size=6, epochs=1,
             verbose=0)  # trained: BN statistics and attention gamma away from their init
    assert float(keras.ops.convert_to_numpy(face.get_layer("attention").gamma)) != 0.0

    speech = _speech_model()
    x_speech = {"features": rng.normal(size=(12, 20, 8)).astype("float32")}

    jobs = []
    for name, model, x in (("face", face, x_face), ("speech", speech, x_speech)):
        store.save(model, tmp_path / name, {"task": name, "classes": ["a", "b", "c"]})
        np.savez(tmp_path / f"{name}_in.npz", **x)
        jobs.append((str(tmp_path / name), str(tmp_path / f"{name}_in.npz"),
                     str(tmp_path / f"{name}_out.npy")))

    env = {**os.environ, "KERAS_BACKEND": other}
    proc = subprocess.run([sys.executable, "-c", OTHER_SIDE, json.dumps(jobs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == other

    for name, model, x in (("face", face, x_face), ("speech", speech, x_speech)):
        here = model.predict(x, verbose=0)
        there = np.load(tmp_path / f"{name}_out.npy")
        assert there.shape == here.shape
        diff = float(np.abs(there - here).max())
        print(f"{name}: max |{backend} - {other}| = {diff:.2e}")
        assert diff <= 1e-5, f"{name}: {backend} vs {other} differ by {diff}"
