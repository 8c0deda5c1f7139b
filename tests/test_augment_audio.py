"""Waveform augmentation: deterministic per (seed, clip, copy), changes the audio, cached features."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("audiomentations")

from emotion_keras.config import ConfigError  # noqa: E402
from emotion_keras.data.records import Record  # noqa: E402
from emotion_keras.preprocess import audio  # noqa: E402
from emotion_keras.preprocess.augment_audio import (AudioAugmentConfig, augment_waveform,  # noqa: E402
                                                    augmented_features)

SR = 16000


def clip(seconds=1.2, f0=200.0):
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_copies_are_reproducible_distinct_and_bounded():
    cfg = AudioAugmentConfig(copies=2, p_speed=1.0, p_pitch=1.0, p_noise=1.0, p_reverb=0.0, p_gain=1.0)
    y = clip()
    a, b = augment_waveform(y, SR, cfg, 0, 0), augment_waveform(y, SR, cfg, 0, 0)
    c = augment_waveform(y, SR, cfg, 0, 1)
    assert np.array_equal(a, b) and not np.array_equal(a[:1000], c[:1000])
    assert np.max(np.abs(a)) <= 1.0 and np.isfinite(a).all()
    assert 0.8 * len(y) < len(a) < 1.25 * len(y)  # speed within 0.9-1.1
    with pytest.raises(ConfigError):
        AudioAugmentConfig(copies=-1)


def test_reverb_when_pyroomacoustics_present():
    pytest.importorskip("pyroomacoustics")
    cfg = AudioAugmentConfig(copies=1, p_speed=0, p_pitch=0, p_noise=0, p_reverb=1.0, p_gain=0)
    y = clip()
    out = augment_waveform(y, SR, cfg, 3, 0)
    assert len(out) == len(y) and not np.allclose(out, y)


def test_augmented_features_cached_by_config(tmp_path, monkeypatch):
    records = [Record(label=lab, array=clip(f0=f), subject=str(i), dataset="synthetic")
               for i, (lab, f) in enumerate([("happy", 180.0), ("sad", 120.0), ("angry", 250.0)])]
    fcfg = audio.SpeechFeatureConfig(window_seconds=1.0, hop_seconds=0.5, n_mels=16, hop_length=320)
    cfg = AudioAugmentConfig(copies=2, p_reverb=0.0)
    out = augmented_features(records, fcfg, cfg, workers=1, progress=False, cache_dir=tmp_path)
    assert sorted(np.unique(out["clip"])) == [0, 1, 2] and len(out["x"]) >= 6  # 2 copies each
    monkeypatch.setattr(audio, "compute_features", lambda *a, **k: pytest.fail("recomputed"))
    again = augmented_features(records, fcfg, cfg, workers=1, progress=False, cache_dir=tmp_path)
    assert np.array_equal(again["x"], out["x"])
    with pytest.raises(pytest.fail.Exception, match="recomputed"):  # another config is another cache entry
        augmented_features(records, fcfg, cfg.replace(seed=1), workers=1, progress=False, cache_dir=tmp_path)
