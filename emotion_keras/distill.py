"""Knowledge distillation (Hinton et al., 2015) as training targets.

A teacher (typically an ensemble, too big or slow to ship) predicts the training set once; its
softened probabilities are mixed into the targets, and the student trains through the one
soft-target path of :func:`emotion_keras.train.fit`. Offline, not in the train step, so the student's
step stays as fast and XLA-compiled as any other run; the price is that the teacher sees each
training face un-augmented while the student sees it augmented.
"""

from __future__ import annotations

import numpy as np


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row: T > 1 flattens a teacher that is sure of its own training
    faces, so the student learns which wrong classes it finds plausible, not just its argmax."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def distill_targets(y: np.ndarray, teacher_probs: np.ndarray, weight: float, temperature: float) -> np.ndarray:
    """``(1 - weight) * labels + weight * soften(teacher, temperature)``: ``y`` is class indices
    (1-D) or label distributions (2-D, e.g. FER+ votes); the result is always distributions."""
    teacher = np.asarray(teacher_probs, np.float32)
    if teacher.ndim != 2 or len(teacher) != len(y):
        raise ValueError(f"teacher predictions of shape {teacher.shape} do not match {len(y)} targets")
    labels = np.asarray(y)
    if labels.ndim == 1:
        labels = np.eye(teacher.shape[1], dtype=np.float32)[labels.astype(int)]
    return ((1.0 - weight) * labels + weight * soften(teacher, temperature)).astype(np.float32)
