"""The recogniser base: from_preset through the one registry, storing constructors, predict_proba's
batching, predict_files for every modality, and the multimodal recogniser composed of the two others."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ROOT
from emotion_keras.models.store import ModelLoadError

MODELS = ROOT / "saved_models"
SAMPLES = ROOT / "samples"

pytestmark = pytest.mark.skipif(not all((MODELS / t / "model.keras").exists() for t in ("face", "speech", "fusion")),
                                reason="needs the shipped face, speech and fusion models")


@pytest.fixture(scope="module")
def face():
    from emotion_keras.recognizers.base import Recognizer

    return Recognizer.from_preset("face")


@pytest.fixture(scope="module")
def speech():
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    return SpeechEmotionRecognizer.from_preset()


def test_from_preset_resolves_names_and_folders_and_dispatches_on_the_task(face, speech, tmp_path):
    import emotion_keras
    from emotion_keras.recognizers.base import Recognizer

    assert type(face) is emotion_keras.FaceEmotionRecognizer and face.model_dir == MODELS / "face"
    assert type(speech) is emotion_keras.SpeechEmotionRecognizer and speech.card["task"] == "speech"
    by_folder = Recognizer.from_preset(MODELS / "speech", stream_seconds=5.0)  # a folder: the card's task
    assert type(by_folder) is type(speech) and by_folder.stream_seconds == 5.0
    assert emotion_keras.Recognizer is Recognizer
    with pytest.raises(ModelLoadError, match="neither a preset"):
        Recognizer.from_preset(tmp_path / "nothing")
    with pytest.raises(ModelLoadError, match="a face model, not a speech model"):
        emotion_keras.SpeechEmotionRecognizer.from_preset(MODELS / "face")
    with pytest.raises(ModelLoadError, match="not a speech model"):
        emotion_keras.SpeechEmotionRecognizer(MODELS / "face")  # the folder shorthand checks it too


def test_the_registry_follows_EMOTION_KERAS_MODELS(tmp_path, monkeypatch):
    import shutil

    from emotion_keras.models import store

    shutil.copytree(MODELS / "speech", tmp_path / "speech")
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(tmp_path))
    assert store.resolve("speech") == tmp_path / "speech"
    assert store.resolve(MODELS / "face") == MODELS / "face"
    from emotion_keras.recognizers.base import Recognizer

    assert Recognizer.from_preset("speech").model_dir == tmp_path / "speech"


def test_constructors_only_store(face, monkeypatch):
    from emotion_keras.models import store
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    def no_loading(*a, **k):
        raise AssertionError("the storing constructor loaded something")

    monkeypatch.setattr(store, "load", no_loading)
    monkeypatch.setattr(store, "read_card", no_loading)
    again = FaceEmotionRecognizer(net=face.net, card=face.card, preprocessor=face.preprocessor, model=face.model)
    assert again.net is face.net and again.card is face.card and again.preprocessor is face.preprocessor
    assert again.model_dir is None and again.classes == face.classes
    assert again.predict_file(SAMPLES / "face.jpg")["faces"] == face.predict_file(SAMPLES / "face.jpg")["faces"]


def test_predict_proba_is_the_array_api_of_face_and_speech(face, speech):
    from emotion_keras.preprocess.audio import load_audio

    crops = np.random.default_rng(0).integers(0, 255, (5, *face.prep.shape)).astype(np.uint8)
    p = face.predict_proba(crops)
    assert p.shape == (5, len(face.classes)) and np.allclose(p.sum(1), 1, atol=1e-4)
    np.testing.assert_allclose(p, face.classify_crops(list(crops)), atol=1e-6)
    assert face.predict_proba(crops[:0]).shape == (0, len(face.classes))
    x, _ = speech.preprocessor(load_audio(SAMPLES / "speech.wav", speech.config.sr))
    x = {k: np.concatenate([v] * 4) for k, v in x.items()}  # more windows than a small batch
    whole = speech.predict_proba(x)
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    small = SpeechEmotionRecognizer(net=speech.net, card=speech.card, preprocessor=speech.preprocessor,
                                    batch_size=3)
    calls = []
    original = speech.net.probabilities

    def counting(chunk):
        calls.append(len(chunk["features"]))
        return original(chunk)

    small.net = type("Counting", (), {"probabilities": staticmethod(counting), "input_names": speech.net.input_names,
                                      "input_shapes": speech.net.input_shapes})()
    np.testing.assert_allclose(small.predict_proba(x), whole, atol=1e-5)
    assert calls and max(calls) == 3 and all(c in (1, 2, 3) for c in calls)  # padded to 1, 2 or 3 only
    if "prosody" in speech.input_names:  # the bare array is "features": not enough for a prosody model
        with pytest.raises(ValueError, match="prosody.*not .features. alone"):
            speech.predict_proba(x["features"])
    else:
        np.testing.assert_allclose(speech.predict_proba(x["features"]), whole)


def test_predict_files_for_every_modality(face, speech, tmp_path):
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    fused = MultimodalEmotionRecognizer.from_dir()
    out = list(fused.predict_files([SAMPLES / "clip.flv", bad]))
    assert out[0]["file"] == str(SAMPLES / "clip.flv") and out[0]["emotion"] in fused.classes
    assert out[1]["file"] == str(bad) and "error" in out[1]
    assert [("error" in r) for r in face.predict_files([SAMPLES / "face.jpg", bad])] == [False, True]
    assert [("error" in r) for r in speech.predict_files([SAMPLES / "speech.wav", bad])] == [False, True]


def test_multimodal_is_composed_of_the_face_and_speech_recognisers(monkeypatch):
    from emotion_keras.models import store
    from emotion_keras.recognizers.face import FaceEmotionRecognizer
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    loaded = []
    original = store.load

    def counting(directory, *a, **k):
        loaded.append(str(directory))
        return original(directory, *a, **k)

    monkeypatch.setattr(store, "load", counting)
    rec = MultimodalEmotionRecognizer()
    assert sorted(loaded) == sorted(str(MODELS / t) for t in ("face", "speech", "fusion"))  # each model once
    assert isinstance(rec.face, FaceEmotionRecognizer) and isinstance(rec.speech, SpeechEmotionRecognizer)
    assert rec.face_classes == rec.face.classes and rec.fusion is rec.net and rec.classes == rec.card["classes"]
    # the stored form: the same parts give the same timeline, and the fusion head is a predict_proba
    again = MultimodalEmotionRecognizer(face=rec.face, speech=rec.speech, net=rec.net, card=rec.card, method="head")
    t = again.analyze(SAMPLES / "clip.flv")
    w = t["windows"][0]
    assert w["fused"]["method"] == "fusion"
    emb = [e for e in again.embed(SAMPLES / "clip.flv")][0]
    p = again.predict_proba(again.fusion_inputs(emb["face"], emb["speech"]))[0]
    assert max(abs(p[i] - w["fused"]["probabilities"][c]) for i, c in enumerate(again.classes)) < 1e-3
    late = MultimodalEmotionRecognizer(face=rec.face, speech=rec.speech, card={})
    with pytest.raises(ValueError, match="only late fusion"):
        late.predict_proba(again.fusion_inputs(emb["face"], emb["speech"]))
    assert late.classes == rec.face.classes and late.analyze(SAMPLES / "clip.flv")["windows"][0]["fused"]["method"] \
        == "late fusion"
