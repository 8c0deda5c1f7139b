"""ModelCard: the one card type the face, speech, fusion and tuning trainers build; its JSON is the
card.json they have always written (same keys, same order), and bad cards fail at construction."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from emotion_keras.config import ConfigError
from emotion_keras.models.card import ModelCard

ROOT = Path(__file__).resolve().parents[1]
# Added after training: by store.save, and later by calibrate / evaluate --perturb / export (a class
# prior is written by the trainers, and by calibrate on cards saved before they did).
LATER = {"backend", "parameters", "size_bytes", "versions", "date", "calibration", "robustness", "exports",
         "class_prior"}
CORE = [f.name for f in dataclasses.fields(ModelCard) if f.name not in ("extra", "order")]


def _card_of(saved: dict, order=()) -> ModelCard:
    trained = {k: v for k, v in saved.items() if k not in LATER}
    return ModelCard(**{k: trained[k] for k in CORE if k in trained},
                     extra={k: v for k, v in trained.items() if k not in CORE}, order=order)


@pytest.mark.parametrize("task", ["face", "speech", "fusion"])
def test_shipped_cards_are_what_the_card_type_writes(task):
    from emotion_keras.pipelines.fusion import FUSION_CARD_ORDER

    path = ROOT / "saved_models" / task / "card.json"
    if not path.exists():
        pytest.skip(f"{path} not in this checkout")
    saved = json.loads(path.read_text())
    trained = {k: v for k, v in saved.items() if k not in LATER}
    got = _card_of(saved, FUSION_CARD_ORDER if task == "fusion" else ()).to_dict()
    assert got == trained
    assert list(got) == list(trained)  # the same key order as the file


def _minimal(**changes):
    base = dict(task="speech", name="m", classes=["angry", "sad"], inputs={"features": [94, 64]},
                preprocessing={"feature": "logmel"}, model_config={"architecture": "crnn"},
                train_config={"epochs": 1}, data={"corpus": "RAVDESS"}, metrics={"validation": {"uar": 0.5}})
    return ModelCard(**{**base, **changes})


def test_default_order_puts_extra_after_metrics_then_training_and_history():
    card = _minimal(extra={"augmentation": None, "speaker_norm_prior": {"features": {}}},
                    training={"seconds": 1.0}, history={"loss": [1.0]})
    d = card.to_dict()
    assert list(d) == ["task", "name", "classes", "inputs", "preprocessing", "model_config", "train_config",
                       "data", "metrics", "augmentation", "speaker_norm_prior", "training", "history"]
    assert d["augmentation"] is None and d["classes"] == ["angry", "sad"]
    json.dumps(d)  # JSON-able as store.save writes it


def test_a_class_prior_follows_the_metrics_and_an_empty_one_is_left_out():
    prior = {"frequencies": {"angry": 0.5, "sad": 0.5}, "balance": 0.5, "source": "test"}
    assert list(_minimal(class_prior=prior, extra={"augmentation": None}).to_dict())[8:11] == [
        "metrics", "class_prior", "augmentation"]
    assert "class_prior" not in _minimal().to_dict()


def test_order_moves_named_keys_first_and_keeps_the_rest():
    d = _minimal(extra={"tuning": {"trials": 3}, "augmentation": None},
                 order=("task", "name", "classes", "inputs", "preprocessing", "augmentation")).to_dict()
    assert list(d)[:7] == ["task", "name", "classes", "inputs", "preprocessing", "augmentation", "model_config"]
    assert "order" not in d and "extra" not in d


@pytest.mark.parametrize("changes, message", [
    ({"task": "video"}, "task must be one of"),
    ({"name": ""}, "a name is required"),
    ({"classes": []}, "non-empty list"),
    ({"classes": ["angry", 3]}, "non-empty list"),
    ({"extra": {"metrics": {}}}, "are card fields"),
])
def test_bad_cards_fail_when_built(changes, message):
    with pytest.raises(ConfigError, match=message):
        _minimal(**changes)


def test_replace_keeps_extra_and_order():
    card = _minimal(extra={"augmentation": None}, order=("task",))
    other = card.replace(name="n")
    assert other.name == "n" and other.extra == {"augmentation": None} and other.order == ("task",)
