"""Preprocessor objects: get_config/from_config round trips, from_card on the shipped cards, and the
same model inputs as the preprocess functions they wrap (what the recognisers computed before)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT
from emotion_keras.config import ConfigError
from emotion_keras.errors import InputError
from emotion_keras.preprocess import audio, speaker_norm
from emotion_keras.preprocess.audio import SpeechFeatureConfig
from emotion_keras.preprocess.faces import FacePrepConfig
from emotion_keras.preprocess.preprocessors import FacePreprocessor, SpeechPreprocessor, from_card

MODELS = ROOT / "saved_models"
SAMPLES = ROOT / "samples"


def _card(task: str) -> dict:
    path = MODELS / task / "card.json"
    if not path.exists():
        pytest.skip(f"no shipped {task} model")
    return json.loads(path.read_text())


def tone(seconds: float, sr: int = 16000, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("pre", [
    FacePreprocessor(),
    FacePreprocessor({"size": 64, "grayscale": False, "geometry": True, "detect": "never"}),
    SpeechPreprocessor(),
    SpeechPreprocessor(SpeechFeatureConfig(feature="mfcc", speaker_norm="speaker"),
                       {"features": {"mean": [0.5] * 120, "var": [2.0] * 120}}),
])
def test_get_config_round_trips_through_json(pre):
    config = json.loads(json.dumps(pre.get_config()))
    again = type(pre).from_config(config)
    assert again == pre and again.get_config() == pre.get_config() and again.config == pre.config
    assert again != type(pre)(type(pre.config)(sr=8000) if isinstance(pre, SpeechPreprocessor)
                              else FacePrepConfig(size=pre.config.size + 8))


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown keys"):
        FacePreprocessor.from_config({"preprocessing": {"size": 48, "colour": "red"}})


@pytest.mark.parametrize("task", ["face", "speech"])
def test_from_card_on_the_shipped_cards(task):
    card = _card(task)
    pre = from_card(card)
    assert pre.task == task and isinstance(pre, {"face": FacePreprocessor, "speech": SpeechPreprocessor}[task])
    assert pre.get_config()["preprocessing"] == card["preprocessing"]  # every field, as saved
    cls = {"face": FacePrepConfig, "speech": SpeechFeatureConfig}[task]
    assert pre.config == cls.from_dict(card["preprocessing"])
    if task == "speech":
        assert pre.speaker_norm_prior == card.get("speaker_norm_prior")
        assert pre.config.input_shape == tuple(card["inputs"]["features"])
    with pytest.raises(ValueError, match="fusion"):
        from_card({**card, "task": "fusion"})


def test_face_preprocessor_matches_the_face_functions():
    import cv2

    from emotion_keras.preprocess.faces import crop_inputs, detect_faces, face_inputs

    pre = FacePreprocessor.from_card(_card("face"))
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLES / "face.jpg")), cv2.COLOR_BGR2RGB)
    got = pre(rgb)
    faces = detect_faces(rgb, pre.config, pre.detector)
    images, geometry = face_inputs(rgb, faces, pre.config)
    assert not got.cropped and len(got.faces) == len(faces) == 1 and got.count == 1
    np.testing.assert_array_equal(got.images, images)
    assert got.geometry is None and geometry is None
    # a small image is a crop by the card's rule: taken whole, no detection
    small = cv2.resize(rgb[60:210, 160:280], (48, 48))
    crop = pre(small[..., 0])  # grey in: replicated to RGB first
    assert crop.cropped and crop.faces == []
    np.testing.assert_array_equal(crop.images, crop_inputs(np.repeat(small[..., :1], 3, 2), pre.config)[0])
    np.testing.assert_array_equal(pre.crops([small[..., 0], rgb[60:210, 160:280]])[:1], crop.images)
    assert pre.crops([]).shape == (0, *pre.config.shape)
    # an image without a face; bad arrays named
    empty = pre(np.full((300, 400, 3), 127, np.uint8))
    assert empty.images is None and empty.count == 0 and not empty.cropped
    with pytest.raises(InputError, match="shape"):
        pre(np.zeros((5,), np.uint8))


def test_face_preprocessor_uses_the_given_detector_and_geometry():
    from emotion_keras.preprocess.face_align import GEOMETRY_DIM
    from emotion_keras.preprocess.face_detect import Face

    class Fixed:
        calls = 0

        def detect(self, rgb):
            Fixed.calls += 1
            return [Face(box=(100, 80, 120, 120), confidence=0.99,
                         keypoints={"left_eye": (135, 120), "right_eye": (185, 120), "nose": (160, 145),
                                    "mouth_left": (140, 175), "mouth_right": (180, 175)}),
                    Face(box=(10, 10, 30, 30), confidence=0.5, keypoints={})]  # below min_confidence

    pre = FacePreprocessor({"geometry": True, "grayscale": False, "size": 64}, detector=Fixed())
    got = pre(np.random.default_rng(0).integers(0, 255, (300, 400, 3)).astype(np.uint8))
    assert Fixed.calls == 1 and len(got.faces) == 1
    assert got.images.shape == (1, 64, 64, 3) and got.geometry.shape == (1, GEOMETRY_DIM)
    assert FacePreprocessor.from_config(pre.get_config(), detector=pre.detector).detector is pre.detector


def test_speech_preprocessor_matches_the_audio_functions(tmp_path):
    import soundfile as sf

    card = _card("speech")  # the features alone: no speaker normalisation (tests/test_speaker_norm.py)
    pre = SpeechPreprocessor.from_card({**card, "preprocessing": {**card["preprocessing"], "speaker_norm": "none"}})
    c = pre.config
    basis = audio.mel_basis(c.sr, c.n_fft, c.n_mels, c.fmin, c.fmax)
    np.testing.assert_array_equal(pre.basis, basis)
    y = np.concatenate([np.zeros(4000, np.float32), tone(4.2), np.zeros(4000, np.float32)])
    x, spans = pre(y)
    want, want_spans = audio.waveform_inputs(y, c, "<waveform>", basis)
    assert set(x) == set(want) == set(card["inputs"])  # features and, for a prosody model, prosody
    for name in x:
        np.testing.assert_array_equal(x[name], want[name])
    np.testing.assert_array_equal(spans, want_spans)
    # stereo at 48 kHz: averaged to mono and resampled, as the recogniser did
    import soxr

    stereo = np.stack([tone(2.0, 48000), tone(2.0, 48000, 330.0)], 1)
    x2, _ = pre(stereo, sr=48000)
    mono = soxr.resample(stereo.mean(1), 48000, c.sr).astype(np.float32)
    np.testing.assert_array_equal(x2["features"], audio.waveform_inputs(mono, c, "<w>", basis)[0]["features"])
    with pytest.raises(InputError, match="channels"):
        pre(np.zeros((2, 2, 2)), sr=16000)
    # a file: one piece when short, streamed batches (same windows, untrimmed) when long
    path = tmp_path / "clip.wav"
    sf.write(path, y, c.sr, subtype="FLOAT")  # exact samples
    (whole, whole_spans), = list(pre.iter_file(path))
    np.testing.assert_array_equal(whole["features"], want["features"])
    parts = list(pre.iter_file(path, stream_seconds=1.0, batch=2))
    assert len(parts) > 1 and all(len(p[0]["features"]) <= 2 for p in parts)
    streamed = np.concatenate([p[0]["features"] for p in parts])
    ref = np.concatenate([f for f, _ in audio.stream_windows(path, c, batch=2, basis=basis)])
    np.testing.assert_array_equal(streamed, ref)
    with pytest.raises(InputError, match="silence only"):
        pre(np.zeros(16000, np.float32))


def test_speech_preprocessor_normalises_per_file_with_the_card_prior():
    cfg = SpeechFeatureConfig(speaker_norm="speaker")
    prior = {"features": {"mean": [1.0] * cfg.n_features, "var": [4.0] * cfg.n_features}}
    card = {"task": "speech", "preprocessing": cfg.to_dict(), "speaker_norm_prior": prior}
    pre = SpeechPreprocessor.from_card(card)
    assert pre.speaker_norm_prior == prior
    y = tone(5.0)
    x, _ = pre(y)
    raw, _ = audio.waveform_inputs(y, cfg, "<waveform>", pre.basis)
    np.testing.assert_allclose(x["features"], speaker_norm.normalise_file(raw["features"], prior["features"]))
    assert not np.allclose(x["features"], raw["features"])
    running: dict = {}
    first = pre.normalise({"features": raw["features"][:1]}, running)["features"]
    ref = speaker_norm.RunningNormaliser(prior["features"])(raw["features"][:1])
    np.testing.assert_allclose(first, ref)
    assert set(running) == {"features"}
    # none: inputs pass through untouched
    plain = SpeechPreprocessor(SpeechFeatureConfig())
    np.testing.assert_array_equal(plain.normalise(raw)["features"], raw["features"])


def test_check_model_names_the_mismatch():
    from emotion_keras.models.store import ModelLoadError

    pre = SpeechPreprocessor()
    pre.check_model(["features"], {"features": pre.config.input_shape}, "m")
    with pytest.raises(ModelLoadError, match="features but its card"):
        pre.check_model(["features"], {"features": (10, 3)}, "m")
    with pytest.raises(ModelLoadError, match="prosody"):
        pre.check_model(["features", "prosody"], {"features": pre.config.input_shape}, "m")
