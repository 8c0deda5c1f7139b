"""Functionals of a speech window: one fixed-length vector of statistics over its frames.

The classic paralinguistic representation (as eGeMAPS / ComParE): how a voice's spectrum, loudness
and brightness are distributed over an utterance, not their order in time. On RAVDESS's 1,200 clips a
linear classifier over these vectors beats every sequence model trained here from scratch (see
``docs/benchmarks/speech_cv.md``): with 12 training speakers there is too little data to learn
frame-level patterns, and statistics are what survives a change of speaker.

Per window, from the same frames as the spectral features (plain numpy, no numba):

* MFCC (``n_mfcc``) and their first deltas: mean, std, 10th and 90th percentiles; second deltas: std;
* log-mel (``n_mels``): mean, std, 10th and 90th percentiles;
* frame descriptors (spectral centroid, bandwidth, 85% roll-off, flatness, zero-crossing rate, RMS in
  dB, spectral contrast in 7 octave bands): the same four statistics;
* the window's voiced length: the fraction of frames within 35 dB of its loudest;
* contour: the means of MFCC, log-mel and RMS over the window's first, middle and last thirds (how an
  utterance rises or falls, which order-free statistics miss);
* log-mel movement: std and mean absolute value of the log-mel deltas per band;
* robust spread: MFCC medians, interquartile ranges and ranges, log-mel medians.

Contour, movement and spread added 1-2 points to logistic regression and 2 to ``lda`` on RAVDESS's
speaker folds (``docs/benchmarks/speech_cv.md``).

The model sees ``(1, DIM)``: one frame, so the ``(frames, n_features)`` contract of every speech
input holds, and speaker normalisation standardises these vectors per speaker like any frames.
"""

from __future__ import annotations

import numpy as np

VERSION = 2  # bump when a statistic changes, so cached functionals recompute
STATS = ("mean", "std", "p10", "p90")
DESCRIPTORS = ("centroid", "bandwidth", "rolloff", "flatness", "zcr", "rms_db")
CONTRAST_EDGES = (0.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)  # Hz; the last band ends at sr / 2
THIRDS = ("first", "middle", "last")
CONTRAST_QUANTILE = 0.02  # peak and valley: the mean of this fraction of a band's strongest and weakest bins


def names(n_mfcc: int, n_mels: int) -> list[str]:
    """Feature names, in vector order (for reports and model cards)."""
    out = [f"mfcc{i}_{s}" for s in STATS for i in range(n_mfcc)]
    out += [f"mfcc{i}_d1_{s}" for s in STATS for i in range(n_mfcc)]
    out += [f"mfcc{i}_d2_std" for i in range(n_mfcc)]
    out += [f"mel{i}_{s}" for s in STATS for i in range(n_mels)]
    out += [f"{d}_{s}" for s in STATS for d in DESCRIPTORS + _contrast_names()]
    out += ["active_fraction"]
    for third in THIRDS:
        out += [f"mfcc{i}_{third}" for i in range(n_mfcc)] + [f"mel{i}_{third}" for i in range(n_mels)]
    out += [f"rms_db_{third}" for third in THIRDS]
    out += [f"mel{i}_d1_{s}" for s in ("std", "absmean") for i in range(n_mels)]
    out += [f"mfcc{i}_{s}" for s in ("median", "iqr", "range") for i in range(n_mfcc)]
    return out + [f"mel{i}_median" for i in range(n_mels)]


def _contrast_names() -> tuple[str, ...]:
    return tuple(f"contrast{i}" for i in range(len(CONTRAST_EDGES)))


def dim(n_mfcc: int, n_mels: int) -> int:
    return 15 * n_mfcc + 10 * n_mels + 4 * (len(DESCRIPTORS) + len(CONTRAST_EDGES)) + 1 + len(THIRDS)


def _contrast(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Spectral contrast per octave band (Jiang et al. 2002): peak minus valley in dB, ``(T, bands)``."""
    edges = list(CONTRAST_EDGES) + [freqs[-1] + 1.0]
    out = np.zeros((len(power), len(CONTRAST_EDGES)), np.float32)
    for b in range(len(CONTRAST_EDGES)):
        band = np.sort(power[:, (freqs >= edges[b]) & (freqs < edges[b + 1])], axis=1)
        if band.shape[1] == 0:
            continue
        k = max(1, int(round(CONTRAST_QUANTILE * band.shape[1])))
        out[:, b] = 10.0 * (np.log10(band[:, -k:].mean(1) + 1e-10) - np.log10(band[:, :k].mean(1) + 1e-10))
    return out


def _stats(m: np.ndarray) -> np.ndarray:
    """``(frames, d)`` -> ``(4 d,)``: mean, std, 10th and 90th percentiles of each column."""
    p10, p90 = np.percentile(m, [10, 90], axis=0)
    return np.concatenate([m.mean(0), m.std(0), p10, p90])


def _contour(m: np.ndarray) -> np.ndarray:
    """``(frames, d)`` -> ``(3, d)``: the column means over the first, middle and last thirds (the
    whole window for each when it has under three frames)."""
    if len(m) < len(THIRDS):
        return np.repeat(m.mean(0, keepdims=True), len(THIRDS), 0)
    return np.stack([part.mean(0) for part in np.array_split(m, len(THIRDS))])


def functionals(power: np.ndarray, frames: np.ndarray, logmel: np.ndarray, mfcc: np.ndarray,
                sr: int, logmel_deltas: np.ndarray) -> np.ndarray:
    """``(DIM,)`` float32 from a window's power spectra ``(T, bins)``, sample frames ``(T, n_fft)``,
    log-mel ``(T, n_mels)``, MFCC with both deltas ``(T, 3 n_mfcc)`` and log-mel deltas ``(T, n_mels)``."""
    n_mfcc = mfcc.shape[1] // 3
    freqs = np.linspace(0.0, sr / 2.0, power.shape[1])
    total = power.sum(1) + 1e-10
    centroid = power @ freqs / total
    bandwidth = np.sqrt(np.maximum(power @ freqs ** 2 / total - centroid ** 2, 0.0))
    rolloff = freqs[np.minimum(np.argmax(np.cumsum(power, 1) >= 0.85 * total[:, None], axis=1),
                               len(freqs) - 1)]
    flatness = np.exp(np.log(power + 1e-10).mean(1)) / (power.mean(1) + 1e-10)
    zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=1)), axis=1)
    rms_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-10)
    desc = np.concatenate([np.stack([centroid / 1000.0, bandwidth / 1000.0, rolloff / 1000.0, flatness, zcr,
                                     rms_db], 1), _contrast(power, freqs)], 1)
    active = np.mean(rms_db > rms_db.max() - 35.0)
    coef = mfcc[:, :n_mfcc]
    contour = _contour(np.concatenate([coef, logmel], 1)).ravel()
    q25, q50, q75 = np.percentile(coef, [25, 50, 75], axis=0)
    vec = np.concatenate([_stats(coef), _stats(mfcc[:, n_mfcc:2 * n_mfcc]), mfcc[:, 2 * n_mfcc:].std(0),
                          _stats(logmel), _stats(desc), [active], contour, _contour(rms_db[:, None]).ravel(),
                          logmel_deltas.std(0), np.abs(logmel_deltas).mean(0),
                          q50, q75 - q25, np.ptp(coef, 0), np.median(logmel, 0)])
    return np.nan_to_num(vec).astype(np.float32)
