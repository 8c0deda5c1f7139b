"""One fit wrapper for every modality: schedule, class weights, label smoothing, mixed precision,
UAR monitoring, early stopping, checkpoints, CSV history, and resume after a kill.

A run directory holds everything about one training run; rerunning the same command on it resumes
from the last finished epoch (``keras.callbacks.BackupAndRestore``) instead of starting over.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import TrainConfig
from emotion_keras.evaluate import metrics


def configure_precision(config: TrainConfig) -> str:
    """Set the global dtype policy before a model is built: bf16 on a GPU when ``auto``."""
    import keras

    policy = "float32"
    if config.mixed_precision == "on" or (config.mixed_precision == "auto" and _has_gpu()):
        policy = "mixed_bfloat16"
    keras.mixed_precision.set_dtype_policy(policy)
    return policy


def _has_gpu() -> bool:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return any(d.platform == "gpu" for d in jax.devices())
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:
        return False
    return False


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights normalised to mean 1 over the classes present."""
    counts = np.bincount(np.asarray(y, int), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return {i: float(w[i]) if present[i] else 1.0 for i in range(n_classes)}


def _take(x, idx):
    if isinstance(x, dict):
        return {k: v[idx] for k, v in x.items()}
    return x[idx]


def _len(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


class UARCallback:
    """Adds ``val_uar`` to the epoch logs so early stopping and checkpoints can monitor it."""

    def __new__(cls, x_val, y_val, classes, batch_size):
        import keras

        class _UAR(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                probs = self.model.predict(x_val, batch_size=batch_size, verbose=0)
                m = metrics(y_val, probs, classes)
                if logs is not None:
                    logs["val_uar"] = m["uar"]
                    logs["val_macro_f1"] = m["macro_f1"]

        return _UAR()


def compile_model(model, config: TrainConfig, steps_per_epoch: int) -> None:
    import keras

    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    if config.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, decay_steps=total - warmup, alpha=0.01,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    else:
        lr = config.learning_rate
    model.compile(
        optimizer=keras.optimizers.AdamW(lr, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


def fit(model, x_train, y_train, x_val, y_val, classes: list[str], config: TrainConfig,
        run_dir: str | Path, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Train ``model`` and return the history and the best epoch's validation metrics.

    ``x_*`` are arrays or dicts of arrays (named model inputs); ``y_*`` integer class indices. The
    best weights by ``config.monitor`` are restored at the end. ``run_dir`` receives ``history.csv``
    (the training curves), ``best.weights.h5`` and the resume state.
    """
    import keras

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    n_classes = len(classes)
    y_train = np.asarray(y_train, int)
    y_val = np.asarray(y_val, int)
    steps = int(np.ceil(_len(x_train) / config.batch_size))
    compile_model(model, config, steps)

    mode = "min" if config.monitor == "val_loss" else "max"
    best_path = run_dir / "best.weights.h5"
    callbacks = [
        UARCallback(x_val, y_val, classes, config.batch_size),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor=config.monitor, mode=mode,
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(run_dir / "resume"), delete_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=config.monitor, mode=mode,
                                                       patience=config.early_stopping))
    callbacks += extra_callbacks or []

    start = time.perf_counter()
    history = model.fit(
        x_train, keras.utils.to_categorical(y_train, n_classes),
        validation_data=(x_val, keras.utils.to_categorical(y_val, n_classes)),
        batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
        class_weight=class_weights(y_train, n_classes) if config.class_weights else None,
        callbacks=callbacks, verbose=config.verbose,
    )
    seconds = time.perf_counter() - start
    if best_path.exists():
        model.load_weights(str(best_path))
    probs = model.predict(x_val, batch_size=config.batch_size, verbose=0)
    val = metrics(y_val, probs, classes)
    return {
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "epochs_run": len(history.history.get("loss", [])),
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(_len(x_train) * len(history.history.get("loss", [])) / seconds, 1)
        if seconds > 0 else None,
        "validation": val,
        "train_config": config.to_dict(),
    }


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The epochs logged in ``history.csv`` (for the dashboard's training curves)."""
    import csv

    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
