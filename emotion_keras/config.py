"""Configs are data: small dataclasses that round-trip through JSON, so every run is reproducible.

Modality-specific configs (face preprocessing, speech features, model shapes) subclass ``Config`` in
their own modules; the training config, shared by every modality, lives here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="Config")


class ConfigError(ValueError):
    """A config file or dict with unknown keys or bad values."""


@dataclasses.dataclass
class Config:
    """Base class: ``to_dict``/``from_dict``/``load``/``save`` with unknown keys rejected by name."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None = None, **overrides: Any) -> T:
        data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = data[f.name]
                # JSON has no tuples; restore them where the default is one.
                default = f.default if f.default is not dataclasses.MISSING else None
                if isinstance(default, tuple) and isinstance(value, list):
                    value = tuple(value)
                kwargs[f.name] = value
        return cls(**kwargs)

    def replace(self: T, **changes: Any) -> T:
        return self.from_dict(self.to_dict(), **changes)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a JSON object")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        from emotion_keras.data.cache import atomic_write_json

        atomic_write_json(Path(path), self.to_dict())


@dataclasses.dataclass
class TrainConfig(Config):
    """How to fit any model: shared by face, speech and fusion training."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: int = 1
    class_weights: bool = True
    class_weight_power: float = 1.0  # class weights = inverse frequency ** power (0.5: square-root balance)
    early_stopping: int = 8  # patience in epochs on the monitored metric; 0 disables
    monitor: str = "val_uar"  # val_uar | val_accuracy | val_loss
    mixed_precision: str = "auto"  # auto (bf16 on GPU) | on | off
    optimizer: str = "adamw"  # adamw | sgd (SGD with Nesterov momentum)
    momentum: float = 0.9  # SGD momentum
    ema: float = 0.0  # momentum of an exponential moving average of the weights (0: off; e.g. 0.999)
    mixup: float = 0.0  # Beta(a, a) of mixup (0: off); mixes inputs and targets
    cutmix: float = 0.0  # Beta(a, a) of CutMix on image inputs (0: off); with mixup, half the batches each
    jit_compile: str = "auto"  # auto (XLA unless the model is recurrent) | on | off
    time_budget: float = 0.0  # seconds for the whole schedule (0: use epochs); sizes epochs to fit
    distill: float = 0.5  # with a teacher model: its predictions' share of the targets (distill.py)
    distill_temperature: float = 2.0  # with a teacher model: softens its predictions (1: as they are)
    seed: int = 0
    verbose: int = 1

    def __post_init__(self):
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"schedule must be 'cosine' or 'constant', not {self.schedule!r}")
        if self.monitor not in ("val_uar", "val_accuracy", "val_loss"):
            raise ConfigError(f"monitor must be val_uar, val_accuracy or val_loss, not {self.monitor!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be positive")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"optimizer must be 'adamw' or 'sgd', not {self.optimizer!r}")
        if self.jit_compile not in ("auto", "on", "off"):
            raise ConfigError(f"jit_compile must be auto, on or off, not {self.jit_compile!r}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"ema must be in [0, 1), not {self.ema}")
        if self.mixup < 0 or self.cutmix < 0 or self.time_budget < 0 or self.class_weight_power < 0:
            raise ConfigError("mixup, cutmix, time_budget and class_weight_power must be >= 0")
        if not 0 <= self.distill <= 1 or self.distill_temperature <= 0:
            raise ConfigError(f"distill must be in [0, 1] and distill_temperature > 0, not "
                              f"{self.distill} and {self.distill_temperature}")


def parse_duration(text: str | float) -> float:
    """``"90m"``, ``"1.5h"``, ``"45s"`` or a number of seconds -> seconds."""
    s = str(text).strip().lower()
    units = {"s": 1, "m": 60, "min": 60, "h": 3600}
    for suffix in ("min", "h", "m", "s"):
        if s.endswith(suffix):
            s, scale = s[: -len(suffix)], units[suffix]
            break
    else:
        scale = 1
    try:
        value = float(s) * scale
    except ValueError:
        raise ConfigError(f"not a duration: {text!r} (e.g. 90m, 1.5h, 600)") from None
    if value <= 0:
        raise ConfigError(f"a time budget must be positive, not {text!r}")
    return value
