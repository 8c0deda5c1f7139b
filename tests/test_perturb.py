"""Perturbations for robustness reports: deterministic, the right size, stronger hurts more."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras import perturb as P


def _faces(n=6, size=48):
    rng = np.random.default_rng(0)
    base = np.tile(np.linspace(40, 220, size, dtype=np.float32), (size, 1))
    return np.clip(base[None, :, :, None] + rng.normal(0, 8, (n, size, size, 1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", list(P.FACE))
def test_face_perturbations_are_deterministic_and_grow_with_strength(kind):
    x = _faces()
    strengths, unit = P.FACE[kind]
    assert len(strengths) >= 3 and unit
    diffs = []
    for s in strengths:
        a, b = P.perturb_faces(x, kind, s, seed=3), P.perturb_faces(x, kind, s, seed=3)
        assert a.shape == x.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        diffs.append(float(np.abs(a.astype(float) - x).mean()))
    assert diffs[0] > 0
    assert diffs[-1] >= diffs[0]  # the strongest setting changes the crop at least as much as the mildest


def test_occlusions_hit_the_regions_they_name():
    x = _faces(2)
    eyes = P.perturb_faces(x, "eyes", 0.2)
    changed = np.abs(eyes.astype(int) - x).sum(axis=(0, 2, 3)) > 0
    assert changed[19] and not changed[5] and not changed[40]  # rows around 40 % height only
    mouth = P.perturb_faces(x, "mouth", 0.3)
    rows = np.abs(mouth.astype(int) - x).sum(axis=(0, 2, 3)) > 0
    assert rows[36] and not rows[20]
    assert P.expand(["occlusion", "blur"], P.FACE) == ["eyes", "mouth", "blocks", "blur"]
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.expand(["fog"], P.FACE)


@pytest.mark.parametrize("kind", list(P.SPEECH))
def test_audio_perturbations(kind):
    sr = 16000
    t = np.arange(sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    for s in P.SPEECH[kind][0]:
        a, b = P.perturb_audio(y, sr, kind, s, seed=1), P.perturb_audio(y, sr, kind, s, seed=1)
        assert a.shape == y.shape and a.dtype == np.float32 and np.abs(a).max() <= 1.0
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, y)
    if kind == "noise":  # the SNR is what it says
        a = P.perturb_audio(y, sr, "noise", 10.0)
        snr = 10 * np.log10(np.mean(y ** 2) / np.mean((a - y) ** 2))
        assert snr == pytest.approx(10.0, abs=0.5)
    with pytest.raises(ValueError):
        P.perturb_audio(y, sr, "underwater", 1)
