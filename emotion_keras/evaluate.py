"""Metrics every modality reports: accuracy, UAR (mean per-class recall), macro-F1, confusion matrix.

Plain numpy, so reports can be recomputed from saved predictions without a backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.data.cache import atomic_write, atomic_write_json


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def metrics(y_true, probs_or_pred, classes: list[str]) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1, per-class recall and the confusion matrix.

    Classes absent from ``y_true`` are left out of UAR and macro-F1 (their recall is undefined), and
    listed as such, rather than counted as zero.
    """
    y_true = np.asarray(y_true, int)
    pred = np.asarray(probs_or_pred)
    y_pred = pred.argmax(-1) if pred.ndim == 2 else pred.astype(int)
    n = len(classes)
    cm = confusion_matrix(y_true, y_pred, n)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = np.diag(cm).astype(float)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros(n), where=present)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n),
                   where=(precision + recall) > 0)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "uar": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_class_recall": {c: float(recall[i]) for i, c in enumerate(classes) if present[i]},
        "classes": list(classes),
        "absent_classes": [c for i, c in enumerate(classes) if not present[i]],
        "confusion_matrix": cm.tolist(),
    }


def plot_confusion(cm, classes: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(classes), 0.8 + 0.7 * len(classes)), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return Path(path)


def write_report(report: dict[str, Any], out_dir: Path, stem: str = "evaluation") -> dict[str, Path]:
    """Write ``report`` (from :func:`metrics` plus protocol) as JSON, its confusion matrix as PNG and,
    when it has a ``calibration`` section, its reliability diagram (``<stem>_reliability.png``)."""
    out_dir = Path(out_dir)
    paths = {"json": atomic_write_json(out_dir / f"{stem}.json", report)}
    if "confusion_matrix" in report:
        paths["png"] = plot_confusion(report["confusion_matrix"], report["classes"],
                                      out_dir / f"{stem}_confusion.png", report.get("protocol", ""))
    cal = report.get("calibration") or {}
    if cal.get("reliability"):
        from emotion_keras.calibration import plot_reliability

        before = cal.get("ece_uncalibrated", float("nan"))
        title = f"T = {cal.get('temperature', 1.0):.3g}; uncalibrated ECE {before:.3f}"
        paths["reliability"] = plot_reliability(cal["reliability"], out_dir / f"{stem}_reliability.png",
                                                title, cal.get("ece"))
    return paths
