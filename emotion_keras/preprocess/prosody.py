"""Prosody of a speech window as a small vector: the model's second input ``"prosody"``.

Emotion lives in *how* something is said: pitch level, range and movement, voicing, loudness and
voice quality. Per window (the same spans as the spectral features) this module measures F0 in
semitones re 100 Hz (mean, std, 5th and 95th percentiles, range, slope per second), voiced fraction,
voiced segments per second, intensity in dB (mean, std, 95th percentile), local jitter, local shimmer
and mean harmonics-to-noise ratio. Unvoiced windows give zeros for the pitch and voice-quality
measures (the voiced fraction says why).

Two ways to measure them (``SpeechFeatureConfig.prosody``):

- ``"praat"``: Praat through ``praat-parselmouth``, the reference measures, an optional extra
  (GPL-licensed, so never a required dependency);
- ``"builtin"``: the same measures from NumPy alone, so a default install has prosody: Boersma's
  (1993) windowed autocorrelation per 10 ms frame gives F0, voicing and HNR (Praat's pitch and
  harmonicity method, without its path search), and jitter and shimmer come from frame-to-frame
  period and amplitude changes (Praat measures them per glottal cycle, so the values differ in scale;
  each model is standardised on its own method's statistics).
"""

from __future__ import annotations

import numpy as np

from emotion_keras.config import ConfigError

NAMES = ("f0_mean", "f0_std", "f0_p05", "f0_p95", "f0_range", "f0_slope", "voiced_fraction",
         "voiced_segments_per_s", "intensity_mean", "intensity_std", "intensity_p95", "jitter_local",
         "shimmer_local", "hnr_mean")
DIM = len(NAMES)
METHODS = ("praat", "builtin")
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0
HOP_SECONDS = 0.01
VOICING_THRESHOLD = 0.45  # Praat's default: the normalised autocorrelation peak of a voiced frame
SILENCE_THRESHOLD = 0.03  # Praat's default: frames with a peak below this fraction of the window's are silent
OCTAVE_TOLERANCE = 0.9  # the shortest lag whose peak reaches this fraction of the best one (no octave drops)


def available(method: str = "praat") -> bool:
    if method == "builtin":
        return True
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        return False
    return True


def require(method: str = "praat") -> None:
    if method not in METHODS:
        raise ConfigError(f"prosody must be 'none' or one of {', '.join(METHODS)}, not {method!r}")
    if not available(method):
        raise ConfigError("prosody 'praat' needs praat-parselmouth (pip install 'emotion-keras[prosody]'); "
                          "use prosody 'builtin' (no extra) or 'none'")


def _finite(v) -> float:
    v = float(v)
    return v if np.isfinite(v) else 0.0


def _pad(y: np.ndarray, sr: int) -> np.ndarray:
    y = np.asarray(y, np.float64)
    return np.pad(y, (0, int(0.1 * sr) - len(y))) if len(y) < int(0.1 * sr) else y


def _pitch_stats(out: np.ndarray, f0: np.ndarray, times: np.ndarray, seconds: float) -> None:
    """Fill the pitch and voicing measures from a frame F0 track (0 where unvoiced)."""
    voiced = f0 > 0
    if voiced.sum() >= 3:
        st = 12 * np.log2(f0[voiced] / 100.0)
        t = times[voiced]
        p05, p95 = np.percentile(st, [5, 95])
        slope = np.polyfit(t, st, 1)[0] if np.ptp(t) > 0 else 0.0
        out[:6] = [st.mean(), st.std(), p05, p95, p95 - p05, slope]
    out[6] = voiced.mean() if len(voiced) else 0.0
    out[7] = np.count_nonzero(np.diff(voiced.astype(int)) == 1) / max(seconds, 1e-3)


def prosody_vector(y: np.ndarray, sr: int, method: str = "praat") -> np.ndarray:
    """``(DIM,)`` float32 prosody of one window (see the module docstring for the measures)."""
    if method == "builtin":
        return _builtin_vector(_pad(y, sr), sr)
    if method != "praat":
        require(method)
    return _praat_vector(_pad(y, sr), sr)


def _praat_vector(y: np.ndarray, sr: int) -> np.ndarray:
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(y, sampling_frequency=float(sr))
    pitch = snd.to_pitch_ac(time_step=HOP_SECONDS, pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING)
    f0 = pitch.selected_array["frequency"]
    out = np.zeros(DIM, np.float32)
    _pitch_stats(out, f0, pitch.xs(), len(y) / sr)
    intensity = snd.to_intensity(minimum_pitch=PITCH_FLOOR).values.ravel()
    intensity = intensity[np.isfinite(intensity)]
    if len(intensity):
        out[8:11] = [intensity.mean(), intensity.std(), np.percentile(intensity, 95)]
    if (f0 > 0).sum() >= 3:
        points = call(snd, "To PointProcess (periodic, cc)", PITCH_FLOOR, PITCH_CEILING)
        out[11] = _finite(call(points, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3))
        out[12] = _finite(call([snd, points], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6))
        hnr = snd.to_harmonicity_cc(time_step=0.04, minimum_pitch=PITCH_FLOOR).values.ravel()
        hnr = hnr[hnr > -200]
        out[13] = hnr.mean() if len(hnr) else 0.0
    return out


def frame_pitch(y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per 10 ms frame: ``(f0, periodicity, rms, times)``; f0 is 0 where unvoiced, periodicity the
    normalised autocorrelation peak (0..1) that HNR is made of.

    Each frame spans three periods of the pitch floor under a Hann window; its autocorrelation is
    divided by the window's own (Boersma 1993), so a periodic frame peaks near 1 at its period.
    """
    y = np.asarray(y, np.float64)
    length = int(round(3 * sr / PITCH_FLOOR))
    hop = int(round(HOP_SECONDS * sr))
    if len(y) < length:
        y = np.pad(y, (0, length - len(y)))
    starts = np.arange(0, len(y) - length + 1, hop)
    frames = y[starts[:, None] + np.arange(length)]
    frames = frames - frames.mean(axis=1, keepdims=True)
    window = np.hanning(length)
    n_fft = 1 << int(np.ceil(np.log2(2 * length)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames * window, n_fft)) ** 2, n_fft)[:, :length]
    ac_w = np.fft.irfft(np.abs(np.fft.rfft(window, n_fft)) ** 2, n_fft)[:length]
    ac_w /= ac_w[0]
    lo, hi = int(np.floor(sr / PITCH_CEILING)), min(int(np.ceil(sr / PITCH_FLOOR)), length // 2)
    energy = np.maximum(ac[:, :1], 1e-12)
    r = ac[:, lo:hi + 1] / energy / ac_w[lo:hi + 1]
    # local maxima of r over the lag range; the shortest lag within OCTAVE_TOLERANCE of the best
    peak = np.zeros_like(r, bool)
    peak[:, 1:-1] = (r[:, 1:-1] >= r[:, :-2]) & (r[:, 1:-1] > r[:, 2:])
    best = np.where(peak, r, -np.inf).max(axis=1)
    good = peak & (r >= OCTAVE_TOLERANCE * best[:, None])
    idx = np.where(good.any(axis=1), good.argmax(axis=1), 0)
    rows = np.arange(len(r))
    # parabolic interpolation of the peak for sub-sample lags
    i = np.clip(idx, 1, r.shape[1] - 2)
    a, b, c = r[rows, i - 1], r[rows, i], r[rows, i + 1]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    lag = lo + i + np.clip(shift, -0.5, 0.5)
    periodicity = np.clip(np.where(np.isfinite(best), r[rows, idx], 0.0), 0.0, 1.0)
    amp = np.abs(frames).max(axis=1)
    voiced = (periodicity >= VOICING_THRESHOLD) & (amp >= SILENCE_THRESHOLD * max(amp.max(), 1e-12))
    voiced &= good.any(axis=1)
    f0 = _drop_octave_jumps(np.where(voiced, sr / lag, 0.0))
    rms = np.sqrt((frames ** 2).mean(axis=1))
    times = (starts + length / 2) / sr
    return f0, periodicity, rms, times


def _drop_octave_jumps(f0: np.ndarray, frames: int = 7, semitones: float = 8.0) -> np.ndarray:
    """Unvoice frames more than ``semitones`` from the median of their ``frames`` voiced neighbours:
    the octave errors Praat's path search avoids, which would widen range and jitter."""
    idx = np.flatnonzero(f0 > 0)
    if len(idx) < frames:
        return f0
    st = 12 * np.log2(f0[idx] / 100.0)
    half = frames // 2
    med = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(st, half, mode="edge"), frames), axis=1)
    out = f0.copy()
    out[idx[np.abs(st - med) > semitones]] = 0.0
    return out


def _builtin_vector(y: np.ndarray, sr: int) -> np.ndarray:
    f0, periodicity, rms, times = frame_pitch(y, sr)
    out = np.zeros(DIM, np.float32)
    _pitch_stats(out, f0, times, len(y) / sr)
    sounding = rms > 1e-9  # not digital silence (padding)
    if sounding.any():
        db = 20 * np.log10(rms[sounding] / 2e-5)  # dB re 20 µPa, Praat's intensity scale
        out[8:11] = [db.mean(), db.std(), np.percentile(db, 95)]
    voiced = f0 > 0
    if voiced.sum() >= 3:
        # consecutive voiced frames only: a change across an unvoiced gap is not jitter
        pair = voiced[1:] & voiced[:-1]
        if pair.any():
            period = np.where(voiced, 1.0 / np.maximum(f0, 1e-6), 0.0)
            out[11] = np.abs(np.diff(period))[pair].mean() / period[voiced].mean()
            out[12] = np.abs(np.diff(rms))[pair].mean() / rms[voiced].mean()
        p = np.clip(periodicity[voiced], 1e-6, 1 - 1e-6)
        out[13] = np.mean(10 * np.log10(p / (1 - p)))
    return out
