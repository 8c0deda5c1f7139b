"""MultimodalEmotionRecognizer end to end with tiny placeholder models: real CREMA-D clips (VP6 + MP3 in
FLV), audio-only and video-only files, faceless video, late-fusion fallback, class projection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import corpus
from emotion_keras.errors import InputError
from video_fixtures import CLASSES7, CLASSES8, make_video, tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def recognizer(models):
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    return MultimodalEmotionRecognizer(models["fusion"], models["face"], models["speech"])


def _check_probs(p, classes):
    assert list(p) == classes and abs(sum(p.values()) - 1) < 1e-3


def test_cremad_flv_timeline(recognizer, shared_data):
    clip = corpus(shared_data, "cremad_av") / "data" / "1001_DFA_HAP_XX.flv"
    t = recognizer.analyze(clip, window=1.0, hop=0.5, fps=5)
    assert t["media"]["video_codec"].startswith("vp6") and t["modalities"] == ["face", "speech"]
    assert len(t["windows"]) >= 3 and t["windows"][0]["start"] == 0.0
    for w in t["windows"]:
        assert w["modalities"] == ["face", "speech"]  # the actor's face is found in every window
        assert w["face"]["frames"] >= 4 and len(w["face"]["box"]) == 4
        _check_probs(w["face"]["probabilities"], CLASSES7)
        _check_probs(w["speech"]["probabilities"], CLASSES8)
        _check_probs(w["fused"]["probabilities"], CLASSES7)
        assert w["fused"]["method"] == "fusion"
    x, y, bw, bh = t["windows"][0]["face"]["box"]
    assert 120 < x + bw / 2 < 360 and bh > 80  # the face is the centred actor's, not noise
    out = recognizer.predict_file(clip)
    assert out["emotion"] in CLASSES7 and out["modalities"] == ["face", "speech"]


def test_audio_only_and_video_only(recognizer, shared_data, tmp_path):
    mp3 = corpus(shared_data, "cremad_av") / "data" / "1002_DFA_SAD_XX.mp3"
    t = recognizer.analyze(mp3)
    assert t["modalities"] == ["speech"] and all(w["face"] is None for w in t["windows"])
    assert t["windows"][0]["fused"]["method"] == "speech only"
    assert any("no video" in w for w in t["warnings"])
    # a video without audio and without any face: windows are present, marked with no modality
    silent = make_video(tmp_path / "blank.mp4", seconds=1.5, audio=False)
    t = recognizer.analyze(silent)
    assert t["windows"] and all(w["modalities"] == [] and w["fused"] is None for w in t["windows"])
    assert t["emotion"] is None and any("no audio" in w for w in t["warnings"])


def test_bad_file_is_input_error(recognizer, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="broken.mp4"):
        recognizer.predict_file(bad)


def test_late_fusion_fallback_without_fusion_model(models, shared_data, tmp_path):
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    with pytest.warns(UserWarning, match="late fusion"):
        rec = MultimodalEmotionRecognizer(tmp_path / "none", models["face"], models["speech"])
    clip = corpus(shared_data, "cremad_av") / "data" / "1001_DFA_NEU_XX.flv"
    t = rec.analyze(clip)
    w = t["windows"][0]
    assert w["fused"]["method"] == "late fusion"
    from emotion_keras.recognizers.multimodal import project

    face = np.array([w["face"]["probabilities"][c] for c in CLASSES7])
    speech = project(np.array([w["speech"]["probabilities"][c] for c in CLASSES8]), CLASSES8, CLASSES7)
    fused = np.array([w["fused"]["probabilities"][c] for c in CLASSES7])
    np.testing.assert_allclose(fused, 0.5 * face + 0.5 * speech, atol=2e-3)


def test_projection_merges_calm_into_neutral():
    from emotion_keras.recognizers.multimodal import project

    p = np.array([0.1, 0, 0, 0, 0, 0, 0.2, 0.7])
    out = project(p, CLASSES8, CLASSES7)
    assert out.shape == (7,) and out[CLASSES7.index("neutral")] == pytest.approx(0.9)


def test_outputs_csv_contact_sheet_annotated(recognizer, tmp_path):
    import av
    import cv2

    from emotion_keras.recognizers.multimodal import timeline_csv, write_annotated, write_contact_sheet

    clip = make_video(tmp_path / "c.mp4", seconds=2.0)
    t = recognizer.analyze(clip, window=1.0, hop=1.0)
    csv = timeline_csv(t).splitlines()
    assert csv[0].startswith("start,end,modalities") and len(csv) == 1 + len(t["windows"])
    sheet = write_contact_sheet(clip, t, tmp_path / "sheet.jpg")
    assert cv2.imread(str(sheet)).shape[1] == 2 * 320
    ann = write_annotated(clip, t, tmp_path / "ann.mp4", fps=5)
    with av.open(str(ann)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 10


def test_method_late_forces_weighted_average(models, shared_data):
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer

    rec = MultimodalEmotionRecognizer(models["fusion"], models["face"], models["speech"], method="late")
    t = rec.analyze(corpus(shared_data, "cremad_av") / "data" / "1001_DFA_DIS_XX.flv")
    assert {w["fused"]["method"] for w in t["windows"]} == {"late fusion"}
    with pytest.raises(ValueError):
        MultimodalEmotionRecognizer(models["fusion"], models["face"], models["speech"], method="best")


def test_head_warns_when_a_component_model_changed_since_the_fusion_was_trained():
    from types import SimpleNamespace

    from emotion_keras.recognizers.multimodal import _warn_if_retrained

    card = {"face_model": {"name": "face-a", "date": "2026-11-24"}, "speech_model": {"name": "sp", "date": "d1"}}
    same = dict(face=SimpleNamespace(card={"name": "face-a", "date": "2026-11-24"}),
                speech=SimpleNamespace(card={"name": "sp", "date": "d1"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_retrained(card, **same)  # nothing changed: silent
    with pytest.warns(UserWarning, match="face model face-a .* loaded is face-b"):
        _warn_if_retrained(card, face=SimpleNamespace(card={"name": "face-b", "date": "2026-12-02"}),
                           speech=same["speech"])
