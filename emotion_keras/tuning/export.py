"""The best trial of a search as a saved model with its card (:func:`export_best`): its checkpoint
scored on validation, or, when asked and its epoch count is known, a fresh model with its
hyperparameters retrained on train + validation for that many epochs.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.data.cache import atomic_write_json
from emotion_keras.models.card import ModelCard
from emotion_keras.models.io import input_spec
from emotion_keras.models.speech import SOLVED
from emotion_keras.tuning.data import TaskData
from emotion_keras.tuning.tuners import best_trials, device_info, finished_trials, read_run, read_search


def export_best(tuner, data: TaskData, out: str | Path, retrain_on_all: bool = False,
                name: str | None = None, verbose: int = 1) -> dict[str, Any]:
    """Save the best trial's model with its card into ``out`` (e.g. ``saved_models/face``).

    With ``retrain_on_all`` and a known best epoch count, a fresh model with the best
    hyperparameters is trained on train + validation for that many epochs (no early stopping: the
    count comes from the search); the card then reports the search's validation score as what it
    is. Otherwise the best trial's checkpoint (its best epoch) is exported and scored on validation.
    """
    import keras

    from emotion_keras import train as trainlib
    from emotion_keras.evaluate import metrics
    from emotion_keras.models import store

    best = best_trials(tuner, 1)
    if not best:
        raise ConfigError(f"{tuner.project_dir}: no completed trial to export (see the trial.json "
                          "messages of the failed ones)")
    trial = best[0]
    hp = trial.hyperparameters
    project_dir = Path(tuner.project_dir)
    run = read_run(project_dir, trial.trial_id)
    search = read_search(project_dir)
    hm = tuner.hypermodel
    described = hm.describe(hp)
    if getattr(hm, "variants", None) is not None and hm.space == "cpu":  # the best trial's own data
        x_tr, y_tr, x_va, y_va = hm.variants.arrays(hm.data_choice(hp.copy()))
        data = dataclasses.replace(data, x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va,
                                   preprocessing=described["preprocessing"])
    train_cfg = TrainConfig.from_dict(described["train_config"])
    best_epochs = (run.get("fit") or {}).get("best_epoch")
    metrics_out: dict[str, Any] = {}
    history: dict[str, list[float]] = {}
    trial_scores = (run.get("fit") or {}).get("history") or {}
    t0 = time.perf_counter()
    solved = described["model_config"].get("architecture") in SOLVED  # speech lda: re-solved, no epochs
    if retrain_on_all and (best_epochs or solved):
        x_all, y_all = data.train_and_val()
        if hasattr(hm, "train_x"):
            hm.train_x = x_all  # fusion: normalisation adapted on everything it trains on
        retrain = train_cfg if solved else train_cfg.replace(epochs=int(best_epochs), early_stopping=0)
        hm.epochs = retrain.epochs
        model = hm.build(hp)
        from emotion_keras.models.io import select_inputs

        x_all = select_inputs(model, x_all)
        if solved:
            from emotion_keras.models.speech import adapt, fit_lda

            adapt(model, x_all)
            fit_lda(model, x_all, np.asarray(y_all, int), described["model_config"]["shrinkage"],
                    retrain.class_weights)
            how = "solved again on train+validation"
        else:
            trainlib.compile_model(model, retrain, int(np.ceil(len(y_all) / retrain.batch_size)))
            keras.utils.set_random_seed(retrain.seed)
            h = trainlib.fit_epochs(model, x_all, y_all, list(data.classes), retrain, verbose=verbose)
            history = {k: [float(v) for v in vals] for k, vals in h.history.items()}
            how = f"retrained on train+validation for {best_epochs} epochs"
        trained_on, train_used = "train+validation", retrain
        best_val = _trial_metric_summary(trial, trial_scores)
        metrics_out["search_validation"] = {
            **best_val,
            "protocol": f"{data.protocol}; score of the best of {finished_trials(tuner)} trials on this validation "
                        f"split, which selected it (optimistic); the exported weights were then {how}, "
                        "so this split is no longer held out"}
    else:
        if retrain_on_all:
            print("note: the best trial's epoch count is unknown; exporting its checkpoint without "
                  "retraining on train+validation", file=sys.stderr)
        with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed here
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.load_model(trial)
        trained_on, train_used = "train", train_cfg
        history = trial_scores
        probs = model.predict(select_for(model, data.x_val), batch_size=256, verbose=0)
        metrics_out["validation"] = {
            **metrics(data.y_val, probs, data.classes),
            "protocol": f"{data.protocol}; best of {finished_trials(tuner)} trials selected on this split "
                        f"(optimistic), checkpoint of its best epoch"}
    if data.x_test is not None and data.y_test is not None:
        probs = model.predict(select_for(model, data.x_test), batch_size=256, verbose=0)
        metrics_out["test"] = {**metrics(data.y_test, probs, data.classes),
                               "protocol": data.test_protocol or "test split, unseen by the search"}
    seconds = time.perf_counter() - t0
    sessions = search.get("sessions") or []
    runs = [read_run(project_dir, t.trial_id) for t in tuner.oracle.trials.values()]
    dev = device_info()
    card = ModelCard(
        task=data.task, name=name or f"{data.task}-tuned", classes=data.classes, inputs=input_spec(model),
        preprocessing=data.preprocessing, model_config=described["model_config"],
        train_config=train_used.to_dict(), data={**data.data, "trained_on": trained_on}, metrics=metrics_out,
        history=history,
        training={"seconds": round(seconds, 2), "trained_on": trained_on,
                  "epochs": 0 if solved else train_used.epochs, "device": dev["device"], "device_name": dev["name"],
                  **({"teacher": data.teacher} if data.teacher else {})},
        extra={"augmentation": described.get("augmentation"), "tuning": {
            "tuner": search.get("tuner") or type(tuner).__name__, "objective": search.get("objective"),
            "space": search.get("space") or hm.space, "trials": finished_trials(tuner),
            "max_trials": search.get("max_trials"), "best_trial": trial.trial_id,
            "best_score": trial.score, "best_epoch": best_epochs,
            "hyperparameters": dict(hp.values), "project_dir": str(project_dir),
            "search_wall_seconds": round(sum(s.get("seconds") or 0 for s in sessions), 2),
            "trial_seconds": round(sum(r.get("seconds", 0) for r in runs), 2),
            "gpu_seconds": round(sum(r.get("gpu_seconds", 0) for r in runs), 2),
            "devices": sorted({f"{s.get('backend')}/{s.get('device')}" for s in sessions})}},
        order=TUNED_CARD_ORDER).to_dict()
    store.save(model, out, card)
    # The chosen configs as files, for `face|speech train --model-config/--train-config` (e.g. the
    # 5-fold cross-validation of a tuned speech model).
    for key in ("model_config", "train_config", "preprocessing"):
        atomic_write_json(project_dir / "best" / f"{key}.json", card[key])
    return store.read_card(out)


# The key order of a tuned model's card.json as it has always been written.
TUNED_CARD_ORDER = ("task", "name", "classes", "inputs", "preprocessing", "augmentation", "model_config",
                    "train_config", "data", "metrics", "history", "training", "tuning")


def select_for(model, x):
    from emotion_keras.models.io import select_inputs

    return select_inputs(model, x)


def _trial_metric_summary(trial, history: dict[str, list[float]]) -> dict[str, Any]:
    """The best trial's validation metrics at its best epoch (from its own records)."""
    out: dict[str, Any] = {}
    for name in ("val_uar", "val_accuracy", "val_macro_f1", "val_loss"):
        if trial.metrics.exists(name):
            out[name.removeprefix("val_")] = float(trial.metrics.get_last_value(name))
    return out
