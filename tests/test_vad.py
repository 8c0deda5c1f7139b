"""Voice activity: speech-like windows kept, silence and noise skipped in long recordings only."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.errors import InputError
from emotion_keras.preprocess import vad
from emotion_keras.preprocess.audio import SpeechFeatureConfig, waveform_windows

SR = 16000


def voiced(seconds, seed=0):
    """Harmonics of a gliding 150-250 Hz pitch with syllable-rate amplitude modulation."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 200 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    y *= np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return (0.2 * y + 0.002 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("mode", ["webrtc", "energy"])
def test_speech_fraction(mode):
    if mode == "webrtc":
        pytest.importorskip("webrtcvad")
    assert vad.speech_fraction(voiced(1.0), SR, mode) > 0.3
    assert vad.speech_fraction(np.zeros(SR, np.float32), SR, mode) == 0.0
    quiet_noise = 0.003 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)  # -50 dBFS
    assert vad.speech_fraction(quiet_noise, SR, mode) < 0.1
    assert vad.speech_fraction(np.zeros(SR), SR, "none") == 1.0


def test_long_recording_skips_windows_without_speech():
    """20 s: speech, 8 s of low noise (audible, not silent: the old peak test kept it), speech."""
    noise = 0.003 * np.random.default_rng(1).standard_normal(8 * SR).astype(np.float32)
    y = np.concatenate([voiced(6.0), noise, voiced(6.0, seed=2)])
    cfg = SpeechFeatureConfig(trim_db=0)
    _, spans = waveform_windows(y, cfg)
    _, all_spans = waveform_windows(y, cfg.replace(vad="none"))
    inside = [(s, e) for s, e in all_spans if s >= 6.0 and e <= 14.0]
    assert inside and not any(s >= 6.0 and e <= 14.0 for s, e in spans)  # noise-only windows gone
    assert len(spans) >= len(all_spans) - len(inside)  # speech windows kept
    with pytest.raises(InputError, match="no speech detected"):
        waveform_windows(np.tile(noise, 2), cfg)
    # a short clip (an utterance, not a recording) is never discarded by the detector
    feats, _ = waveform_windows(noise[:4 * SR] * 20, cfg)
    assert len(feats) >= 1
