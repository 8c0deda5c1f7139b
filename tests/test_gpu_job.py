"""The face GPU job (tuning/gpu_face.py) end to end on CPU with a tiny configuration, so that it works
the first time it meets a GPU: pack real-layout FER+ / FER2013 folders, run, and check what comes back."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tuning"))

import gpu_face  # noqa: E402

FERPLUS_ORDER = ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear"]


def _corpora(tmp_path, n=70):
    rng = np.random.default_rng(0)
    ferplus, fer2013 = tmp_path / "ferplus", tmp_path / "fer2013"
    for folder in ("FER2013Train", "FER2013Valid"):
        d = ferplus / folder
        d.mkdir(parents=True)
        rows = []
        for i in range(n):
            c = i % 7
            img = rng.integers(0, 60, (48, 48), dtype=np.uint8)
            img[5 * c:5 * c + 12] = 220  # the class is where the bright band is
            Image.fromarray(img).save(d / f"fer{i:07d}.png")
            votes = [0] * 10
            votes[c] = 8
            votes[(c + 1) % 7] = 2
            rows.append(f'fer{i:07d}.png,"(0, 0, 48, 48)",{",".join(map(str, votes))}\n')
        (d / "label.csv").write_text("".join(rows))
    for i in range(21):
        lab = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"][i % 7]
        d = fer2013 / "validation" / lab
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(d / f"PublicTest_{i}.jpg")
    return ferplus, fer2013


def test_pack_then_run_writes_models_and_reports(tmp_path):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the GPU job runs under JAX (the GPU machine has no TensorFlow): the JAX pass runs it")
    from emotion_keras.models import store

    ferplus, fer2013 = _corpora(tmp_path)
    arrays = gpu_face.pack(str(ferplus), str(fer2013), tmp_path / "faces.npz")
    with np.load(arrays) as z:
        assert z["x_train"].dtype == np.uint8 and z["y_train"].dtype == np.float16
        assert z["x_train"].shape == (70, 48, 48, 1) and z["y_test"].shape == (21,)
        assert np.allclose(z["y_train"].astype(float).sum(1), 1, atol=1e-2)
    out = tmp_path / "out"
    report = gpu_face.run(arrays, out, minutes=5, tiny=True, epochs=1)
    assert [r["name"] for r in report["rows"]] == ["base", "width32"]
    assert all(0 <= r["fer2013_publictest"]["accuracy"] <= 1 for r in report["rows"])
    model, card = store.load(out / "model_base")
    assert card["classes"] == gpu_face.CLASSES and "fer2013_publictest" in card["metrics"]
    assert model.predict({"image": np.zeros((2, 48, 48, 1), "float32")}, verbose=0).shape == (2, 7)
    # what the device returns: at most 8 files, no deeper than two folders below $OUT
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert json.loads((out / "report.json").read_text())["best"] in ("base", "width32")
    assert "| base |" in (out / "report.md").read_text()
