"""Prosody of a speech window as a small vector: the model's second input ``"prosody"``.

Emotion lives in *how* something is said: pitch level, range and movement, voicing, loudness and
voice quality. Per window (the same spans as the spectral features) this module measures, with Praat
through ``praat-parselmouth`` (an optional extra, GPL-licensed, so never a required dependency):

F0 in semitones re 100 Hz (mean, std, 5th and 95th percentiles, range, slope per second), voiced
fraction, voiced segments per second, intensity in dB (mean, std, 95th percentile), local jitter,
local shimmer and mean harmonics-to-noise ratio. Unvoiced windows give zeros for the pitch and
voice-quality measures (the voiced fraction says why).
"""

from __future__ import annotations

import numpy as np

from emotion_keras.config import ConfigError

NAMES = ("f0_mean", "f0_std", "f0_p05", "f0_p95", "f0_range", "f0_slope", "voiced_fraction",
         "voiced_segments_per_s", "intensity_mean", "intensity_std", "intensity_p95", "jitter_local",
         "shimmer_local", "hnr_mean")
DIM = len(NAMES)
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0


def available() -> bool:
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    if not available():
        raise ConfigError("prosody features need praat-parselmouth (pip install 'emotion-keras[prosody]'); "
                          "set prosody to 'none' to go without")


def _finite(v) -> float:
    v = float(v)
    return v if np.isfinite(v) else 0.0


def prosody_vector(y: np.ndarray, sr: int) -> np.ndarray:
    """``(DIM,)`` float32 prosody of one window (see the module docstring for the measures)."""
    import parselmouth
    from parselmouth.praat import call

    y = np.asarray(y, np.float64)
    if len(y) < int(0.1 * sr):
        y = np.pad(y, (0, int(0.1 * sr) - len(y)))
    snd = parselmouth.Sound(y, sampling_frequency=float(sr))
    pitch = snd.to_pitch_ac(time_step=0.01, pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING)
    f0 = pitch.selected_array["frequency"]
    voiced = f0 > 0
    out = np.zeros(DIM, np.float32)
    seconds = len(y) / sr
    if voiced.sum() >= 3:
        st = 12 * np.log2(f0[voiced] / 100.0)
        t = pitch.xs()[voiced]
        p05, p95 = np.percentile(st, [5, 95])
        slope = np.polyfit(t, st, 1)[0] if np.ptp(t) > 0 else 0.0
        out[:6] = [st.mean(), st.std(), p05, p95, p95 - p05, slope]
    out[6] = voiced.mean() if len(voiced) else 0.0
    out[7] = np.count_nonzero(np.diff(voiced.astype(int)) == 1) / max(seconds, 1e-3)
    intensity = snd.to_intensity(minimum_pitch=PITCH_FLOOR).values.ravel()
    intensity = intensity[np.isfinite(intensity)]
    if len(intensity):
        out[8:11] = [intensity.mean(), intensity.std(), np.percentile(intensity, 95)]
    if voiced.sum() >= 3:
        points = call(snd, "To PointProcess (periodic, cc)", PITCH_FLOOR, PITCH_CEILING)
        out[11] = _finite(call(points, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3))
        out[12] = _finite(call([snd, points], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6))
        hnr = snd.to_harmonicity_cc(time_step=0.04, minimum_pitch=PITCH_FLOOR).values.ravel()
        hnr = hnr[hnr > -200]
        out[13] = hnr.mean() if len(hnr) else 0.0
    return out
