"""Calibrated probabilities: temperature scaling, expected calibration error, reliability diagrams.

A classifier's softmax is often over- or under-confident: "0.9 angry" should be right nine times in
ten. Temperature scaling (Guo et al. 2017) fixes that with one number fitted on the validation split:
``p' = softmax(log p / T)``. Working on log-probabilities rather than logits needs no change to the
saved models (their last layer is a softmax) and gives exactly the logit-scaled result, since
``log softmax(z) = z - const``. ``T`` keeps every argmax, so accuracy, UAR and F1 are unchanged.

Where a clip's result is the mean of its windows' probabilities (speech), the temperature is applied
per window and fitted on the pooled clip probabilities, which is what the recogniser reports.

The fitted temperature lives on the model card (``card["calibration"]``) and every recogniser
applies it (:func:`temperature_of`).

A second, separate correction is for the class frequencies. A model learns the prior of its training
targets: FER+ faces are 35% neutral and 0.5% disgust, so a disgusted face in a user's photo, or in a
corpus with other frequencies (CK+ has no neutral faces at all), is under-predicted. Logit adjustment
(Menon et al. 2021, "Long-tail learning via logit adjustment") divides the calibrated probabilities by
the training prior raised to a ``balance`` in [0, 1] and renormalises: 0 keeps the model's decision,
1 is the Bayes decision under equal class frequencies (it maximises the balanced accuracy of a
calibrated model), 0.5 assumes frequencies halfway (geometrically) between the two. The prior the loss
saw (targets times class weights) and the default balance live on the card (``card["class_prior"]``,
:func:`prior_of`). Plain numpy: no backend needed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

BINS = 15
_EPS = 1e-7


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise; ``T == 1`` returns the probabilities unchanged (as float32)."""
    p = np.asarray(probs, np.float32)
    if temperature == 1.0 or p.size == 0:
        return p
    z = np.log(np.clip(p.astype(np.float64), _EPS, 1.0)) / float(temperature)
    z -= z.max(-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def apply_balance(probs, prior, balance: float) -> np.ndarray:
    """``p / prior ** balance`` row-wise, renormalised; ``balance == 0`` or no prior returns ``probs``."""
    p = np.asarray(probs, np.float32)
    if prior is None or balance == 0 or p.size == 0:
        return p
    q = p.astype(np.float64) / np.clip(np.asarray(prior, np.float64), _EPS, 1.0) ** float(balance)
    return (q / q.sum(-1, keepdims=True)).astype(np.float32)


def rebalance(probs, prior, balance_from: float, balance_to: float) -> np.ndarray:
    """Probabilities corrected at ``balance_from`` as if corrected at ``balance_to`` instead (no model
    call: ``p / prior ** b`` composes), e.g. for a slider over a recogniser's output."""
    return apply_balance(probs, prior, float(balance_to) - float(balance_from))


def class_prior(targets, n_classes: int, weights: dict[int, float] | None = None) -> np.ndarray:
    """The class prior the loss saw: the mean target distribution (class indices count one-hot),
    each class scaled by its class weight, renormalised."""
    t = np.asarray(targets)
    mean = (np.bincount(t.astype(int), minlength=n_classes) / max(len(t), 1) if t.ndim == 1
            else t.astype(np.float64).mean(0))
    if weights:
        mean = mean * np.array([weights.get(i, 1.0) for i in range(n_classes)])
    return mean / mean.sum() if mean.sum() > 0 else np.full(n_classes, 1.0 / n_classes)


DEFAULT_BALANCE = 0.5


def prior_entry(classes: list[str], prior, source: str, balance: float = DEFAULT_BALANCE) -> dict[str, Any]:
    """The card's ``class_prior`` field: ``{"frequencies": {class: p}, "balance", "source"}``."""
    check_balance(balance)
    return {"frequencies": {c: round(float(v), 6) for c, v in zip(classes, prior)},
            "balance": float(balance), "source": source}


def check_balance(balance: float) -> float:
    if not 0.0 <= float(balance) <= 1.0:
        raise ValueError(f"balance must be in [0, 1] (0: the training frequencies, 1: equal ones), not {balance}")
    return float(balance)


def prior_of(card: dict[str, Any] | None) -> tuple[np.ndarray | None, float]:
    """``(prior in the card's class order, default balance)``; ``(None, 0.0)`` for a card without one
    (older cards: the model's decision is kept)."""
    entry = (card or {}).get("class_prior") or {}
    freq = entry.get("frequencies") or {}
    classes = list((card or {}).get("classes") or [])
    if not freq or any(c not in freq for c in classes):
        return None, 0.0
    return np.array([freq[c] for c in classes], np.float64), float(entry.get("balance", DEFAULT_BALANCE))


def pool(probs: np.ndarray, groups) -> np.ndarray:
    """Mean probabilities per group (a clip's windows), groups in sorted order."""
    groups = np.asarray(groups)
    ids = np.unique(groups)
    return np.stack([probs[groups == g].mean(0) for g in ids]) if len(ids) else probs[:0]


def labels(y) -> np.ndarray:
    """Class indices from indices ``(n,)`` or from (soft) target distributions ``(n, classes)``."""
    y = np.asarray(y)
    return (y.argmax(-1) if y.ndim == 2 else y).astype(int)


def nll(probs, y) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.asarray(probs, np.float64)
    y = labels(y)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean()) if len(y) else float("nan")


def fit_temperature(probs, y, groups=None, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature minimising validation NLL (golden-section search over log T).

    ``probs``: (n, classes) softmax outputs; ``y``: true class per row, or per group when ``groups``
    (the group of each row, e.g. its clip) is given: then rows are calibrated and pooled per group.
    """
    probs = np.asarray(probs, np.float32)
    y = labels(y)
    if len(y) == 0:
        raise ValueError("no validation samples to fit a temperature on")

    def loss(log_t: float) -> float:
        p = apply_temperature(probs, float(np.exp(log_t)))
        return nll(pool(p, groups) if groups is not None else p, y)

    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2))


def reliability(probs, y, bins: int = BINS) -> dict[str, Any]:
    """Per equal-width confidence bin: count, mean confidence, accuracy; and the ECE over bins."""
    p = np.asarray(probs, np.float64)
    y = labels(y)
    conf = p.max(-1) if len(p) else np.zeros(0)
    correct = (p.argmax(-1) == y) if len(p) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        c = float(conf[sel].mean()) if n else None
        a = float(correct[sel].mean()) if n else None
        if n:
            ece += n / len(y) * abs(a - c)
        rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": n,
                     "confidence": c, "accuracy": a})
    return {"ece": float(ece) if len(y) else float("nan"), "bins": rows}


def ece(probs, y, bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over bins."""
    return reliability(probs, y, bins)["ece"]


def ece_noise_floor(probs, draws: int = 200, bins: int = BINS, seed: int = 0) -> float:
    """The ECE a *perfectly* calibrated model with these confidences would still show on this many
    samples: the mean ECE when each label is drawn from the probabilities themselves. A measured ECE
    near it is as good as a validation set of this size can tell apart."""
    p = np.asarray(probs, np.float64)
    if not len(p):
        return float("nan")
    rng = np.random.default_rng(seed)
    cum = np.cumsum(p / p.sum(-1, keepdims=True), -1)
    values = []
    for _ in range(draws):
        u = rng.random((len(p), 1))
        y = np.minimum((u > cum).sum(-1), p.shape[-1] - 1)
        values.append(ece(p, y, bins))
    return float(np.mean(values))


def temperature_of(card: dict[str, Any] | None) -> float:
    """The card's fitted temperature (1.0, i.e. none, for an uncalibrated model)."""
    cal = (card or {}).get("calibration") or {}
    return float(cal.get("temperature", 1.0)) if cal.get("method", "temperature") == "temperature" else 1.0


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What turns a model's softmax into the probabilities a recogniser reports: the temperature,
    then the prior correction. ``Calibration.of(card)`` reads both from a card."""

    temperature: float = 1.0
    prior: Any = None  # (classes,) training prior, or None
    balance: float = 0.0

    @classmethod
    def of(cls, card: dict[str, Any] | None, balance: float | None = None) -> Calibration:
        """The card's calibration; ``balance`` (0..1) replaces the card's default balance."""
        prior, default = prior_of(card)
        return cls(temperature_of(card), prior, default if balance is None else check_balance(balance))

    def __call__(self, probs) -> np.ndarray:
        return apply_balance(apply_temperature(probs, self.temperature), self.prior, self.balance)


def calibration_entry(probs, y, protocol: str, groups=None, date: str | None = None) -> dict[str, Any]:
    """The card's ``calibration`` field: the fitted temperature and validation ECE/NLL before and after."""
    import datetime as _dt

    t = fit_temperature(probs, y, groups)
    raw = np.asarray(probs, np.float32)
    cal = apply_temperature(raw, t)
    if groups is not None:
        raw, cal = pool(raw, groups), pool(cal, groups)
    return {"method": "temperature", "temperature": round(t, 5), "fitted_on": protocol, "n": int(len(y)),
            "bins": BINS, "ece_before": round(ece(raw, y), 5), "ece_after": round(ece(cal, y), 5),
            "ece_noise_floor": round(ece_noise_floor(cal), 5),
            "nll_before": round(nll(raw, y), 5), "nll_after": round(nll(cal, y), 5),
            "date": date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def report_section(raw, calibrated, y, temperature: float) -> dict[str, Any]:
    """What an evaluation report says about calibration: ECE of the probabilities the recognisers
    give (calibrated by the card's temperature), the uncalibrated ECE, and the reliability bins."""
    rel = reliability(calibrated, y)
    return {"temperature": temperature, "ece": rel["ece"], "ece_uncalibrated": ece(raw, y),
            "ece_noise_floor": ece_noise_floor(calibrated, draws=50), "nll": nll(calibrated, y),
            "reliability": rel["bins"]}


def plot_reliability(bins: list[dict[str, Any]], path: Path, title: str = "",
                     ece_value: float | None = None) -> Path:
    """A reliability diagram (accuracy vs confidence per bin, with counts) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emotion_keras.data.cache import atomic_write

    fig, (ax, hx) = plt.subplots(2, 1, figsize=(4.4, 5.2), dpi=100, sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    acc = [b["accuracy"] if b["count"] else 0.0 for b in bins]
    conf = [b["confidence"] if b["count"] else c for b, c in zip(bins, centres)]
    ax.bar(centres, acc, width=width * 0.95, color="#457b9d", edgecolor="white", label="accuracy")
    ax.bar(centres, np.subtract(conf, acc), bottom=acc, width=width * 0.95, color="#e63946", alpha=0.35,
           label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=7)
    head = title + (f"\nECE {ece_value:.3f}" if ece_value is not None else "")
    if head.strip():
        ax.set_title(head.strip(), fontsize=8)
    hx.bar(centres, [b["count"] for b in bins], width=width * 0.95, color="#8d99ae")
    hx.set_xlabel("confidence (top probability)")
    hx.set_ylabel("count")
    hx.set_xlim(0, 1)
    fig.tight_layout()
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return Path(path)
