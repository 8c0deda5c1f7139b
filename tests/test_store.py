import json

import numpy as np
import pytest

from emotion_keras.models import store


def _tiny():
    import keras

    inp = keras.Input((4,), name="features")
    out = keras.layers.Dense(2, activation="softmax", name="probabilities")(
        keras.layers.Dense(3, name="embedding")(inp))
    return keras.Model(inp, out)


def test_save_and_load_with_card(tmp_path):
    model = _tiny()
    store.save(model, tmp_path / "m", {"task": "speech", "classes": ["sad", "happy"]})
    loaded, card = store.load(tmp_path / "m")
    x = np.ones((2, 4), "float32")
    assert np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert card["classes"] == ["sad", "happy"] and card["parameters"] == model.count_params()
    assert "keras" in card["versions"] and card["backend"]


def test_saved_files_get_the_umask_mode_not_mkstemps_owner_only(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        d = store.save(_tiny(), tmp_path / "m", {"task": "speech", "classes": ["sad", "happy"]})
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in d.iterdir()} == {"model.keras": 0o644, "card.json": 0o644}


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(store.ModelLoadError, match="no model card"):
        store.load(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"task": "face"}))
    with pytest.raises(store.ModelLoadError, match="model file missing"):
        store.load(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"garbage")
    with pytest.raises(store.ModelLoadError, match="model.keras: could not load"):
        store.load(tmp_path)
