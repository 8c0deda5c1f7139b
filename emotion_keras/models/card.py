"""The model card every trainer writes beside ``model.keras`` (``card.json``), built in one place.

:class:`ModelCard` holds the fields every card has (``docs/architecture.md``, "Model card"); what
only one kind of model records (a speech model's augmentation and speaker prior, a fusion model's
encoders, a tuned model's search) goes in ``extra``. ``to_dict`` gives the JSON ``store.save``
writes (it adds backend, versions, date, parameters and size); cards are read back as plain dicts
(``store.read_card``), so older cards stay readable. No Keras import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from emotion_keras.config import Config, ConfigError

TASKS = ("face", "speech", "fusion")


@dataclasses.dataclass
class ModelCard(Config):
    """A trained model's card.

    Args:
        task: ``face``, ``speech`` or ``fusion`` (recognisers dispatch on it).
        name: the model's name (a run directory's by default).
        classes: the output classes, in the order of the model's probabilities.
        inputs: ``{input name: shape}`` of the model.
        preprocessing: the preprocessing config dict that makes those inputs from files.
        model_config: the architecture's config dict.
        train_config: the ``TrainConfig`` dict it was trained with.
        data: corpus, split and licence of the training data.
        metrics: ``{split name: metrics dict with its "protocol" sentence}``.
        class_prior: the class prior the loss saw and the default balance of the prior correction
            (:func:`emotion_keras.calibration.prior_entry`; empty: none, the field is left out).
        history: per-epoch curves.
        training: wall time, speed, epochs run and the like.
        extra: the fields only this kind of model has, written after ``metrics``.
        order: key order of ``card.json`` where a trainer has always written another one (the rest
            follow in the default order); not part of the card.
    """

    task: str = ""
    name: str = ""
    classes: list[str] = dataclasses.field(default_factory=list)
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    train_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    class_prior: dict[str, Any] = dataclasses.field(default_factory=dict)
    history: dict[str, Any] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    order: Sequence[str] = ()

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"model card: task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not self.name:
            raise ConfigError("model card: a name is required")
        if not self.classes or not all(isinstance(c, str) for c in self.classes):
            raise ConfigError(f"model card: classes must be a non-empty list of labels, not {self.classes!r}")
        clash = sorted(set(self.extra) & {f.name for f in dataclasses.fields(self)})
        if clash:
            raise ConfigError(f"model card: extra fields {clash} are card fields; set them directly")

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The card as ``store.save`` takes it: the fields up to ``metrics``, then ``extra``, then
        ``training`` and ``history`` (or ``order`` first where given)."""
        d = {"task": self.task, "name": self.name, "classes": list(self.classes), "inputs": self.inputs,
             "preprocessing": self.preprocessing, "model_config": self.model_config,
             "train_config": self.train_config, "data": self.data, "metrics": self.metrics,
             **({"class_prior": self.class_prior} if self.class_prior else {}), **self.extra,
             "training": self.training, "history": self.history}
        if not self.order:
            return d
        return {**{k: d[k] for k in self.order if k in d}, **{k: v for k, v in d.items() if k not in self.order}}


def member_config(card: dict[str, Any]) -> dict[str, Any]:
    """The architecture of one model of a card: an ensemble's member config (``{"architecture":
    "ensemble", "member": {...}}``), else the card's own ``model_config``."""
    config = card.get("model_config") or {}
    return dict(config.get("member") or {}) if config.get("architecture") == "ensemble" else dict(config)


def face_views(card: dict[str, Any]) -> tuple[str, int]:
    """``(tta, crop)`` of a face card: the test-time views its recogniser, evaluation and calibration
    average by default (``"none"`` without a ``tta`` field), and the side its model centre-crops to."""
    return card.get("tta") or "none", int(member_config(card).get("crop") or 0)
