"""Speaker normalisation of speech feature windows: remove who is speaking, keep how they feel.

Features are standardised per feature dimension with statistics of one *group* of windows:

* at training time a group is a speaker (statistics over all of that speaker's training windows), so
  a speaker's voice (pitch range, timbre, recording chain) is subtracted but the differences between
  their emotions are kept;
* at inference (and on held-out speakers) a group is one file: the recogniser never knows who is
  speaking, and a long recording is mostly one speaker anyway. Streams use running statistics.

Padding frames (all zero, after :func:`emotion_keras.preprocess.audio.window_feature`) are neither
counted nor changed. Plain numpy: used by training, evaluation and the recogniser alike.
"""

from __future__ import annotations

import numpy as np

MODES = ("none", "speaker")  # 'speaker': per-speaker at training, per-file at inference
EPS = 1e-3


def valid_frames(x: np.ndarray) -> np.ndarray:
    """``(windows, frames)`` bool: frames that hold signal (zero-padded frames are False)."""
    return np.any(np.asarray(x) != 0, axis=-1)


def frame_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-feature sum, sum of squares and frame count over the valid frames of ``x``
    ``(windows, frames, features)`` (or ``(windows, features)`` vectors, all valid)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        return x.sum(0), np.square(x).sum(0), float(len(x))
    m = valid_frames(x)
    v = x[m]
    return v.sum(0), np.square(v).sum(0), float(len(v))


def _mean_std(s: np.ndarray, ss: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    n = max(n, 1.0)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(std, EPS).astype(np.float32)


def standardise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` on valid frames; padding stays zero. Returns float32."""
    x = np.asarray(x, np.float32)
    out = (x - mean) / std
    if x.ndim == 3:
        out[~valid_frames(x)] = 0.0
    return out.astype(np.float32)


def normalise_groups(x: np.ndarray, groups) -> np.ndarray:
    """Standardise each group of windows (e.g. each speaker, or each file) with its own statistics."""
    groups = np.asarray(groups)
    out = np.empty(np.shape(x), np.float32)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        mean, std = _mean_std(*frame_stats(x[idx]))
        out[idx] = standardise(x[idx], mean, std)
    return out


def normalise_file(x: np.ndarray) -> np.ndarray:
    """All windows of one file as one group (what the recogniser does at inference)."""
    return normalise_groups(x, np.zeros(len(x), int))


class RunningNormaliser:
    """Per-file normalisation of a stream: statistics over every window seen so far, this batch
    included, so a long recording's first minute is normalised as well as it can be at that point."""

    def __init__(self):
        self.s = self.ss = None
        self.n = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s, ss, n = frame_stats(x)
        if self.s is None:
            self.s, self.ss = s, ss
        else:
            self.s, self.ss = self.s + s, self.ss + ss
        self.n += n
        return standardise(x, *_mean_std(self.s, self.ss, self.n))
