"""Temperature scaling, ECE and reliability diagrams (emotion_keras.calibration): plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras import calibration as C


def _overconfident(n=4000, k=7, true_t=2.0, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(z * true_t): over-confident by true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, k))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in p_true])
    reported = np.exp(z * true_t) / np.exp(z * true_t).sum(1, keepdims=True)
    return reported.astype(np.float32), y


def test_fit_recovers_the_temperature_and_lowers_ece():
    probs, y = _overconfident()
    t = C.fit_temperature(probs, y)
    assert t == pytest.approx(2.0, rel=0.08)
    cal = C.apply_temperature(probs, t)
    assert C.ece(cal, y) < 0.03 < C.ece(probs, y)
    assert C.nll(cal, y) < C.nll(probs, y)
    assert (cal.argmax(1) == probs.argmax(1)).all()  # accuracy untouched
    np.testing.assert_allclose(cal.sum(1), 1, atol=1e-5)


def test_temperature_one_is_the_identity_and_cards_without_calibration_use_it():
    probs, _ = _overconfident(50)
    assert C.apply_temperature(probs, 1.0) is not None
    np.testing.assert_array_equal(C.apply_temperature(probs, 1.0), probs)
    assert C.temperature_of({}) == 1.0 and C.temperature_of(None) == 1.0
    assert C.temperature_of({"calibration": {"method": "temperature", "temperature": 1.7}}) == 1.7


def test_grouped_fit_calibrates_pooled_clips():
    probs, y = _overconfident(900, true_t=1.6, seed=1)
    groups = np.repeat(np.arange(300), 3)  # three windows per clip share its label
    y_clip = y[::3]
    t = C.fit_temperature(probs, y_clip, groups)
    pooled = C.pool(C.apply_temperature(probs, t), groups)
    assert pooled.shape == (300, 7)
    assert C.nll(pooled, y_clip) <= C.nll(C.pool(probs, groups), y_clip) + 1e-9


def test_reliability_bins_and_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], np.float32)
    y = np.array([0, 1, 0, 0])
    rel = C.reliability(probs, y, bins=10)
    full = [b for b in rel["bins"] if b["count"]]
    assert [(b["count"], round(b["confidence"], 2), b["accuracy"]) for b in full] == [(2, 0.6, 1.0), (2, 0.9, 0.5)]
    assert rel["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert sum(b["count"] for b in rel["bins"]) == 4


def test_entry_noise_floor_and_plot(tmp_path):
    probs, y = _overconfident(600)
    entry = C.calibration_entry(probs, y, "synthetic")
    assert entry["ece_after"] < entry["ece_before"]
    assert 0 < entry["ece_noise_floor"] < 0.1
    rel = C.reliability(C.apply_temperature(probs, entry["temperature"]), y)
    png = C.plot_reliability(rel["bins"], tmp_path / "r.png", "synthetic", rel["ece"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_samples_is_an_error():
    with pytest.raises(ValueError, match="no validation samples"):
        C.fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
