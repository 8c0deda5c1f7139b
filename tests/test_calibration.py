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


def test_balance_divides_by_the_prior_and_zero_keeps_the_decision():
    prior = np.array([0.9, 0.1])
    probs = np.array([[0.6, 0.4], [0.95, 0.05]], np.float32)
    np.testing.assert_array_equal(C.apply_balance(probs, prior, 0.0), probs)
    np.testing.assert_array_equal(C.apply_balance(probs, None, 1.0), probs)  # a card without a prior
    full = C.apply_balance(probs, prior, 1.0)
    np.testing.assert_allclose(full[0], np.array([0.6 / 0.9, 0.4 / 0.1]) / (0.6 / 0.9 + 0.4 / 0.1), rtol=1e-6)
    assert full.argmax(1).tolist() == [1, 0]  # the rare class wins the close call only
    half = C.apply_balance(probs, prior, 0.5)
    assert full[0, 1] > half[0, 1] > probs[0, 1]
    np.testing.assert_allclose(half.sum(1), 1, atol=1e-6)


def test_rebalance_moves_between_balances_without_the_model():
    prior = np.array([0.6, 0.3, 0.1])
    raw = np.random.default_rng(1).dirichlet(np.ones(3), 5).astype(np.float32)
    at = {b: C.apply_balance(raw, prior, b) for b in (0.0, 0.5, 1.0)}
    np.testing.assert_allclose(C.rebalance(at[0.5], prior, 0.5, 1.0), at[1.0], atol=1e-6)
    np.testing.assert_allclose(C.rebalance(at[1.0], prior, 1.0, 0.0), at[0.0], atol=1e-6)
    np.testing.assert_array_equal(C.rebalance(at[0.5], None, 0.5, 1.0), at[0.5])


def test_balance_one_is_the_bayes_decision_for_equal_frequencies():
    """Calibrated posteriors of a skewed training prior, divided by that prior, maximise UAR."""
    rng = np.random.default_rng(0)
    prior = np.array([0.7, 0.2, 0.1])
    means = np.eye(3) * 1.2
    y = rng.choice(3, 6000, p=prior)
    x = means[y] + rng.normal(0, 1, (6000, 3))
    lik = np.exp(-0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1))
    post = lik * prior / (lik * prior).sum(1, keepdims=True)

    def uar(p):
        return np.mean([(p.argmax(1)[y == c] == c).mean() for c in range(3)])

    scores = {b: uar(C.apply_balance(post, prior, b)) for b in (0.0, 0.5, 1.0)}
    assert scores[1.0] > scores[0.5] > scores[0.0]
    accuracy = {b: (C.apply_balance(post, prior, b).argmax(1) == y).mean() for b in (0.0, 1.0)}
    assert accuracy[0.0] > accuracy[1.0]  # the skewed test set itself is best served by the prior


def test_class_prior_of_soft_targets_and_class_weights():
    soft = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(C.class_prior(soft, 3), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(C.class_prior(np.array([0, 0, 0, 1]), 2, {0: 1.0, 1: 3.0}), [0.5, 0.5])


def test_prior_entry_round_trips_through_a_card_and_checks_balance():
    entry = C.prior_entry(["happy", "sad"], [0.8, 0.2], "test")
    assert entry == {"frequencies": {"happy": 0.8, "sad": 0.2}, "balance": C.DEFAULT_BALANCE, "source": "test"}
    prior, balance = C.prior_of({"classes": ["sad", "happy"], "class_prior": entry})
    np.testing.assert_allclose(prior, [0.2, 0.8])  # in the card's class order
    assert balance == C.DEFAULT_BALANCE
    assert C.prior_of({"classes": ["happy", "angry"], "class_prior": entry}) == (None, 0.0)  # not its classes
    assert C.prior_of({}) == (None, 0.0)
    cal = C.Calibration.of({"classes": ["happy", "sad"], "class_prior": entry,
                            "calibration": {"method": "temperature", "temperature": 2.0}}, balance=1.0)
    assert (cal.temperature, cal.balance) == (2.0, 1.0)
    np.testing.assert_allclose(cal(np.array([[0.8, 0.2]])),
                               C.apply_balance(C.apply_temperature(np.array([[0.8, 0.2]]), 2.0), [0.8, 0.2], 1.0))
    with pytest.raises(ValueError, match=r"balance must be in \[0, 1\]"):
        C.Calibration.of({}, balance=1.5)
