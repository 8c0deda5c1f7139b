"""Fit a training schedule to a wall-clock budget (``face train --time-budget 90m``).

On a 2-core CPU the number of epochs that fit in an afternoon decides accuracy more than anything
else, and a cosine schedule must know its length before it starts. :func:`size_epochs` times real
train steps of the model on its own data, subtracts the compilation it saw, and chooses the epochs
that fit; the choice is written to ``run_dir/budget.json`` so a killed run resumes with the same
schedule instead of measuring again. :class:`BudgetGuard` stops training (after a whole epoch) if
the budget runs out anyway, e.g. on a machine that became busier.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from emotion_keras.data.cache import atomic_write_json


# Per-epoch cost outside the train steps: the validation callbacks, best checkpoint, resume backup.
EPOCH_OVERHEAD_S = 1.0


def _batch(x, idx):
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]


def size_epochs(model, x_train, y_train, x_val, config, steps_per_epoch: int, run_dir: Path,
                measure_steps: int = 8) -> dict:
    """``{"epochs", "step_seconds", "epoch_seconds", ...}`` for ``config.time_budget`` seconds.

    Reuses ``run_dir/budget.json`` when it was made for the same budget and batch size (resume).
    The model's weights are restored after the timing steps.
    """
    from emotion_keras.train import _len, compile_model, resolve_jit

    path = Path(run_dir) / "budget.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("budget_seconds") == config.time_budget and saved.get("batch_size") == config.batch_size:
            return saved
    t0 = time.perf_counter()
    initial = [np.array(w) for w in model.get_weights()]
    # Time the step the planned (long) schedule will run: XLA unless the model is recurrent.
    jit = "on" if resolve_jit(model, config) else "off"
    compile_model(model, config.replace(epochs=1, jit_compile=jit), steps_per_epoch)
    n, bs = _len(x_train), min(config.batch_size, _len(x_train))
    rng = np.random.default_rng(config.seed)
    batches = [np.sort(rng.choice(n, bs, replace=False)) for _ in range(measure_steps + 1)]
    t_compile = time.perf_counter()
    model.train_on_batch(_batch(x_train, batches[0]), y_train[batches[0]])  # compiles
    first = time.perf_counter() - t_compile
    t_steps = time.perf_counter()
    for idx in batches[1:]:
        model.train_on_batch(_batch(x_train, idx), y_train[idx])
    step = (time.perf_counter() - t_steps) / measure_steps
    n_val = _len(x_val)
    vb = min(config.batch_size, n_val)
    val_idx = np.arange(vb)
    model.predict_on_batch(_batch(x_val, val_idx))  # compiles
    t_val = time.perf_counter()
    model.predict_on_batch(_batch(x_val, val_idx))
    val_batch = time.perf_counter() - t_val
    model.set_weights(initial)
    epoch = steps_per_epoch * step + int(np.ceil(n_val / vb)) * val_batch + EPOCH_OVERHEAD_S
    spent = time.perf_counter() - t0
    # Fitting compiles again (a fresh optimizer) and predicts once more at the end.
    available = config.time_budget - spent - first - epoch * 0.1
    epochs = int(max(1, available // epoch))
    out = {"budget_seconds": config.time_budget, "batch_size": config.batch_size, "epochs": epochs,
           "step_seconds": round(step, 5), "epoch_seconds": round(epoch, 2),
           "compile_seconds": round(first, 2), "measure_seconds": round(spent, 2),
           "images_per_second": round(bs / step, 1) if step > 0 else None}
    atomic_write_json(path, out)
    return out


class BudgetGuard:
    """Keras callback: stop after the epoch in which the budget (summed over resumed runs) ran out."""

    def __new__(cls, run_dir: Path, budget_seconds: float):
        import keras

        path = Path(run_dir) / "budget.json"

        class _Guard(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.perf_counter()
                data = json.loads(path.read_text()) if path.exists() else {}
                self.before = float(data.get("used_seconds", 0.0))

            def on_epoch_end(self, epoch, logs=None):
                used = self.before + time.perf_counter() - self.start
                data = json.loads(path.read_text()) if path.exists() else {}
                atomic_write_json(path, {**data, "used_seconds": round(used, 1)})
                epoch_s = used / max(epoch + 1, 1)
                if used + 0.5 * epoch_s > budget_seconds:
                    self.model.stop_training = True

        return _Guard()
