"""Prosody vector, by Praat and by the builtin NumPy measures: pitch follows the signal's F0, unvoiced
input gives zeros for pitch measures, and on real speech the two methods agree where they should."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.config import ConfigError
from emotion_keras.preprocess import prosody
from emotion_keras.preprocess.audio import SpeechFeatureConfig, window_inputs
from emotion_keras.preprocess.prosody import DIM, NAMES, prosody_vector

from conftest import corpus

SR = 16000
needs_praat = pytest.mark.skipif(not prosody.available("praat"), reason="praat-parselmouth not installed")
METHODS = [pytest.param("praat", marks=needs_praat), "builtin"]


def harmonic(f0, seconds=1.0, glide=0.0):
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + glide * t)) / SR
    return (0.2 * sum(np.sin(k * phase) / k for k in range(1, 6))).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_pitch_level_range_and_voicing(method):
    low, high = prosody_vector(harmonic(120), SR, method), prosody_vector(harmonic(240), SR, method)
    assert low.shape == (DIM,) and len(NAMES) == DIM and np.isfinite(low).all()
    i = NAMES.index("f0_mean")
    assert low[i] == pytest.approx(12 * np.log2(120 / 100), abs=0.5)
    assert high[i] - low[i] == pytest.approx(12.0, abs=0.5)  # an octave is 12 semitones
    assert low[NAMES.index("voiced_fraction")] > 0.8
    rising = prosody_vector(harmonic(150, glide=0.5), SR, method)
    assert rising[NAMES.index("f0_slope")] > 3  # semitones per second, upwards
    assert low[NAMES.index("hnr_mean")] > 10  # a clean periodic signal


@pytest.mark.parametrize("method", METHODS)
def test_unvoiced_and_short_input(method):
    noise = (0.05 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    v = prosody_vector(noise, SR, method)
    assert v[NAMES.index("voiced_fraction")] < 0.2 and v[NAMES.index("f0_mean")] == 0.0
    assert np.isfinite(prosody_vector(harmonic(200, seconds=0.05), SR, method)).all()  # padded, no error


def test_builtin_needs_no_extra_and_unknown_methods_are_refused():
    assert prosody.available("builtin")
    prosody.require("builtin")
    with pytest.raises(ConfigError, match="builtin"):
        prosody.require("opensmile")
    config = SpeechFeatureConfig(feature="functionals", n_fft=512, n_mfcc=20, prosody="builtin")
    x = window_inputs([harmonic(150, seconds=3.0)], config)
    assert x["prosody"].shape == (1, DIM) and x["features"].shape[0] == 1


@needs_praat
def test_builtin_agrees_with_praat_on_real_speech(shared_data):
    """On RAVDESS clips the builtin pitch level and spread, voicing and intensity track Praat's."""
    import librosa

    clips = sorted((corpus(shared_data, "ravdess_speech") / "Actor_02").glob("*.flac"))[::6][:8]
    assert len(clips) >= 4
    pairs = []
    for clip in clips:
        y, _ = librosa.load(clip, sr=SR)
        pairs.append((prosody_vector(y[:3 * SR], SR, "praat"), prosody_vector(y[:3 * SR], SR, "builtin")))
    praat, builtin = (np.stack(p) for p in zip(*pairs))
    for name, tolerance in (("f0_mean", 1.0), ("f0_p95", 1.5), ("voiced_fraction", 0.08), ("intensity_mean", 1.0)):
        i = NAMES.index(name)
        assert np.median(np.abs(praat[:, i] - builtin[:, i])) < tolerance, name
    # across clips, the two methods rank pitch level and loudness alike
    for name in ("f0_mean", "intensity_mean"):
        i = NAMES.index(name)
        assert np.corrcoef(praat[:, i], builtin[:, i])[0, 1] > 0.9, name
