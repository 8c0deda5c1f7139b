"""Fit a training schedule to a wall-clock budget (``face train --time-budget 90m``).

On a 2-core CPU the number of epochs that fit in an afternoon decides accuracy more than anything
else, and a cosine schedule must know its length before it starts. :func:`size_epochs` times real
train steps of the model on its own data, subtracts the compilation it saw, and chooses the epochs
that fit; the choice is written to ``run_dir/budget.json`` so a killed run resumes with the same
schedule instead of measuring again. :class:`BudgetGuard` stops training (after a whole epoch) if
the budget runs out anyway, e.g. on a machine that became busier, and paces the cosine learning
rate by the clock (:func:`paced_rate`) so that a run stopped early still ends annealed, and one whose
epochs run faster than timed goes on (up to :data:`GROWTH` times the plan) until the budget is used.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from emotion_keras.data.cache import atomic_write_json


# Per-epoch cost outside the train steps: the validation callbacks, best checkpoint, resume backup.
EPOCH_OVERHEAD_S = 1.0
_clock = time.perf_counter  # the guard's clock (tests replace it)
# How far the schedule may outgrow its plan. Eight steps timed while a test ran beside the training
# planned 35 epochs of 158 s that then ran in 90-145 s: without growth the run would have stopped
# after 35 epochs, some 60 of its 95 minutes; it ran 47.
GROWTH = 3


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
           "max_epochs": epochs * GROWTH,
           "step_seconds": round(step, 5), "epoch_seconds": round(epoch, 2),
           "compile_seconds": round(first, 2), "measure_seconds": round(spent, 2),
           "images_per_second": round(bs / step, 1) if step > 0 else None}
    atomic_write_json(path, out)
    return out


def epochs_left(used: float, epochs_done: int, budget: float) -> int:
    """Whole epochs that still fit in ``budget`` seconds at the mean pace so far (the guard's rule:
    one more epoch starts while at least half of one fits)."""
    per_epoch = used / max(epochs_done, 1)
    return max(0, int((budget - used) / per_epoch + 0.5)) if per_epoch > 0 else 1


def max_epochs(plan: dict) -> int:
    """The most epochs a plan's schedule may grow to (a plan written before growth: its own epochs,
    so a run killed under the old rule resumes on the same schedule)."""
    return int(plan.get("max_epochs", plan["epochs"]))


def paced_rate(epoch: int, planned: int, used: float, budget: float, base: float, warmup: int = 0,
               alpha: float = 0.01, most: int | None = None) -> float:
    """The learning rate of ``epoch`` (0-based) on a cosine from ``base`` down to ``alpha * base``
    that ends with the budget. Its length is the ``planned`` epochs until one has run; then the
    epochs that the pace so far (``used`` seconds) fits in the budget, at most ``most`` (default
    ``planned``): on this 2-core host, epochs swing between about 90 and 140 s, and a step-counted
    schedule stopped by the guard at 47 of 57 epochs ended at 9% of its peak rate instead of the
    planned 1%. ``warmup`` epochs ramp up linearly first."""
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    length = planned if epoch == 0 else \
        min(most or planned, epoch + max(1, epochs_left(used, epoch, budget)))
    progress = min(1.0, (epoch - warmup + 0.5) / max(1, length - warmup))
    return base * (alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * progress)))


class BudgetGuard:
    """Keras callback: stop after the epoch in which the budget (summed over resumed runs) ran out;
    with ``pace`` (``{"base", "warmup", "alpha"}``; ``compile_model(..., paced=True)``) also set each
    epoch's learning rate by :func:`paced_rate` (a schedule of at most ``most`` epochs). The rates are
    recorded in ``budget.json``."""

    def __new__(cls, run_dir: Path, budget_seconds: float, planned_epochs: int = 0, pace: dict | None = None,
                most: int | None = None):
        import keras

        path = Path(run_dir) / "budget.json"

        def read() -> dict:
            return json.loads(path.read_text()) if path.exists() else {}

        class _Guard(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = _clock()
                self.before = float(read().get("used_seconds", 0.0))

            def used(self) -> float:
                return self.before + _clock() - self.start

            def on_epoch_begin(self, epoch, logs=None):
                if pace:
                    self.rate = paced_rate(epoch, planned_epochs, self.used(), budget_seconds, most=most, **pace)
                    self.model.optimizer.learning_rate = self.rate

            def on_epoch_end(self, epoch, logs=None):
                used = self.used()
                data = {**read(), "used_seconds": round(used, 1)}
                if pace:  # one write per epoch: an epoch killed midway is rerun, and its rate recomputed
                    data["rates"] = (data.get("rates") or [])[:epoch] + [round(self.rate, 8)]
                atomic_write_json(path, data)
                if epochs_left(used, epoch + 1, budget_seconds) == 0:
                    self.model.stop_training = True

        return _Guard()
