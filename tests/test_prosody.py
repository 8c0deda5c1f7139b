"""Prosody vector: pitch follows the signal's F0, unvoiced input gives zeros for pitch measures."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("parselmouth")

from emotion_keras.preprocess.prosody import DIM, NAMES, prosody_vector  # noqa: E402

SR = 16000


def harmonic(f0, seconds=1.0, glide=0.0):
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + glide * t)) / SR
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


def test_pitch_level_range_and_voicing():
    low, high = prosody_vector(harmonic(120), SR), prosody_vector(harmonic(240), SR)
    assert low.shape == (DIM,) and len(NAMES) == DIM and np.isfinite(low).all()
    i = NAMES.index("f0_mean")
    assert low[i] == pytest.approx(12 * np.log2(120 / 100), abs=0.5)
    assert high[i] - low[i] == pytest.approx(12.0, abs=0.5)  # an octave is 12 semitones
    assert low[NAMES.index("voiced_fraction")] > 0.8
    rising = prosody_vector(harmonic(150, glide=0.5), SR)
    assert rising[NAMES.index("f0_slope")] > 3  # semitones per second, upwards
    assert low[NAMES.index("hnr_mean")] > 10  # a clean periodic signal


def test_unvoiced_and_short_input():
    noise = (0.05 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    v = prosody_vector(noise, SR)
    assert v[NAMES.index("voiced_fraction")] < 0.2 and v[NAMES.index("f0_mean")] == 0.0
    assert np.isfinite(prosody_vector(harmonic(200, seconds=0.05), SR)).all()  # padded, no error
