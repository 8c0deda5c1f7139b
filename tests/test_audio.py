"""Audio loading, trimming, windows, features and their cache, on synthetic and real audio."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from conftest import corpus
from emotion_keras.data.records import Record
from emotion_keras.errors import InputError
from emotion_keras.preprocess import audio
from emotion_keras.preprocess.audio import (SpeechFeatureConfig, compute_features, file_windows,
                                            load_audio, speech_bounds, speech_features, stream_windows,
                                            waveform_windows, window_bounds)

SR = 16000


def tone(seconds, sr=SR, freq=220.0, amp=0.3, channels=1, seed=0):
    """A voiced-like signal: harmonics with a slow amplitude envelope and a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 5))
    y = amp * y * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) / 2
    y = y + 0.003 * np.random.default_rng(seed).standard_normal(len(t))
    y = y.astype("float32")
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def write(path, y, sr=SR, **kw):
    sf.write(path, y, sr, **kw)
    return path


# ---------------------------------------------------------------- loading

def test_load_rates_channels_formats(tmp_path):
    y = load_audio(write(tmp_path / "hi.wav", tone(1.0, sr=96000, channels=8), sr=96000))
    assert y.dtype == np.float32 and y.ndim == 1 and abs(len(y) - SR) <= 2  # 8 ch at 96 kHz -> mono 16 kHz
    assert abs(len(load_audio(write(tmp_path / "a.flac", tone(1.0, sr=44100), sr=44100))) - SR) <= 2
    assert abs(len(load_audio(write(tmp_path / "a.ogg", tone(1.0), format="OGG", subtype="VORBIS"))) - SR) < 200
    stereo = tone(0.5, channels=2)
    stereo[:, 1] = 0
    assert np.allclose(load_audio(write(tmp_path / "s.wav", stereo)), stereo[:, 0] / 2, atol=1e-3)


def test_real_mp3_flac_wav(shared_data):
    cremad = corpus(shared_data, "cremad_av")
    mp3 = load_audio(cremad / "data" / "1002_DFA_ANG_XX.mp3")
    wav = load_audio(cremad / "resampled" / "1002_DFA_ANG_XX.wav")
    assert abs(len(mp3) - len(wav)) < 0.1 * SR  # same clip, MP3 at 44.1 kHz and WAV at 16 kHz
    flac = load_audio(corpus(shared_data, "ravdess_speech") / "Actor_01" / "03-01-01-01-01-01-01.flac")
    assert 3 * SR < len(flac) < 5 * SR and np.abs(flac).max() <= 1.0


@pytest.mark.parametrize("content,match", [
    (b"", "empty file"),
    (b"hello, this is not audio at all\n" * 20, "not an audio file"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "not a readable audio"),
])
def test_bad_files(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        load_audio(p)
    assert str(p) in str(e.value)


def test_missing_and_headerless(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    p = write(tmp_path / "t.wav", tone(1.0))
    p.write_bytes(p.read_bytes()[:44])  # a header that promises samples, then nothing
    with pytest.raises(InputError):
        load_audio(p)


# ---------------------------------------------------------------- trimming, windows, edge cases

def test_trim_and_short_and_silence(tmp_path):
    cfg = SpeechFeatureConfig()
    y = np.concatenate([np.zeros(SR), tone(1.0), np.zeros(SR)]).astype("float32")
    s, e = speech_bounds(y, cfg)
    assert abs(s - SR) < 0.05 * SR and abs(e - 2 * SR) < 0.05 * SR
    assert speech_bounds(np.zeros(SR, "float32"), cfg) is None
    with pytest.raises(InputError, match="silence only"):
        file_windows(write(tmp_path / "silent.wav", np.zeros(2 * SR, "float32")), cfg)
    with pytest.raises(InputError, match="too short"):
        file_windows(write(tmp_path / "short.wav", tone(0.2)), cfg)
    feats, spans = file_windows(write(tmp_path / "ok.wav", tone(0.35)), cfg)  # >= 0.3 s: padded
    assert feats.shape == (1, *cfg.input_shape)
    assert np.all(feats[0, 40:] == 0)  # frames past the clip are zero (the mean after normalisation)


def test_window_bounds_cover_long_clips():
    cfg = SpeechFeatureConfig(window_seconds=3.0, hop_seconds=1.5)
    assert window_bounds(2 * SR, cfg) == [(0, 2 * SR)]
    b = window_bounds(int(7.2 * SR), cfg)
    assert b[0] == (0, 3 * SR) and b[-1][1] == int(7.2 * SR)
    assert all(e - s == 3 * SR for s, e in b) and len(b) == 4


@pytest.mark.parametrize("feature,n", [("logmel", 64), ("mfcc", 120)])
def test_feature_shapes(feature, n):
    cfg = SpeechFeatureConfig(feature=feature)
    feats, spans = waveform_windows(tone(7.0), cfg)
    assert feats.shape == (len(spans), 298, n) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert abs(float(feats[0].mean())) < 1e-3 and abs(float(feats[0].std()) - 1) < 1e-2  # per-window norm


def test_mfcc_matches_librosa():
    librosa = pytest.importorskip("librosa")
    cfg = SpeechFeatureConfig(feature="mfcc", deltas=False)
    y = tone(1.0)
    ours = audio.spectral_features(y, cfg)
    ref = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=40, n_fft=400, hop_length=160, n_mels=64, fmin=20.0,
                               center=False).T
    assert np.allclose(ours, ref, atol=0.05 * np.abs(ref).max())


def test_long_file_streamed_with_bounded_memory(tmp_path):
    """10 minutes at 16 kHz: decoded in blocks, windows batched, peak memory far below the file."""
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        block = tone(30.0)
        for i in range(20):
            f.write(block if i != 7 else np.zeros_like(block))  # 30 s of silence inside
    cfg = SpeechFeatureConfig()
    tracemalloc.start()
    t0 = time.perf_counter()
    n, spans = 0, []
    for feats, sp in stream_windows(path, cfg, batch=32):
        assert feats.shape[1:] == cfg.input_shape and len(feats) <= 32
        n += len(feats)
        spans.append(sp)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    spans = np.concatenate(spans)
    assert spans[-1, 1] == pytest.approx(600.0, abs=0.01)  # the tail is covered
    assert 370 < n < 400  # 399 windows every 1.5 s, minus the silent ones
    assert peak < 20e6, f"peak {peak / 1e6:.1f} MB (the decoded file alone is 38 MB)"
    assert seconds < 30


# ---------------------------------------------------------------- corpus features and cache

def test_features_cached_and_failures_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_KERAS_CACHE", str(tmp_path / "cache"))
    good = [write(tmp_path / f"g{i}.wav", tone(1.0 + i, seed=i)) for i in range(3)]
    (tmp_path / "bad.wav").write_bytes(b"garbage" * 10)
    records = [Record("happy", p, subject="a") for p in good] + [Record("sad", tmp_path / "bad.wav", subject="b")]
    cfg = SpeechFeatureConfig(n_mels=32)
    out = speech_features(records, cfg, progress=False, cache_dir=tmp_path / "cache")
    assert out["x"].dtype == np.float16 and out["x"].shape[1:] == (298, 32)
    assert out["failed"].tolist() == [3] and "bad.wav" in out["errors"][0]
    assert sorted(set(out["clip"].tolist())) == [0, 1, 2]
    assert len(list((tmp_path / "cache").glob("speech-*.npz"))) == 1
    monkeypatch.setattr(audio, "compute_features", lambda *a, **k: pytest.fail("recomputed"))
    again = speech_features(records, cfg, progress=False, cache_dir=tmp_path / "cache")
    assert np.array_equal(again["x"], out["x"])


def test_parallel_features_on_real_clips(shared_data):
    root = corpus(shared_data, "ravdess_speech")
    files = sorted((root / "Actor_01").glob("*.flac"))[:48]
    records = [Record("x", p, subject="01") for p in files]
    cfg = SpeechFeatureConfig()
    par = compute_features(records, cfg, workers=2, progress=False)
    seq = compute_features(records[:4], cfg, workers=1, progress=False)
    assert len(par["failed"]) == 0 and len(set(par["clip"].tolist())) == 48
    first = par["clip"] < 4
    assert np.array_equal(par["x"][first], seq["x"])


def test_m4a_through_pyav(tmp_path):
    """Formats libsndfile does not read (AAC in M4A) decode through FFmpeg (PyAV)."""
    av = pytest.importorskip("av")
    y = tone(1.0, sr=44100)
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=44100)
        s.layout = "mono"
        for i in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(y[None, i:i + 1024], format="flt", layout="mono")
            frame.sample_rate = 44100
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    assert abs(len(load_audio(path)) - SR) < 0.1 * SR
