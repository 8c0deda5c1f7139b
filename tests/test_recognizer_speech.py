"""SpeechEmotionRecognizer: result contract, windows and pooling, streaming, bad input, shipped model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, corpus
from emotion_keras.errors import InputError
from emotion_keras.preprocess.audio import SpeechFeatureConfig

CLASSES = ["angry", "happy", "sad", "neutral"]
FEATURES = SpeechFeatureConfig(window_seconds=1.0, hop_seconds=0.5, n_mels=16, hop_length=320)


def tone(seconds, sr=16000, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    y = (0.2 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype("float32")
    return np.stack([y] * channels, 1) if channels > 1 else y


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny untrained model saved with a real card: enough to test the recogniser's plumbing."""
    from emotion_keras.models import store
    from emotion_keras.models.speech import SpeechModelConfig, build_speech_model

    cfg = SpeechModelConfig(architecture="cnn1d", filters=4, conv_blocks=2, embedding_dim=8)
    model = build_speech_model(cfg, CLASSES, FEATURES.input_shape)
    out = tmp_path_factory.mktemp("speech_model")
    store.save(model, out, {"task": "speech", "name": "tiny", "classes": CLASSES,
                            "inputs": {"features": list(FEATURES.input_shape)},
                            "preprocessing": FEATURES.to_dict(), "model_config": cfg.to_dict()})
    return out


@pytest.fixture(scope="module")
def rec(model_dir):
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    return SpeechEmotionRecognizer(model_dir)


def _check(result, n_windows=None):
    assert set(result) >= {"windows", "emotion", "probabilities"}
    assert result["emotion"] in CLASSES and list(result["probabilities"]) == CLASSES
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
    if n_windows is not None:
        assert len(result["windows"]) == n_windows
    for w in result["windows"]:
        assert set(w) == {"start", "end", "probabilities"} and 0 <= w["start"] < w["end"]
    probs = np.array([list(w["probabilities"].values()) for w in result["windows"]])
    assert np.allclose(probs.mean(0), list(result["probabilities"].values()), atol=1e-3)  # mean-pooled
    json.dumps(result)  # JSON-able as the CLI prints it


def test_predict_file_real_clips(rec, shared_data):
    flac = corpus(shared_data, "ravdess_speech") / "Actor_17" / "03-01-05-01-01-01-17.flac"
    result = rec.predict_file(flac)
    assert result["file"] == str(flac)
    _check(result)
    assert len(result["windows"]) >= 2  # ~2 s of trimmed speech in 1 s windows with 0.5 s hop
    mp3 = corpus(shared_data, "cremad_av") / "data" / "1002_DFA_SAD_XX.mp3"
    _check(rec.predict_file(mp3))


def test_predict_waveform_any_rate_and_channels(rec):
    r = rec.predict(tone(2.2, sr=48000, channels=2), sr=48000)  # trimmed to ~2.19 s: 0, 0.5, 1.0, end-1 s
    _check(r, n_windows=4)
    assert r["windows"][-1]["end"] - r["windows"][-1]["start"] == pytest.approx(1.0, abs=1e-3)
    _check(rec.predict(tone(0.6), sr=16000), n_windows=1)  # padded to one window


def test_long_file_is_streamed(model_dir, tmp_path):
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    path = tmp_path / "long.wav"
    sf.write(path, tone(20.0), 16000)
    streamed = SpeechEmotionRecognizer(model_dir, stream_seconds=5.0, batch_size=8).predict_file(path)
    _check(streamed, n_windows=39)  # every 0.5 s plus the end-aligned one
    assert streamed["windows"][-1]["end"] == pytest.approx(20.0)


def test_bad_inputs_and_batch_carries_on(rec, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, "float32"), 16000)
    short = tmp_path / "short.wav"
    sf.write(short, tone(0.2), 16000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio\n" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path, match in ((silent, "silence only"), (short, "too short"), (text, "not an audio file"),
                        (empty, "empty"), (tmp_path / "missing.wav", "no such file")):
        with pytest.raises(InputError, match=match):
            rec.predict_file(path)
    good = tmp_path / "good.wav"
    sf.write(good, tone(1.5), 16000)
    results = rec.predict_files([silent, good, text])
    assert [("error" in r) for r in results] == [True, False, True]
    assert "silence only" in results[0]["error"] and results[1]["emotion"] in CLASSES


def test_cli_predict_json(model_dir, tmp_path, capsys):
    pytest.importorskip("emotion_keras.commands.predict")
    from emotion_keras.cli import main

    good = tmp_path / "clip.wav"
    sf.write(good, tone(1.5), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"junk" * 100)
    code = main(["predict", str(good), str(bad), "--json", "--speech-model-dir", str(model_dir)])
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert code != 0  # one file failed: non-zero at the end, after both lines
    assert lines[0]["file"] == str(good) and lines[0]["emotion"] in CLASSES
    assert set(lines[0]) >= {"file", "windows", "emotion", "probabilities"}
    assert lines[1]["file"] == str(bad) and "error" in lines[1]


def test_shipped_model(shared_data):
    """saved_models/speech: small, loads in safe mode, classifies held-out RAVDESS actors."""
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    model_dir = ROOT / "saved_models" / "speech"
    if not (model_dir / "card.json").exists():
        pytest.skip("no shipped speech model in saved_models/speech")
    card = json.loads((model_dir / "card.json").read_text())
    assert card["task"] == "speech" and card["size_bytes"] <= 20e6
    figure = card["metrics"].get("validation") or card["metrics"]["cv5"]  # solved on all speakers: its folds
    assert "protocol" in figure and figure["accuracy"] > 1 / len(card["classes"])
    rec = SpeechEmotionRecognizer()
    root = corpus(shared_data, "ravdess_speech")
    result = rec.predict_file(root / "Actor_20" / "03-01-05-02-01-01-20.flac")
    assert result["emotion"] in card["classes"] and len(result["probabilities"]) == len(card["classes"])
    if card["preprocessing"]["speaker_norm"] != "none":  # enrolled from the actor's other clips, labels unused
        assert rec.enrol(sorted((root / "Actor_20").glob("03-01-0[1-8]-01-01-*.flac"))) > 0
        assert rec.predict_file(root / "Actor_20" / "03-01-05-02-01-01-20.flac")["emotion"] in card["classes"]


def test_speaker_normalised_prosody_model_and_vad(tmp_path):
    """A card with speaker_norm 'speaker' and prosody: per-file normalised features and prosody go
    in; a long recording's noise-only stretch is left out of the windows (VAD)."""
    pytest.importorskip("parselmouth")
    from emotion_keras.models import store
    from emotion_keras.models.speech import SpeechModelConfig, build_speech_model
    from emotion_keras.preprocess.prosody import DIM
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    feats = FEATURES.replace(speaker_norm="speaker", prosody="praat", vad_min_seconds=5.0)
    cfg = SpeechModelConfig(architecture="cnn1d", filters=4, conv_blocks=2, embedding_dim=8, prosody_dim=DIM)
    model = build_speech_model(cfg, CLASSES, feats.input_shape)
    out = tmp_path / "model"
    store.save(model, out, {"task": "speech", "name": "tiny-prosody", "classes": CLASSES,
                            "inputs": {"features": list(feats.input_shape), "prosody": [DIM]},
                            "preprocessing": feats.to_dict(), "model_config": cfg.to_dict()})
    rec = SpeechEmotionRecognizer(out)
    x, _ = rec.waveform_inputs(tone(2.0))
    assert set(x) == {"features", "prosody"} and x["prosody"].shape[1] == DIM
    valid = x["features"][np.any(x["features"] != 0, axis=-1)]
    assert np.allclose(valid.mean(0), 0, atol=1e-3)  # standardised over the file
    noise = 0.003 * np.random.default_rng(0).standard_normal(4 * 16000).astype("float32")
    path = tmp_path / "talk.wav"
    sf.write(path, np.concatenate([tone(3.0), noise, tone(3.0)]), 16000)
    result = rec.predict_file(path)
    _check(result)
    assert not any(w["start"] >= 3.0 and w["end"] <= 7.0 for w in result["windows"])
    streamed = SpeechEmotionRecognizer(out, stream_seconds=1.0).predict_file(path)
    _check(streamed)
