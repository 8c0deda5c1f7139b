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
    # FER2013 Training as Kaggle's JPEG folders: the first 60 FER+ faces under FER2013's own label
    # (here the FER+ majority's neighbour class), in another order and name, plus 5 faces FER+ lacks
    train = ferplus / "FER2013Train"
    for i in range(60):
        d = fer2013 / "train" / FERPLUS_ORDER[(i + 1) % 7]
        d.mkdir(parents=True, exist_ok=True)
        Image.open(train / f"fer{i:07d}.png").save(d / f"Training_{9000 - i}.jpg", quality=90)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(fer2013 / "train" / "happy" /
                                                                             f"Training_{i}.jpg")
    for i in range(21):
        lab = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"][i % 7]
        d = fer2013 / "validation" / lab
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(d / f"PublicTest_{i}.jpg")
    return ferplus, fer2013


def test_faces_travel_within_two_grey_levels():
    x = np.random.default_rng(0).integers(0, 256, (50, 48, 48, 1), dtype=np.uint8)
    x[:, :, :24] = 255  # flat runs, where the differences are 0
    back = gpu_face.decode_faces(gpu_face.encode_faces(x))
    assert back.dtype == np.uint8 and back.shape == x.shape
    assert np.abs(back.astype(int) - x).max() <= 2


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
        first = np.asarray(Image.open(ferplus / "FER2013Train" / "fer0000000.png"), int)
        decoded = gpu_face.decode_faces(z["x_train"])[:, :, :, 0].astype(int)
        assert np.abs(decoded - first).reshape(70, -1).max(1).min() <= 2  # the face travelled intact
        assert np.allclose(z["y_train"].astype(float).sum(1), 1, atol=1e-2)
        # each FER+ face found among FER2013's JPEGs carries FER2013's label; the other ten, -1
        own = z["y_train_fer2013"]
        assert own.dtype == np.int8 and (own >= 0).sum() == 60
        majority = z["y_train"].astype(float).argmax(1)
        expected = [gpu_face.CLASSES.index(FERPLUS_ORDER[(FERPLUS_ORDER.index(gpu_face.CLASSES[m]) + 1) % 7])
                    for m in majority]
        assert (own[own >= 0] == np.asarray(expected)[own >= 0]).all()
    out = tmp_path / "out"
    report = gpu_face.run(arrays, out, minutes=5, tiny=True, epochs=1)
    assert [(r["name"], r["labels"]) for r in report["rows"]] == [("base", "ferplus"), ("fer2013-width32", "fer2013")]
    assert all(0 <= r["fer2013_publictest"]["accuracy"] <= 1 for r in report["rows"])
    model, card = store.load(out / "model_base")
    assert card["classes"] == gpu_face.CLASSES and "fer2013_publictest" in card["metrics"]
    assert model.predict({"image": np.zeros((2, 48, 48, 1), "float32")}, verbose=0).shape == (2, 7)
    _, own_card = store.load(out / "model_best_fer2013")
    assert own_card["training"]["targets"] == "FER2013 class labels" and "ferplus_valid" in own_card["metrics"]
    assert "FER2013's original labels (60 of 70 matched by pixels" in own_card["metrics"]["validation"]["protocol"]
    # epochs and configurations were chosen on held-out training faces: FER+ Valid and PublicTest chose nothing
    assert "stratified 10% of these training faces held out of training (7, seed 0)" in \
        own_card["metrics"]["validation"]["protocol"]
    assert own_card["metrics"]["fer2013_publictest"]["protocol"] == "ten-crop TTA; chose nothing"
    assert all(0 <= r["held_out"]["accuracy"] <= 1 for r in report["rows"])
    # what the device returns: at most 8 files, no deeper than two folders below $OUT
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    saved = json.loads((out / "report.json").read_text())
    assert saved["best"] == {"ferplus": "base", "fer2013": "fer2013-width32"}
    assert saved["ensemble"]["members"] == ["base", "fer2013-width32"]
    assert "| base |" in (out / "report.md").read_text() and "| mean of base + fer2013-width32 |" in \
        (out / "report.md").read_text()
