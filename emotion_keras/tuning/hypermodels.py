"""KerasTuner hypermodels for the face, speech and fusion pipelines.

Each hypermodel only *chooses* a configuration: ``model_config(hp)`` turns the trial's hyperparameters
into the pipeline's own config dataclass (``FaceModelConfig``, ``SpeechModelConfig``, ``FusionConfig``)
and ``build`` hands it to the pipeline's builder, so a tuned model is exactly a model that
``emotion-keras face|speech|fusion train`` could have built from the config on its card.
``train_config(hp)`` chooses the shared :class:`~emotion_keras.config.TrainConfig` (learning rate and
schedule, weight decay, label smoothing, batch size, class weights), and ``fit`` trains with the
shared pieces of :mod:`emotion_keras.train` (compile, class weights, ``val_uar`` in the logs).

Three spaces: ``small`` (tiny models, few choices: CPU tests and smoke searches), ``full`` (the
GPU-scale search of ``docs/tuning.md``) and, for speech, ``cpu``: fast architectures on a 2-core CPU,
searched together with the *data* choices (features, speaker normalisation, prosody input, waveform
augmentation), each trial's arrays coming from the cached feature pipeline.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import keras
import keras_tuner as kt
import numpy as np

from emotion_keras.config import TrainConfig
from emotion_keras.models.io import select_inputs

SPACES = ("small", "full", "cpu")


def known_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that ``cls`` (a config dataclass) has fields for.

    Lets one search space serve a pipeline config that gained or lost an optional field.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _steps(n: int, batch_size: int) -> int:
    return max(1, math.ceil(max(1, n) / batch_size))


class TaskHyperModel(kt.HyperModel):
    """The shared part: training hyperparameters, compile, ``fit`` with the hp batch size.

    Args:
        classes: class labels, in output order.
        space: ``small`` or ``full``.
        epochs: the most epochs a trial trains (the length of the learning-rate schedule).
        n_train: training-set size (for the schedule's step count before ``fit`` sees the data).
        base_train: defaults for what the space does not tune (seed, patience, precision).
    """

    task = "?"

    def __init__(self, classes: Sequence[str], space: str = "small", epochs: int = 10,
                 n_train: int = 1000, base_train: TrainConfig | None = None, **kwargs):
        super().__init__(name=f"{self.task}_hypermodel", tunable=True)
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {space!r}")
        self.classes = list(classes)
        self.space = space
        self.epochs = int(epochs)
        self.n_train = int(n_train)
        self.base_train = base_train or TrainConfig(epochs=self.epochs, verbose=0)
        self.last_fit: dict[str, Any] = {}
        self.space_only = False  # set by the tuner while it only enumerates the space

    # ---------------------------------------------------------------- spaces
    def model_config(self, hp: kt.HyperParameters):
        """The pipeline's model config for this trial (declares the model hyperparameters)."""
        raise NotImplementedError

    def build_model(self, config):
        """Call the pipeline's builder."""
        raise NotImplementedError

    def train_config(self, hp: kt.HyperParameters) -> TrainConfig:
        """Learning rate and schedule, regularisation and batch size for this trial."""
        b = self.base_train
        if self.space == "cpu":  # small data on two cores: small batches, a cosine schedule
            lr = hp.Float("learning_rate", 5e-4, 3e-3, sampling="log")
            batch = hp.Choice("batch_size", [32, 64])
            wd = hp.Float("weight_decay", 1e-5, 1e-3, sampling="log")
            ls = hp.Choice("label_smoothing", [0.0, 0.1])
            schedule, warmup, cw = "cosine", 1, True
        elif self.space == "small":
            lr = hp.Choice("learning_rate", [1e-3, 3e-3])
            batch = hp.Choice("batch_size", [16, 32])
            wd = hp.Choice("weight_decay", [1e-4])
            ls = hp.Choice("label_smoothing", [0.0, 0.1])
            schedule = hp.Choice("schedule", ["cosine", "constant"])
            warmup = 0
            cw = b.class_weights
        else:
            lr = hp.Float("learning_rate", 1e-4, 3e-3, sampling="log")
            batch = hp.Choice("batch_size", [32, 64, 128, 256])
            wd = hp.Float("weight_decay", 1e-5, 1e-3, sampling="log")
            ls = hp.Choice("label_smoothing", [0.0, 0.1, 0.2])
            schedule = hp.Choice("schedule", ["cosine", "constant"])
            with hp.conditional_scope("schedule", ["cosine"]):  # warm-up is part of the cosine schedule
                warmup = hp.Int("warmup_epochs", 0, 3)
            warmup = warmup or 0
            cw = hp.Boolean("class_weights", default=True)
        return b.replace(epochs=self.epochs, batch_size=int(batch), learning_rate=float(lr),
                         weight_decay=float(wd), label_smoothing=float(ls), schedule=schedule,
                         warmup_epochs=int(warmup), class_weights=bool(cw))

    def describe(self, hp: kt.HyperParameters) -> dict[str, Any]:
        """The trial as configs: what the report and the exported model card record."""
        hp = hp.copy()
        return {"model_config": self.model_config(hp).to_dict(),
                "train_config": self.train_config(hp).to_dict()}

    # ---------------------------------------------------------------- keras_tuner.HyperModel
    def build(self, hp: kt.HyperParameters):
        """A fresh compiled model; the Keras session is cleared first so trials do not pile up."""
        from emotion_keras import train as trainlib

        keras.utils.clear_session(free_memory=True)
        config = self.model_config(hp)
        train = self.train_config(hp)
        if self.space_only:  # the tuner is only discovering the conditional hyperparameters
            return _placeholder_model()
        trainlib.configure_precision(train)
        model = self.build_model(config)
        trainlib.compile_model(model, train, _steps(self.n_train, train.batch_size))
        return model

    def fit(self, hp, model, x, y, validation_data=None, epochs=None, callbacks=None,
            initial_epoch: int = 0, verbose=None, **kwargs):
        """Train with the trial's batch size, class weights and ``val_uar``/``val_macro_f1`` in the logs.

        ``y``: class indices or target distributions (FER+ votes); the validation labels: class
        indices (or distributions, scored by their argmax). Early stopping on the tuner's
        objective uses ``TrainConfig.early_stopping`` epochs of patience.
        """
        from emotion_keras import train as trainlib

        if validation_data is None:
            raise ValueError("tuning needs validation_data=(x_val, y_val)")
        x, x_val = select_inputs(model, x), select_inputs(model, validation_data[0])
        y, y_val = np.asarray(y), trainlib.hard_labels(validation_data[1])
        train = self.train_config(hp)
        epochs = int(epochs or self.epochs)
        n = _len(x)
        # Recompiled for the data actually given; weights (e.g. a Hyperband parent's) are kept.
        trainlib.compile_model(model, train, _steps(n, train.batch_size))
        monitor = kwargs.pop("monitor", None) or train.monitor
        mode = "min" if monitor == "val_loss" else "max"
        cbs = [trainlib.UARCallback(x_val, y_val, self.classes, train.batch_size)]
        cbs += list(callbacks or [])
        if train.early_stopping:
            cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                     patience=train.early_stopping))
        cbs.append(keras.callbacks.TerminateOnNaN())
        start = time.perf_counter()
        history = trainlib.fit_epochs(model, x, y, self.classes, train, validation=(x_val, y_val), callbacks=cbs,
                                      epochs=epochs, initial_epoch=initial_epoch, verbose=verbose, **kwargs)
        seconds = time.perf_counter() - start
        curve = history.history.get(monitor) or []
        best_idx = int(np.argmin(curve) if mode == "min" else np.argmax(curve)) if curve else None
        self.last_fit = {
            "seconds": round(seconds, 3),
            "initial_epoch": int(initial_epoch),
            "epochs_run": len(history.history.get("loss", [])),
            # epochs from scratch to the best epoch: what a retrain on train+validation runs
            "best_epoch": None if best_idx is None else int(initial_epoch) + best_idx + 1,
            "monitor": monitor,
            "best": None if best_idx is None else float(curve[best_idx]),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "parameters": int(model.count_params()),
            "n_train": n,
        }
        return history


def _len(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _placeholder_model():
    inp = keras.Input((1,), name="placeholder")
    return keras.Model(inp, keras.layers.Dense(1, name="placeholder_dense")(inp))


# --------------------------------------------------------------------------------------- face

class FaceHyperModel(TaskHyperModel):
    """Face models: backbone, width/depth, attention (on/off and after which block), geometry input,
    embedding size, dropout and augmentation strength, over :func:`build_face_model`.

    ``image_shape`` is the preprocessed face shape; ``geometry`` says whether the data carries real
    landmark features (only then is the geometry input a choice).
    """

    task = "face"

    def __init__(self, classes, image_shape=(48, 48, 1), geometry: bool = False, geometry_dim: int = 0,
                 **kwargs):
        super().__init__(classes, **kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.geometry = bool(geometry)
        self.geometry_dim = int(geometry_dim)

    def model_config(self, hp):
        from emotion_keras.models.face import FaceModelConfig

        if self.space == "small":
            backbone = hp.Choice("backbone", ["vgg", "resnet"])
            # at least 16: TensorFlow's oneDNN kernels corrupt the heap on the resnet stride-2
            # projection with fewer channels (tensorflow-cpu 2.21, seen with 4, 8 and 12)
            width = hp.Choice("width", [16, 24])
            depth = 2
            attention = hp.Choice("attention", ["off", "block1", "last"])
            embedding = 16
            dropout = hp.Choice("dropout", [0.2, 0.4])
            strength = hp.Choice("augment", [0.0, 0.5])
        else:
            backbone = hp.Choice("backbone", ["vgg", "resnet", "mobilenetv3small", "efficientnetv2b0"])
            scratch = ["vgg", "resnet"]
            with hp.conditional_scope("backbone", scratch):
                width = hp.Choice("width", [32, 48, 64])
                depth = hp.Int("depth", 3, 4)
            width, depth = width or 32, depth or 4  # None where the scope is inactive
            attention = hp.Choice("attention", ["off", "block1", "block2", "last"])
            embedding = hp.Choice("embedding_dim", [128, 256])
            dropout = hp.Float("dropout", 0.1, 0.5, step=0.1)
            strength = hp.Float("augment", 0.0, 1.0, step=0.25)
        geometry = hp.Boolean("geometry") if self.geometry else False
        after = {"off": 0, "block1": 1, "block2": 2, "last": -1}[attention]
        size, _, channels = self.image_shape
        values = dict(
            backbone=backbone, input_size=size, channels=channels, width=int(width), depth=int(depth),
            attention=attention != "off", attention_after=min(after, int(depth) - 1),
            geometry=bool(geometry), geometry_dim=self.geometry_dim, dropout=float(dropout),
            embedding_dim=int(embedding), augment=strength > 0, flip=True,
            max_shift=0.15 * strength, max_rotation=15.0 * strength, zoom=0.15 * strength,
            brightness=0.3 * strength, contrast=0.3 * strength, erase=0.25 * strength)
        return FaceModelConfig.from_dict(known_fields(FaceModelConfig, values))

    def build_model(self, config):
        from emotion_keras.models.face import build_face_model

        return build_face_model(config, self.classes)


# --------------------------------------------------------------------------------------- speech

class SpeechHyperModel(TaskHyperModel):
    """Speech models over :func:`build_speech_model`: architecture (CRNN, 2D CNN, 1D CNN,
    Transformer), recurrent type and width, conv width and depth, transformer size, dropout and
    SpecAugment strength. (Pooling over time is fixed by the architecture: attention pooling for the
    CRNN and Transformer, average+max for the 1D CNN.)"""

    task = "speech"

    def __init__(self, classes, input_shape=(300, 64), variants=None, **kwargs):
        super().__init__(classes, **kwargs)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.variants = variants  # cpu space: a SpeechVariants giving each data choice's arrays

    def data_choice(self, hp) -> dict[str, Any]:
        """The trial's data hyperparameters (cpu space): features, normalisation, prosody, augmentation."""
        return {"feature": hp.Choice("feature", ["mfcc", "logmel", "functionals"]),
                "speaker_norm": hp.Choice("speaker_norm", ["speaker", "none"]),
                "prosody": hp.Choice("prosody", ["none", "builtin", "praat"]),
                "copies": hp.Choice("augment_copies", [0, 1])}

    def _shape(self, hp):
        if self.space != "cpu" or self.variants is None:
            return self.input_shape
        return self.variants.input_shape(self.data_choice(hp))

    def describe(self, hp):
        out = super().describe(hp)
        if self.space == "cpu" and self.variants is not None:
            choice = self.data_choice(hp.copy())
            out["preprocessing"] = self.variants.feature_config(choice).to_dict()
            out["augmentation"] = self.variants.augment_config(choice)
        return out

    def fit(self, hp, model, x, y, validation_data=None, **kwargs):
        from emotion_keras.models.speech import SOLVED, adapt

        if self.space == "cpu" and self.variants is not None:
            x, y, x_val, y_val = self.variants.arrays(self.data_choice(hp))
            validation_data = (x_val, y_val)
        adapt(model, x)  # linear / mlp / lda: the training set's moments
        config = self.model_config(hp.copy())
        if config.architecture in SOLVED:
            return self._solve(hp, model, config, x, y, validation_data, kwargs.get("callbacks"))
        return super().fit(hp, model, x, y, validation_data=validation_data, **kwargs)

    def _solve(self, hp, model, config, x, y, validation_data, callbacks):
        """lda: the weights solved, then one 'epoch' of logs through the tuner's callbacks (its
        best-model checkpoint among them), so a solved trial is recorded like a trained one."""
        from emotion_keras import train as trainlib
        from emotion_keras.models.speech import fit_lda

        x, x_val = select_inputs(model, x), select_inputs(model, validation_data[0])
        train = self.train_config(hp)
        result = trainlib.fit_solved(model, lambda: fit_lda(model, x, np.asarray(y, int), config.shrinkage,
                                                            train.class_weights),
                                     x_val, np.asarray(validation_data[1], int), self.classes, train)
        m = result["validation"]
        logs = {"val_accuracy": m["accuracy"], "val_uar": m["uar"], "val_macro_f1": m["macro_f1"]}
        history = keras.callbacks.History()
        cbs = keras.callbacks.CallbackList(list(callbacks or []) + [history], model=model)
        cbs.on_train_begin()
        cbs.on_epoch_begin(0)
        cbs.on_epoch_end(0, logs)
        cbs.on_train_end(logs)
        self.last_fit = {"seconds": result["train_seconds"], "initial_epoch": 0, "epochs_run": 0, "best_epoch": 0,
                         "monitor": train.monitor, "best": float(logs.get(train.monitor, m["uar"])),
                         "history": {k: [float(v)] for k, v in logs.items()},
                         "parameters": int(model.count_params()), "n_train": _len(x)}
        return history

    def model_config(self, hp):
        from emotion_keras.models.speech import SpeechModelConfig

        frames, n_features = self._shape(hp)
        if self.space == "cpu":
            return self._cpu_config(hp)
        if self.space == "small":
            arch = hp.Choice("architecture", ["crnn", "cnn1d"])
            with hp.conditional_scope("architecture", ["crnn"]):
                rnn = hp.Choice("rnn", ["gru", "lstm"])
                units = hp.Choice("rnn_units", [8])
            filters = hp.Choice("filters", [4, 8])
            blocks, d_model, heads, layers, ff, embedding, att = 2, 16, 2, 1, 32, 16, 8
            dropout = hp.Choice("dropout", [0.2, 0.4])
            strength = hp.Choice("augment", [0.0, 0.5])
        else:
            arch = hp.Choice("architecture", ["crnn", "cnn2d", "cnn1d", "transformer"])
            with hp.conditional_scope("architecture", ["crnn"]):
                rnn = hp.Choice("rnn", ["gru", "lstm"])
                units = hp.Choice("rnn_units", [64, 128, 192])
            with hp.conditional_scope("architecture", ["transformer"]):
                d_model = hp.Choice("d_model", [64, 128])
                heads = hp.Choice("heads", [2, 4])
                layers = hp.Int("layers", 2, 4)
            with hp.conditional_scope("architecture", ["crnn", "cnn2d", "cnn1d"]):
                filters = hp.Choice("filters", [32, 48, 64])
                blocks = hp.Int("conv_blocks", 3, 4)
            d_model, heads, layers = d_model or 64, heads or 4, layers or 2
            ff, att = 2 * d_model, hp.Choice("attention_units", [64, 128])
            embedding = hp.Choice("embedding_dim", [128, 256])
            dropout = hp.Float("dropout", 0.1, 0.5, step=0.1)
            strength = hp.Float("augment", 0.0, 1.0, step=0.25)
        filters, blocks = filters or 32, blocks or 3
        # 2D blocks halve both axes: never more blocks than the input can take
        blocks = min(int(blocks), max(1, int(math.log2(max(2, min(frames, n_features))))))
        values = dict(
            architecture=arch, filters=int(filters), conv_blocks=int(blocks), rnn=rnn or "gru",
            rnn_units=int(units or 64), attention_units=int(att), d_model=int(d_model),
            heads=int(heads), layers=int(layers), ff_dim=int(ff), dropout=float(dropout),
            embedding_dim=int(embedding), augment=strength > 0, time_masks=2, freq_masks=2,
            time_width=0.2 * strength, freq_width=0.2 * strength)
        return SpeechModelConfig.from_dict(known_fields(SpeechModelConfig, values))

    def _cpu_config(self, hp):
        """Fast families only (1D CNN, small Transformer: 5-15x the windows/s of the 2D CNN and
        CRNN on two cores), their widths, dropout and SpecAugment strength; over functionals,
        logistic regression or one hidden layer and the L2 strength, or shrinkage LDA and its shrinkage."""
        from emotion_keras.models.speech import SpeechModelConfig

        choice = self.data_choice(hp)
        prosody_dim = self.variants.prosody_dim(choice) if self.variants is not None else 0
        if choice["feature"] == "functionals":
            with hp.conditional_scope("feature", ["functionals"]):
                arch = hp.Choice("vector_architecture", ["linear", "mlp", "lda"])
                with hp.conditional_scope("vector_architecture", ["linear", "mlp"]):
                    l2 = hp.Choice("l2", [0.01, 0.05, 0.2])
                    dropout = hp.Choice("vector_dropout", [0.0, 0.3])
                with hp.conditional_scope("vector_architecture", ["lda"]):
                    shrinkage = hp.Choice("shrinkage", [0.2, 0.4, 0.6, 0.8])
            return SpeechModelConfig(architecture=arch, l2=float(l2 or 0.0), dropout=float(dropout or 0.0),
                                     shrinkage=float(shrinkage if shrinkage is not None else 0.6),
                                     embedding_dim=128, prosody_dim=prosody_dim)
        with hp.conditional_scope("feature", ["mfcc", "logmel"]):
            return self._sequence_config(hp, prosody_dim)

    def _sequence_config(self, hp, prosody_dim: int):
        from emotion_keras.models.speech import SpeechModelConfig

        arch = hp.Choice("architecture", ["cnn1d", "transformer"])
        with hp.conditional_scope("architecture", ["cnn1d"]):
            filters = hp.Choice("filters", [32, 64, 96])
            blocks = hp.Int("conv_blocks", 3, 4)
            kernel = hp.Choice("kernel_size", [3, 4])
        with hp.conditional_scope("architecture", ["transformer"]):
            d_model = hp.Choice("d_model", [64, 96])
            layers = hp.Int("layers", 1, 3)
        embedding = hp.Choice("embedding_dim", [64, 128])
        dropout = hp.Float("dropout", 0.1, 0.5, step=0.1)
        strength = hp.Float("augment", 0.0, 1.0, step=0.25)
        values = dict(architecture=arch, filters=int(filters or 64), conv_blocks=int(blocks or 3),
                      kernel_size=int(kernel or 3), d_model=int(d_model or 64), heads=4,
                      layers=int(layers or 2), ff_dim=2 * int(d_model or 64), dropout=float(dropout),
                      embedding_dim=int(embedding), augment=strength > 0, time_masks=2, freq_masks=2,
                      time_width=0.2 * strength, freq_width=0.2 * strength, prosody_dim=prosody_dim)
        return SpeechModelConfig.from_dict(known_fields(SpeechModelConfig, values))

    def build_model(self, config):
        from emotion_keras.models.speech import build_speech_model

        return build_speech_model(config, self.classes, self._current_shape)

    def build(self, hp):
        self._current_shape = self._shape(hp)
        return super().build(hp)


# --------------------------------------------------------------------------------------- fusion

class FusionHyperModel(TaskHyperModel):
    """Fusion heads over :func:`build_fusion_model`: frame pooling (mean, attention, GRU, LSTM) and
    its width, projection and hidden sizes, dropout and modality dropout.

    ``base`` is the data's fixed part of the ``FusionConfig`` (modalities, face input kind and
    dimensions); ``train_x`` (optional) adapts the ``Normalization`` layers of every built model.
    """

    task = "fusion"

    def __init__(self, classes, base: dict[str, Any] | None = None, train_x: dict | None = None,
                 **kwargs):
        super().__init__(classes, **kwargs)
        self.base = dict(base or {})
        self.train_x = train_x

    def model_config(self, hp):
        from emotion_keras.models.fusion import FusionConfig

        frames = self.base.get("face_input", "frames") == "frames" and \
            "face" in self.base.get("modalities", ("face", "speech"))
        if self.space == "small":
            pooling = hp.Choice("pooling", ["mean", "attention"]) if frames else "mean"
            units = 8
            projection = hp.Choice("projection", [8, 16])
            hidden = hp.Choice("hidden", [16])
            embedding = 8
            dropout = hp.Choice("dropout", [0.1, 0.3])
            mod_drop = hp.Choice("modality_dropout", [0.0, 0.15])
        else:
            pooling = hp.Choice("pooling", ["mean", "attention", "gru", "lstm"]) if frames else "mean"
            units = None
            if frames:
                with hp.conditional_scope("pooling", ["gru", "lstm"]):
                    units = hp.Choice("recurrent_units", [32, 64, 128])
            units = units or 64
            projection = hp.Choice("projection", [32, 64, 128])
            hidden = hp.Choice("hidden", [64, 128, 256])
            embedding = hp.Choice("embedding_dim", [32, 64])
            dropout = hp.Float("dropout", 0.1, 0.5, step=0.1)
            mod_drop = hp.Choice("modality_dropout", [0.0, 0.1, 0.2, 0.3])
        values = {**self.base, "pooling": pooling, "recurrent_units": int(units),
                  "projection": int(projection), "hidden": int(hidden), "embedding_dim": int(embedding),
                  "dropout": float(dropout), "modality_dropout": float(mod_drop)}
        return FusionConfig.from_dict(known_fields(FusionConfig, values))

    def build_model(self, config):
        from emotion_keras.models.fusion import adapt, build_fusion_model

        model = build_fusion_model(config, self.classes)
        if self.train_x is not None:
            adapt(model, self.train_x)
        return model


HYPERMODELS = {"face": FaceHyperModel, "speech": SpeechHyperModel, "fusion": FusionHyperModel}
