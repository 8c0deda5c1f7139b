"""The recogniser base: a model's net, its card and its preprocessor, held together.

As in KerasHub's tasks, a recogniser is loaded by a class method and its constructor only stores
what it is given (scikit-learn's convention):

- ``Recognizer.from_preset("face" | "speech" | "fusion" | folder)`` resolves the name through
  :func:`emotion_keras.models.store.resolve` (the checkout's, ``$EMOTION_KERAS_MODELS``' or an
  installed wheel's ``saved_models/``) and returns the recogniser the card's ``task`` names;
- ``FaceEmotionRecognizer.from_dir(folder, ...)`` loads one modality's folder (ONNX with
  ``runtime="onnx"``);
- ``FaceEmotionRecognizer(net=..., card=..., preprocessor=...)`` stores already loaded parts
  (``MultimodalEmotionRecognizer(face=..., speech=..., net=..., card=...)`` a face and a speech
  recogniser and the fusion head).

Calling a recogniser class the older way, with a model folder or nothing (``FaceEmotionRecognizer()``,
``SpeechEmotionRecognizer(folder, runtime="onnx")``), is shorthand for its ``from_dir`` with the same
arguments.

Every recogniser has the same two entry points: ``predict_proba(inputs)`` (the model's prepared input
arrays in, calibrated probabilities out, batched into few distinct shapes so compiled predict
functions are not retraced) and ``predict_files(paths)`` (one result per file, bad files as
``{"file", "error"}``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emotion_keras.calibration import Calibration
from emotion_keras.errors import InputError
from emotion_keras.recognizers import RECOGNIZERS


class _FolderShorthand(type):
    """``Cls(folder, ...)`` is ``Cls.from_dir(folder, ...)``; given any of ``Cls.stored_parts`` by
    keyword (``net=``, ``card=``...), the constructor just stores them."""

    def __call__(cls, *args, **kwargs):
        if any(k in kwargs for k in cls.stored_parts):
            return super().__call__(*args, **kwargs)
        return cls.from_dir(*args, **kwargs)


class Recognizer(metaclass=_FolderShorthand):
    """A loaded model with its card and preprocessor. Subclasses set ``task``, ``preprocessor_class``
    and ``main_input`` and implement ``predict_file``.

    Attributes kept for every modality: ``net`` (the runtime's forward pass, see
    :mod:`emotion_keras.runtime`), ``card``, ``preprocessor``, ``model`` (the Keras model, None under
    ONNX), ``model_dir``, ``runtime``, ``classes``, ``temperature``, ``prior`` and ``balance`` (the
    prior correction, :mod:`emotion_keras.calibration`; ``balance`` may be changed at any time).
    """

    task: str = ""
    stored_parts: tuple[str, ...] = ("net", "card")  # keywords that mean "store these" (not a folder)
    preprocessor_class: type | None = None
    main_input: str = ""  # the input a bare array passed to predict_proba is
    zero_inputs: tuple[str, ...] = ()  # optional inputs given as zeros when absent (face geometry)
    input_dtype = None  # cast every input to this before the model call (None: keep)
    default_batch_size: int | None = None  # inputs per model call (None: all in one call)

    def __init__(self, *, net, card: dict[str, Any], preprocessor=None, model=None,
                 model_dir: str | Path | None = None, runtime: str = "keras", batch_size: int | None = None,
                 balance: float | None = None):
        """Args:
            net: the forward pass (:class:`~emotion_keras.runtime.KerasNet` or ``OnnxNet``).
            card: the model card.
            preprocessor: what turns raw input into ``net``'s inputs (see
                :mod:`emotion_keras.preprocess.preprocessors`).
            model: the Keras model behind ``net`` (None under ONNX).
            model_dir: the folder it was loaded from (named in errors).
            runtime: ``"keras"`` or ``"onnx"``.
            batch_size: inputs per model call (None: the class default).
            balance: how far to move the decision from the training class frequencies towards
                equal ones, 0..1 (None: the card's default; no effect for a card without a prior).
        """
        self.net = net
        self.card = card
        self.preprocessor = preprocessor
        self.model = model
        self.model_dir = Path(model_dir) if model_dir else None
        self.runtime = runtime
        self.batch_size = self.default_batch_size if batch_size is None else int(batch_size)
        self.classes: list[str] = list(card.get("classes") or [])
        cal = Calibration.of(card, balance)  # temperature 1.0 and no prior when the card has none
        self.temperature, self.prior, self.balance = cal.temperature, cal.prior, cal.balance
        self._embedder = None

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_preset(cls, preset: str | Path | None = None, runtime: str = "keras", **options):
        """The recogniser of a shipped model or of a saved model folder.

        Args:
            preset: ``"face"``, ``"speech"``, ``"fusion"`` or a folder (None: this class's task).
            runtime: ``"keras"`` or ``"onnx"`` (the folder's exported ``model.onnx``).
            **options: the recogniser's ``from_dir`` options (``detector``, ``batch_size``...).

        Called on ``Recognizer`` it returns the class the card's ``task`` names; on a subclass, a
        card of another task is a ``ModelLoadError``.
        """
        from emotion_keras.models import store

        if preset is None:
            if not cls.task:
                raise ValueError("Recognizer.from_preset needs a preset: face, speech, fusion or a folder")
            preset = cls.task
        directory = store.resolve(preset)
        # a preset names its task (the fusion folder may hold no card: late fusion); a folder's card does
        task = preset if isinstance(preset, str) and preset in store.PRESETS else _card_task(directory)
        if cls.task and task != cls.task:
            raise store.ModelLoadError(f"{preset}: a {task} model, not a {cls.task} model")
        return recognizer_class(task).from_dir(directory, runtime=runtime, **options)

    @classmethod
    def from_dir(cls, directory: str | Path | None = None, runtime: str = "keras", **options):
        """Load a saved model folder (subclasses name their own options).

        Args:
            directory: the folder (None: this class's shipped model).
            runtime: ``"keras"`` or ``"onnx"``.
            **options: options of the recogniser the card's task names.
        """
        if cls.task:
            raise NotImplementedError(f"{cls.__name__} defines its own from_dir")
        if directory is None:
            raise ValueError("Recognizer.from_dir needs a model folder")
        return recognizer_class(_card_task(directory)).from_dir(directory, runtime=runtime, **options)

    @classmethod
    def _load(cls, directory: str | Path | None, runtime: str):
        """``(net, card, model, directory)`` of this class's folder, its card's task checked."""
        from emotion_keras.models import store
        from emotion_keras.runtime import load_net

        directory = Path(directory) if directory else store.default_model_dir(cls.task)
        net, card, model = load_net(directory, runtime)
        if card.get("task") not in (None, cls.task):
            raise store.ModelLoadError(f"{directory}: a {card.get('task')} model, not a {cls.task} model")
        return net, card, model, directory

    # ------------------------------------------------------------------ properties

    @property
    def input_names(self) -> list[str]:
        return list(self.net.input_names)

    # ------------------------------------------------------------------ model calls

    def _feed(self, inputs) -> dict[str, np.ndarray]:
        x = dict(inputs) if isinstance(inputs, dict) else {self.main_input: inputs}
        n = len(x[self.main_input])
        for name in self.zero_inputs:
            if name in self.net.input_names and x.get(name) is None:
                x[name] = np.zeros((n, int(self.net.input_shapes[name][-1])), np.float32)
        missing = [name for name in self.net.input_names if x.get(name) is None]
        if missing:
            raise ValueError(f"the model also reads {missing}: pass a dict of every input (the recogniser's "
                             f"preprocessor gives them), not {self.main_input!r} alone")
        return {k: (np.asarray(v) if self.input_dtype is None else np.asarray(v, self.input_dtype))
                for k, v in x.items() if v is not None}

    def _batched(self, fn: Callable, x: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``fn``'s outputs (a tuple of arrays) over ``x`` in chunks of ``batch_size``, each padded to
        a power of two (at most ``batch_size``), padding cut off again."""
        total = len(x[self.main_input])
        step = self.batch_size or total
        parts: list[tuple] = []
        for i in range(0, total, step):
            chunk = {k: v[i:i + step] for k, v in x.items()}
            n = len(chunk[self.main_input])
            size = 1 << (n - 1).bit_length()
            if self.batch_size:
                size = min(size, self.batch_size)
            if size > n:
                chunk = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
                         for k, v in chunk.items()}
            parts.append(tuple(o[:n] for o in fn(chunk)))
        return [np.concatenate(outs) for outs in zip(*parts)]

    def predict_proba(self, inputs) -> np.ndarray:
        """Calibrated (and prior-corrected) class probabilities ``(n, classes)`` for prepared model inputs.

        Args:
            inputs: the ``main_input`` array (face crops ``(n, H, W, C)`` uint8, speech feature
                windows ``(n, frames, features)``) or a dict of named inputs (``geometry`` may be
                left out: zeros, as for crops at training time).
        """
        x = self._feed(inputs)
        if not len(x[self.main_input]):
            return np.zeros((0, len(self.classes)), np.float32)
        (probs,) = self._batched(lambda c: (self.net.probabilities(c),), x)
        return self._calibrated(probs)

    def _calibrated(self, probs: np.ndarray) -> np.ndarray:
        return Calibration(self.temperature, self.prior, self.balance)(probs)

    def embeddings(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        """``(embeddings, calibrated probabilities)`` for prepared inputs: what fusion consumes.

        Args:
            inputs: as for :meth:`predict_proba`.
        """
        if self._embedder is None:
            from emotion_keras.runtime import KerasNet

            self._embedder = KerasNet(self.model, embedding=True) if self.model is not None else self.net
        x = self._feed(inputs)
        emb, probs = self._batched(self._embedder.embed, x)
        return emb, self._calibrated(probs)

    # ------------------------------------------------------------------ files

    def labels(self, p: np.ndarray, classes: list[str] | None = None) -> dict[str, float]:
        """``{label: probability}`` rounded for JSON (``classes`` default: this model's)."""
        return {c: round(float(v), 4) for c, v in zip(classes or self.classes, p)}

    def predict_file(self, path: str | Path) -> dict[str, Any]:
        raise NotImplementedError

    def predict_files(self, paths) -> Iterator[dict[str, Any]]:
        """One result per path, in input order; a bad file gives ``{"file", "error"}`` and the rest
        still run.

        Args:
            paths: file paths (any iterable; consumed lazily).
        """
        for p in paths:
            try:
                yield self.predict_file(p)
            except InputError as e:
                yield {"file": str(p), "error": e.problem}


# ---------------------------------------------------------------------- the task -> class map

def recognizer_class(task: str | None) -> type[Recognizer]:
    """The recogniser class of a card's ``task`` (imported on demand).

    Args:
        task: ``"face"``, ``"speech"`` or ``"fusion"``.
    """
    import importlib

    if task not in RECOGNIZERS:
        raise ValueError(f"no recogniser for task {task!r}; known: {', '.join(RECOGNIZERS)}")
    module, name = RECOGNIZERS[task]
    return getattr(importlib.import_module(module), name)


def _card_task(directory: str | Path) -> str | None:
    from emotion_keras.models import store

    task = store.read_card(directory).get("task")
    if task not in RECOGNIZERS:
        raise store.ModelLoadError(f"{directory}: the card's task {task!r} has no recogniser "
                                   f"({', '.join(RECOGNIZERS)})")
    return task
