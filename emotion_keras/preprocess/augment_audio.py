"""Waveform augmentation for speech training sets, with the field's libraries.

``audiomentations`` supplies speed (time stretch), pitch shift, additive Gaussian noise at an SNR
drawn from a list (several SNRs, not one), room reverberation (its ``RoomSimulator``, i.e.
``pyroomacoustics`` image-source rooms; skipped when that is not installed) and gain. Each training
clip gets ``copies`` augmented versions; copy ``c`` of record ``i`` is seeded by ``(seed, i, c)``, so
the set is reproducible and a cache keyed by the config (:func:`augmented_features`) never recomputes
it. SpecAugment (in the model graph) still runs on top at training time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion_keras.config import Config, ConfigError


@dataclasses.dataclass
class AudioAugmentConfig(Config):
    """Which perturbations, how likely and how strong; stored on the card as ``augmentation``."""

    copies: int = 0  # augmented versions per training clip (0: no waveform augmentation)
    seed: int = 0
    p_speed: float = 0.5
    speed: tuple = (0.9, 1.1)  # time-stretch rate range
    p_pitch: float = 0.5
    semitones: tuple = (-2.0, 2.0)
    p_noise: float = 0.5
    snr_db: tuple = (5.0, 10.0, 20.0, 30.0)  # one drawn per noisy copy
    p_reverb: float = 0.3
    p_gain: float = 0.5
    gain_db: tuple = (-6.0, 6.0)

    def __post_init__(self):
        if self.copies < 0:
            raise ConfigError(f"copies must be >= 0, not {self.copies}")
        for name in ("p_speed", "p_pitch", "p_noise", "p_reverb", "p_gain"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1]")
        if not self.snr_db:
            raise ConfigError("snr_db needs at least one SNR")


def _reverb_available() -> bool:
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        return False
    return True


def augmenter(config: AudioAugmentConfig, snr: float):
    """An audiomentations ``Compose`` for one copy (the SNR is drawn by the caller's generator)."""
    import audiomentations as A

    steps = [
        A.TimeStretch(min_rate=config.speed[0], max_rate=config.speed[1], leave_length_unchanged=False,
                      p=config.p_speed),
        A.PitchShift(min_semitones=config.semitones[0], max_semitones=config.semitones[1], p=config.p_pitch),
    ]
    if config.p_reverb > 0 and _reverb_available():
        steps.append(A.RoomSimulator(use_ray_tracing=False, max_order=3, leave_length_unchanged=True,
                                     p=config.p_reverb))
    steps += [A.AddGaussianSNR(min_snr_db=snr, max_snr_db=snr, p=config.p_noise),
              A.Gain(min_gain_db=config.gain_db[0], max_gain_db=config.gain_db[1], p=config.p_gain)]
    return A.Compose(steps)


def augment_waveform(y: np.ndarray, sr: int, config: AudioAugmentConfig, index: int, copy: int) -> np.ndarray:
    """Copy ``copy`` of waveform ``index``: deterministic for a given config."""
    import random

    seed = int(np.random.SeedSequence([config.seed, index, copy]).generate_state(1)[0])
    rng = np.random.default_rng(seed)
    snr = float(rng.choice(np.asarray(config.snr_db, float)))
    # audiomentations draws from numpy's and Python's global generators: seed both for this copy
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    out = augmenter(config, snr)(samples=np.asarray(y, np.float32), sample_rate=sr)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return (out / peak * 0.99 if peak > 1.0 else out).astype(np.float32)


def augmented_features(records: Sequence, features, config: AudioAugmentConfig, workers: int | None = None,
                       progress: bool = True, cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Features of ``config.copies`` augmented versions of every record, cached under a key of the
    records, the feature config and this config. Arrays as :func:`audio.compute_features`, with
    ``clip`` indexing ``records`` (every copy of clip i has clip index i)."""
    from emotion_keras.preprocess import audio

    return audio.speech_features(records, features, workers=workers, progress=progress, cache_dir=cache_dir,
                                 augment=config)
