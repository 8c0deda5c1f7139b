"""The named-input contract of every model here: input names, their shapes, and feeding arrays.

Models declare named inputs ("image", "geometry", "features", ...); callers hold dicts of arrays that
may carry more than a given model takes. One place maps one onto the other, whatever input structure
(dict, list or single tensor) the model was saved with. No keras import needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def input_names(model) -> list[str]:
    """The model's input names, in declaration order."""
    return [t.name.split(":")[0] for t in model.inputs]


def input_spec(model) -> dict[str, list]:
    """``{name: shape without the batch axis}``: what a model card records as ``inputs``."""
    return {name: [None if d is None else int(d) for d in t.shape[1:]]
            for name, t in zip(input_names(model), model.inputs)}


def model_feed(model, available: dict[str, Any]):
    """Arrange named arrays the way ``model`` declares its inputs (dict, list or one tensor), so
    models saved with either structure get exactly what they expect, without warnings."""
    struct = model.input
    names = input_names(model)
    missing = [n for n in names if n not in available]
    if missing:
        raise ValueError(f"model {model.name} needs inputs {missing}; got {sorted(available)}")
    if isinstance(struct, dict):
        return {k: available[k] for k in struct}
    if isinstance(struct, (list, tuple)):
        return [available[n] for n in names]
    return available[names[0]]


def predict_views(model, inputs: dict[str, Any], tta: str = "none", crop: int = 0,
                  batch_size: int = 256) -> np.ndarray:
    """Class probabilities averaged over the test-time views of ``inputs["image"]``
    (:func:`~emotion_keras.preprocess.faces.tta_views`); the other inputs go with every view."""
    from emotion_keras.preprocess.faces import tta_views

    views = tta_views(inputs["image"], tta, crop)
    total = sum(np.asarray(model.predict(model_feed(model, {**inputs, "image": v}), batch_size=batch_size,
                                         verbose=0), np.float32) for v in views)
    return total / len(views)


def pad_frames(seqs, max_frames: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack variable-length frame-embedding sequences into ``(n, max_frames, dim)`` plus a 0/1 mask.

    Longer sequences are subsampled evenly (keeping their time span), shorter ones zero-padded.
    """
    out = np.zeros((len(seqs), max_frames, dim), np.float32)
    mask = np.zeros((len(seqs), max_frames), np.float32)
    for i, s in enumerate(seqs):
        s = np.asarray(s, np.float32).reshape(-1, dim) if s is not None else np.zeros((0, dim), np.float32)
        if len(s) > max_frames:
            s = s[np.linspace(0, len(s) - 1, max_frames).round().astype(int)]
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1.0
    return out, mask


def select_inputs(model, x):
    """The arrays ``model`` takes out of ``x``: a dict that may hold more (geometry a model leaves
    out) is arranged by :func:`model_feed`; a single array passes through unchanged."""
    return model_feed(model, x) if isinstance(x, dict) else x
