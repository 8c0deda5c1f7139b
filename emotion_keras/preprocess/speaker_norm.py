"""Speaker normalisation of speech feature windows: remove who is speaking, keep how they feel.

Features are standardised per feature dimension with statistics of one *group* of windows:

* at training time a group is a speaker (statistics over all of that speaker's training windows: their
  mean, and their variance shrunk towards the typical speaker's, :func:`group_stats`), so a speaker's
  voice (pitch range, timbre, recording chain) is subtracted but the differences between their
  emotions are kept;
* a held-out speaker in cross-validation is standardised with the statistics of their own clips
  (labels unused): the enrolment setting;
* at inference a group is one file: the recogniser never knows who is speaking, and a long recording
  is mostly one speaker anyway. A 3 s clip is too short to estimate a voice from (its own mean is
  mostly its emotion), so file statistics are shrunk towards the *typical training speaker's*
  statistics (the ``prior`` on the model card) with a weight of ``PRIOR_FRAMES`` frames: a short clip
  is normalised almost as an average speaker, a long recording almost by itself. Inputs with one
  vector per window (functionals, prosody) weigh the prior as ``PRIOR_WINDOWS`` windows, also about a
  minute of speech. Streams use running statistics with the same prior.
* after *enrolment* (:func:`enrolment`: some unlabelled clips of the speaker), the speaker's own
  statistics replace the typical speaker's, weighted by how much of their speech was heard.

Padding frames (all zero, after :func:`emotion_keras.preprocess.audio.window_feature`) are neither
counted nor changed. Plain numpy: used by training, evaluation and the recogniser alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MODES = ("none", "speaker")  # 'speaker': per-speaker at training, per-file at inference
EPS = 1e-3
PRIOR_FRAMES = 3000.0  # one minute of 20 ms frames
PRIOR_WINDOWS = 20.0  # one minute of 3 s windows: the weight where each window is one vector (functionals, prosody)


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


def group_stats(x: np.ndarray, prior: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One speaker's ``(mean, std)`` from windows of their speech: their own mean, and their variance
    shrunk towards the typical speaker's (``prior["var"]``) with the weight of :func:`prior_weight`.

    A few clips pin a voice's offset (pitch, timbre, channel) well enough but not its spread over
    hundreds of dimensions: enrolling held-out RAVDESS speakers from 6 of their clips gave 0.603
    accuracy with their own variances and 0.630 with shrunk ones, against 0.669 from all 60
    (``docs/benchmarks/speech_enrolment.md``).
    """
    s, ss, n = frame_stats(x)
    if not prior:
        return _mean_std(s, ss, n)
    mean = s / max(n, 1.0)
    w = prior_weight(x)
    var = (np.maximum(ss - n * mean ** 2, 0.0) + w * np.asarray(prior["var"], np.float64)) / (n + w)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), EPS).astype(np.float32)


def normalise_groups(x: np.ndarray, groups, prior: dict | None = None) -> np.ndarray:
    """Standardise each group of windows (e.g. each speaker) with its own :func:`group_stats`."""
    groups = np.asarray(groups)
    out = np.empty(np.shape(x), np.float32)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = standardise(x[idx], *group_stats(x[idx], prior))
    return out


def speaker_prior(x: np.ndarray, groups) -> dict[str, list[float]]:
    """The typical speaker: mean over groups of their per-feature means and variances (JSON-able)."""
    groups = np.asarray(groups)
    means, vars_ = [], []
    for g in np.unique(groups):
        s, ss, n = frame_stats(x[groups == g])
        m = s / max(n, 1.0)
        means.append(m)
        vars_.append(np.maximum(ss / max(n, 1.0) - m ** 2, 0.0))
    return {"mean": np.mean(means, 0).round(6).tolist(), "var": np.mean(vars_, 0).round(6).tolist()}


def prior_weight(x: np.ndarray) -> float:
    """The prior's weight in counted units: frames, or windows where a window is one vector."""
    x = np.asarray(x)
    return PRIOR_WINDOWS if x.ndim == 2 or x.shape[1] == 1 else PRIOR_FRAMES


def enrolment(x: np.ndarray, prior: dict | None = None) -> dict[str, Any]:
    """One speaker's statistics from windows of their unlabelled speech (:func:`group_stats`, the
    variance shrunk towards ``prior``): ``{"mean", "var", "weight"}``, a prior that outweighs the
    typical speaker's by as much of their speech as was heard (the cross-validation's enrolment
    setting, for a recogniser)."""
    mean, std = group_stats(x, prior)
    return {"mean": mean.tolist(), "var": np.square(std.astype(np.float64)).tolist(), "weight": frame_stats(x)[2]}


def _with_prior(s, ss, n, prior, weight):
    if not prior:
        return s, ss, n
    m0, v0 = np.asarray(prior["mean"], np.float64), np.asarray(prior["var"], np.float64)
    return s + weight * m0, ss + weight * (v0 + m0 ** 2), n + weight


def normalise_file(x: np.ndarray, prior: dict | None = None, weight: float | None = None) -> np.ndarray:
    """All windows of one file as one group (inference), its statistics shrunk towards ``prior``
    (``weight``: the prior's own, from :func:`enrolment`, else :func:`prior_weight`)."""
    weight = (prior or {}).get("weight", prior_weight(x)) if weight is None else weight
    return standardise(x, *_mean_std(*_with_prior(*frame_stats(x), prior, weight)))


class RunningNormaliser:
    """Per-file normalisation of a stream: statistics over every window seen so far, this batch
    included (shrunk towards ``prior``), so a long recording's first minute is normalised as well
    as it can be at that point."""

    def __init__(self, prior: dict | None = None, weight: float | None = None):
        self.s = self.ss = None
        self.n = 0.0
        self.prior, self.weight = prior, weight

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.weight is None:
            self.weight = (self.prior or {}).get("weight", prior_weight(x))
        s, ss, n = frame_stats(x)
        if self.s is None:
            self.s, self.ss = s, ss
        else:
            self.s, self.ss = self.s + s, self.ss + ss
        self.n += n
        return standardise(x, *_mean_std(*_with_prior(self.s, self.ss, self.n, self.prior, self.weight)))
