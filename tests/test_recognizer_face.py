"""FaceEmotionRecognizer on the shipped model: faces, boxes, probabilities, heatmaps, batching, and the
no-face and bad-input results."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import ROOT
from emotion_keras.errors import InputError

SHIPPED = ROOT / "saved_models" / "face"
SAMPLE = ROOT / "samples" / "face.jpg"

pytestmark = pytest.mark.skipif(not (SHIPPED / "model.keras").exists(),
                                reason="no shipped face model in saved_models/face")


@pytest.fixture(scope="module")
def recognizer():
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    return FaceEmotionRecognizer()


@pytest.fixture(scope="module")
def sample_rgb():
    return cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)


def test_shipped_card(recognizer):
    card = recognizer.card
    assert card["task"] == "face" and recognizer.classes == card["classes"]
    protocol = card["metrics"]["validation"]["protocol"]
    assert "PublicTest" in protocol or "FER2013Valid" in protocol  # FER2013's validation faces
    assert (SHIPPED / "model.keras").stat().st_size <= 20e6


def test_predict_file_one_face(recognizer):
    result = recognizer.predict_file(SAMPLE)
    assert result["file"] == str(SAMPLE) and len(result["faces"]) == 1
    face = result["faces"][0]
    x, y, w, h = face["box"]
    assert 0 <= x < 480 and 0 <= y < 360 and 40 < w < 300 and 40 < h < 300
    probs = face["probabilities"]
    assert list(probs) == recognizer.classes and abs(sum(probs.values()) - 1) < 1e-3
    assert face["emotion"] == max(probs, key=probs.get)
    lx, ly = face["keypoints"]["left_eye"]
    assert x <= lx <= x + w and y <= ly <= y + h


def test_all_faces_in_one_model_call(recognizer, sample_rgb, monkeypatch):
    two = np.concatenate([sample_rgb, sample_rgb[:, ::-1]], axis=1)  # the actor twice, side by side
    calls = []
    original = recognizer.model.predict_on_batch

    def counting(x):
        calls.append(x)
        return original(x)

    monkeypatch.setattr(recognizer.model, "predict_on_batch", counting)
    faces = recognizer.predict(two)
    assert len(faces) == 2 and len(calls) == 1
    assert faces[0]["box"][0] != faces[1]["box"][0]
    # The mirrored face gets (nearly) the mirrored prediction: same preprocessing, same model.
    p0, p1 = (np.array(list(f["probabilities"].values())) for f in faces)
    assert np.abs(p0 - p1).max() < 0.35


def test_heatmaps(recognizer, sample_rgb):
    faces = recognizer.predict(sample_rgb, heatmaps=True)
    heat = faces[0]["heatmap"]
    size = recognizer.prep.size
    assert heat.shape == (size, size) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0
    assert faces[0]["crop"].shape == recognizer.prep.shape


def test_no_face_and_crops_and_bad_input(recognizer, sample_rgb, tmp_path):
    assert recognizer.predict(np.full((300, 400, 3), 127, np.uint8)) == []
    # A small image is a face crop already (the preprocessing rule): classified whole.
    crop = recognizer.predict(cv2.resize(sample_rgb[60:210, 160:280], (48, 48))[..., 0])
    assert len(crop) == 1 and crop[0]["cropped"] and crop[0]["box"] == [0, 0, 48, 48]
    assert recognizer.classify_crops([sample_rgb[60:210, 160:280]]).shape == (1, len(recognizer.classes))
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="bad.jpg"):
        recognizer.predict_file(bad)
    with pytest.raises(InputError):
        recognizer.predict(np.zeros((5,), np.uint8))
