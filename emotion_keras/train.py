"""One fit wrapper for every modality: schedule, class weights, label smoothing, mixed precision,
UAR monitoring, early stopping, checkpoints, CSV history, and resume after a kill.

A run directory holds everything about one training run; rerunning the same command on it resumes
from the last finished epoch (``keras.callbacks.BackupAndRestore``) instead of starting over.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.calibration import class_prior
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


def class_weights(y: np.ndarray, n_classes: int, power: float = 1.0) -> dict[int, float]:
    """Inverse-frequency weights raised to ``power`` and normalised to mean 1 over the classes present.

    ``power`` 1 balances the classes fully; 0.5 (square root) is the milder choice for a class as rare
    as FER+ disgust (under 1% of the faces), whose full weight would be about 15.
    """
    counts = np.bincount(np.asarray(y, int), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = (counts[present].sum() / (present.sum() * counts[present])) ** power
    w[present] /= w[present].mean()
    return {i: float(w[i]) if present[i] else 1.0 for i in range(n_classes)}


def config_class_weights(y: np.ndarray, n_classes: int, config) -> dict[int, float] | None:
    """The class weights ``config`` (a ``TrainConfig``) asks for on targets ``y`` (None: none)."""
    return class_weights(hard_labels(y), n_classes, config.class_weight_power) if config.class_weights else None


def _take(x, idx):
    if isinstance(x, dict):
        return {k: v[idx] for k, v in x.items()}
    return x[idx]


def _len(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def as_distributions(y, n_classes: int) -> np.ndarray:
    """Targets as ``(N, n_classes)`` float32 rows: class indices become one-hot, distributions
    (FER+ votes, mixed labels) are checked and passed through."""
    y = np.asarray(y)
    if y.ndim == 1:
        return np.eye(n_classes, dtype=np.float32)[y.astype(int)]
    if y.ndim != 2 or y.shape[1] != n_classes:
        raise ValueError(f"targets must be (N,) class indices or (N, {n_classes}) distributions, "
                         f"got shape {y.shape}")
    y = y.astype(np.float32)
    if (y < 0).any() or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("target distributions must be non-negative rows that sum to 1")
    return y


def hard_labels(y) -> np.ndarray:
    """Class indices of targets given as indices or as distributions (their argmax)."""
    y = np.asarray(y)
    return (y.argmax(axis=1) if y.ndim == 2 else y).astype(int)


class UARCallback:
    """Scores the validation set once per epoch: ``val_loss``, ``val_accuracy``, ``val_uar`` and
    ``val_macro_f1`` into the epoch logs, so early stopping and checkpoints can monitor them (one
    prediction pass instead of Keras' validation plus ours), and the epoch's wall time
    (``epoch_seconds``, for accuracy-against-time curves)."""

    def __new__(cls, x_val, y_val, classes, batch_size):
        import keras

        y_idx = hard_labels(y_val)
        y_dist = as_distributions(y_val, len(classes))

        class _UAR(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                probs = self.model.predict(x_val, batch_size=batch_size, verbose=0)
                m = metrics(y_idx, probs, classes)
                if logs is not None:
                    started = getattr(self, "started", time.perf_counter())
                    logs["epoch_seconds"] = round(time.perf_counter() - started, 2)
                    p = np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)
                    logs["val_loss"] = float(-(y_dist * np.log(p)).sum(axis=1).mean())
                    logs["val_accuracy"] = m["accuracy"]
                    logs["val_uar"] = m["uar"]
                    logs["val_macro_f1"] = m["macro_f1"]

        return _UAR()


def ema_swaps():
    """Two Keras callbacks around the ones that should see the weights' moving average: the first
    puts the optimizer's EMA weights into the model at an epoch's end (for validation and the best
    checkpoint), the second puts the raw weights back before the resume backup is written, so a
    killed run resumes exactly where it was.

    Keras' own ``SwapEMAWeights`` swaps by assigning one variable's array to the other; under JAX the
    next train step donates that shared buffer and leaves the other variable deleted. Copying
    through NumPy once per epoch costs milliseconds and works on every backend.
    """
    import keras

    def swap(model):
        opt = model.optimizer
        for var, avg in zip(opt._trainable_variables, opt._model_variables_moving_average):
            raw = np.array(keras.ops.convert_to_numpy(var))
            var.assign(np.array(keras.ops.convert_to_numpy(avg)))
            avg.assign(raw)

    class _Swap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            swap(self.model)

    return _Swap(), _Swap()


# The cosine schedules end at this fraction of the peak learning rate.
COSINE_ALPHA = 0.01

# Below this many train steps, compiling with XLA costs more than it saves (on 2 cores: about a minute
# of compilation against about 0.5 s saved per step of the face CNN).
XLA_MIN_STEPS = 200


def resolve_jit(model, config: TrainConfig, total_steps: int | None = None) -> bool:
    """XLA for the train step: ``auto`` always jit-compiles under JAX. Under TensorFlow it compiles
    only on a GPU, and there only models without recurrent or depthwise-convolution layers whose
    schedule is long enough to repay the compilation.

    Why not on CPU: with tensorflow-cpu 2.21 and oneDNN on 2 cores, the face recipe (width-16 VGG +
    attention, 40 px crops, batch 64) trained at 69-105 ms a step without XLA against 152-173 ms with
    it, in four interleaved pairs of 2-epoch runs (2026-12-05; ``face_train_bench.py`` agrees:
    docs/benchmarks/face_train.md). Recurrent layers compile slowly and gain little;
    MobileNetV3Small (depthwise convolutions) took about 9 minutes to compile and then trained 30x
    slower than without XLA, and EfficientNetV2B0's train step did not compile in 20 minutes
    (docs/benchmarks/face_compare)."""
    import keras

    if config.jit_compile != "auto":
        return config.jit_compile == "on"
    if keras.backend.backend() == "jax":  # JAX without jit runs op by op: always compile
        return True
    if not _has_gpu():
        return False
    if total_steps is not None and total_steps < XLA_MIN_STEPS:
        return False
    slow = (keras.layers.RNN, keras.layers.Bidirectional, keras.layers.DepthwiseConv2D)
    return not any(isinstance(la, slow) for la in _all_layers(model))


def _all_layers(model):
    for la in getattr(model, "layers", []):
        yield la
        yield from _all_layers(la)


def compile_model(model, config: TrainConfig, steps_per_epoch: int, paced: bool = False) -> None:
    """Compile for training. ``paced``: the learning rate is a plain variable that a
    :class:`~emotion_keras.budget.BudgetGuard` sets each epoch (a cosine paced by the clock), not a
    schedule counted in steps."""
    import keras

    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    if config.schedule == "cosine" and not paced:
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, decay_steps=total - warmup, alpha=COSINE_ALPHA,
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    else:
        lr = config.learning_rate
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True,
                                         weight_decay=config.weight_decay, **ema)
    else:
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=resolve_jit(model, config, total),
    )


def fit_epochs(model, x, y, classes: list[str], config: TrainConfig, validation: tuple | None = None,
               callbacks: list | None = None, epochs: int | None = None, initial_epoch: int = 0,
               verbose: int | None = None, **kwargs):
    """One ``model.fit`` over arrays, the way every trainer runs it: targets as distributions (class
    indices become one-hot), the config's batch size, shuffling and class weights.

    :func:`fit` calls it inside its checkpoints, resume and budget; the tuner's trials
    (``emotion_keras.tuning.hypermodels``) and the retrain of the best trial (``emotion_keras.tuning.export``) call
    it with their own callbacks. ``validation``: ``(x_val, y_val)`` for Keras' own ``val_*`` logs.
    Returns the Keras ``History``.
    """
    n_classes = len(classes)
    y = as_distributions(y, n_classes)
    if validation is not None:
        validation = (validation[0], as_distributions(validation[1], n_classes))
    weights = config_class_weights(y, n_classes, config)
    return model.fit(x, y, validation_data=validation, batch_size=config.batch_size,
                     epochs=config.epochs if epochs is None else epochs, initial_epoch=initial_epoch,
                     shuffle=True, class_weight=weights, callbacks=callbacks,
                     verbose=config.verbose if verbose is None else verbose, **kwargs)


# settings a killed run may be resumed with changed: they do not shape the optimizer's state
RESUMABLE_CHANGES = ("epochs", "verbose", "jit_compile", "early_stopping")


def check_resume(run_dir: Path, config: TrainConfig, provenance: dict[str, Any] | None = None) -> None:
    """Refuse to resume a killed run under other training settings or targets.

    ``BackupAndRestore`` would restore the weights but drop, with only a warning, optimizer state
    whose shape changed (EMA or mixed precision switched, another optimizer, a schedule turned into
    a paced rate), and the run would go on as something neither setting describes. ``provenance``
    names what else made the targets (a distillation teacher's digest). All of it is kept in
    ``run_dir/fit_settings.json`` (a setting a file from an earlier version lacks is not compared);
    ``--force`` (which clears the resume state) starts over."""
    from emotion_keras.config import ConfigError
    from emotion_keras.data.cache import atomic_write_json

    path = run_dir / "fit_settings.json"
    settings = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES}
    settings = json.loads(json.dumps({**settings, **(provenance or {})}))
    resume = run_dir / "resume"
    if path.exists() and resume.is_dir() and any(resume.iterdir()):
        saved = json.loads(path.read_text())
        changed = [k for k in saved if saved[k] != settings.get(k)]
        if changed:
            raise ConfigError(
                f"{run_dir} holds a killed run trained with other settings ("
                + ", ".join(f"{k} {saved.get(k)!r}, now {settings.get(k)!r}" for k in changed)
                + "): rerun with its settings to resume, or pass --force (or another --run-dir) to start over")
    atomic_write_json(path, settings)


def fit(model, x_train, y_train, x_val, y_val, classes: list[str], config: TrainConfig,
        run_dir: str | Path, extra_callbacks: list | None = None,
        provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` and return the history and the best epoch's validation metrics.

    ``x_*`` are arrays or dicts of arrays (named model inputs); ``y_*`` class indices ``(N,)`` or
    target distributions ``(N, classes)`` (FER+ votes): class weights, UAR and the confusion matrix
    use their argmax. Mixup/CutMix, EMA, the optimizer and ``time_budget`` come from ``config``.
    The best weights by ``config.monitor`` are restored at the end. ``run_dir`` receives
    ``history.csv`` (the training curves), ``best.weights.h5``, ``budget.json`` and the resume state.
    The result's ``class_prior`` is the prior the loss saw (:func:`emotion_keras.calibration.class_prior`).
    ``provenance`` (JSON) names what else made ``y_train``; a killed run resumes only with the same
    (:func:`check_resume`). ``epochs_run`` and ``train_seconds`` are this process's (its throughput);
    ``resumed_after`` and ``earlier_seconds`` what a killed one ran before it (:func:`training_record`).
    """
    import keras

    from emotion_keras.batches import MixedBatches

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_resume(run_dir, config, provenance)
    keras.utils.set_random_seed(config.seed)
    n_classes = len(classes)
    y_train = as_distributions(y_train, n_classes)
    y_val_idx = hard_labels(y_val)
    mixing = bool(config.mixup or config.cutmix)
    n = _len(x_train)
    steps = max(1, n // config.batch_size) if mixing and n >= config.batch_size \
        else int(np.ceil(n / config.batch_size))
    budget, run_epochs = None, config.epochs
    if config.time_budget:
        from emotion_keras.budget import max_epochs, size_epochs

        budget = size_epochs(model, x_train, y_train, x_val, config, steps, run_dir)
        config = config.replace(epochs=budget["epochs"])
        run_epochs = max_epochs(budget)  # the guard ends the run when the budget is used
        if config.verbose:  # Keras counts epochs to the most the schedule may grow to: say what is planned
            pace = f" of about {budget['epoch_seconds']:.0f} s" if budget.get("epoch_seconds") else ""
            print(f"time budget {config.time_budget / 60:.0f} min: {budget['epochs']} epochs{pace} planned, "
                  f"up to {run_epochs} if they run faster; training stops when the budget is used"
                  + (f" or after {config.early_stopping} epochs without progress" if config.early_stopping else ""),
                  file=sys.stderr)
    paced = bool(budget) and config.schedule == "cosine"
    compile_model(model, config, steps, paced=paced)

    mode = "min" if config.monitor == "val_loss" else "max"
    best_path = run_dir / "best.weights.h5"
    ema_in, ema_out = ema_swaps() if config.ema else (None, None)
    callbacks = [c for c in (
        ema_in,
        UARCallback(x_val, y_val, classes, config.batch_size),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor=config.monitor, mode=mode,
                                        save_best_only=True, save_weights_only=True),
        ema_out) if c is not None]
    callbacks += [
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(run_dir / "resume"), delete_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if budget:
        from emotion_keras.budget import BudgetGuard

        pace = {"base": config.learning_rate, "warmup": min(config.warmup_epochs, config.epochs - 1),
                "alpha": COSINE_ALPHA} if paced else None
        callbacks.append(BudgetGuard(run_dir, config.time_budget, config.epochs, pace, most=run_epochs))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=config.monitor, mode=mode,
                                                       patience=config.early_stopping))
    callbacks += extra_callbacks or []

    weights = config_class_weights(y_train, n_classes, config)
    start = time.perf_counter()
    if mixing:
        data = MixedBatches(x_train, y_train, config.batch_size, mixup=config.mixup,
                            cutmix=config.cutmix, seed=config.seed)
        history = model.fit(data, epochs=run_epochs, class_weight=weights, callbacks=callbacks,
                            verbose=config.verbose)
    else:
        history = fit_epochs(model, x_train, y_train, classes, config, callbacks=callbacks, epochs=run_epochs)
    seconds = time.perf_counter() - start
    if best_path.exists():
        model.load_weights(str(best_path))
    probs = model.predict(x_val, batch_size=config.batch_size, verbose=0)
    val = metrics(y_val_idx, probs, classes)
    epochs_run = len(history.history.get("loss", []))
    logged = read_history(run_dir)
    earlier = logged[:max(len(logged) - epochs_run, 0)]  # epochs a killed process ran before this one
    if budget:  # the schedule grew: record the length it ran, epochs before a resume included
        config = config.replace(epochs=max(config.epochs, epochs_run, len(logged)))
    return {
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 2),
        "resumed_after": len(earlier),
        "earlier_seconds": round(sum(r.get("epoch_seconds", 0.0) for r in earlier), 2),
        "samples_per_second": round((steps * config.batch_size if mixing else n) * epochs_run / seconds, 1)
        if seconds > 0 and epochs_run else None,
        "validation": val,
        "train_config": config.to_dict(),
        "budget": budget,
        "class_prior": [float(v) for v in class_prior(y_train, n_classes, weights)],
    }


def training_record(result: dict[str, Any]) -> dict[str, Any]:
    """What a card says of a :func:`fit`: the run's epochs and training seconds, those of a killed
    process it resumed included (``resumed`` says how many came before and what this process did)."""
    record = {"seconds": round(result["train_seconds"] + result.get("earlier_seconds", 0.0), 2),
              "epochs_run": result["epochs_run"] + result.get("resumed_after", 0)}
    if result.get("resumed_after"):
        record["resumed"] = {"after_epochs": result["resumed_after"], "epochs": result["epochs_run"],
                             "seconds": result["train_seconds"]}
    return record


def fit_solved(model, solve, x_val, y_val, classes: list[str], config: TrainConfig,
               run_dir: str | Path | None = None) -> dict[str, Any]:
    """:func:`fit`'s result for a model whose weights are solved in closed form, not trained (the
    speech ``lda``): ``solve()`` sets them and returns the class prior it assumed. Nothing to
    resume or choose: no epochs, no checkpoints; the validation clips are only scored. ``run_dir``
    (made if given) is where a training run's files would go, as for :func:`fit`."""
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    prior = solve()
    seconds = time.perf_counter() - start
    probs = model.predict(x_val, batch_size=config.batch_size, verbose=0)
    return {"history": {}, "epochs_run": 0, "train_seconds": round(seconds, 2),
            "samples_per_second": None, "validation": metrics(hard_labels(y_val), probs, classes),
            "train_config": config.to_dict(), "budget": None, "class_prior": [float(v) for v in prior]}


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
