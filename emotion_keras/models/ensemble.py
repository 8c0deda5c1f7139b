"""Several trained models of one task as one Keras model: the mean of their probabilities (or a
weighted mean, :class:`~emotion_keras.models.layers.WeightedAverage`).

Used for the fold models of a speaker-grouped cross-validation (``emotion-keras speech ensemble``):
each member has been trained without a fifth of the speakers, so together they have seen all of them,
and averaging members that disagree on new speakers is the cheapest accuracy there is. The ensemble is
a plain functional model (members nested under ``member_<i>``, output ``probabilities``), so it saves,
loads in safe mode, exports and runs under every backend like any other model. Its embedding for
fusion is the members' embeddings side by side (:func:`emotion_keras.models.fusion.embedding_and_probabilities`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

MEMBER_PREFIX = "member_"


def check_weights(weights: Sequence[float], n: int) -> list[float]:
    """``weights`` as floats, one positive finite number per member (a ``ValueError`` says otherwise),
    equal ones included: (0, 0) is no ensemble."""
    weights = [float(w) for w in weights]
    if len(weights) != n or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"needs {n} positive numbers, one per model; got {weights}")
    return weights


def build_ensemble(members: Sequence[keras.Model], name: str = "ensemble",
                   weights: Sequence[float] | None = None) -> keras.Model:
    """One model averaging ``members``' probabilities, weighted by ``weights`` (positive, one per
    member) where they are not all equal; members must share input names and shapes and their
    number of classes (a ``ValueError`` says which member differs)."""
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, not {len(members)}")
    weights = check_weights(weights, len(members)) if weights is not None else None

    def signature(m):
        return [(t.name.split(":")[0], tuple(t.shape[1:])) for t in m.inputs], tuple(m.output.shape[1:])

    first = signature(members[0])
    for i, m in enumerate(members[1:], 2):
        if signature(m) != first:
            raise ValueError(f"ensemble member {i} has inputs/outputs {signature(m)}, member 1 {first}")
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0]) for t in members[0].inputs]
    feed = inputs[0] if len(inputs) == 1 else inputs
    outputs = []
    for i, m in enumerate(members, 1):
        member = keras.Model(m.inputs, m.output, name=f"{MEMBER_PREFIX}{i}")
        outputs.append(member(feed))
    if weights is None or len(set(map(float, weights))) == 1:
        probabilities = keras.layers.Average(name="probabilities", dtype="float32")(outputs)
    else:
        from emotion_keras.models.layers import WeightedAverage

        probabilities = WeightedAverage(weights, name="probabilities", dtype="float32")(outputs)
    return keras.Model(inputs, probabilities, name=name)


def members_of(model: keras.Model) -> list[keras.Model]:
    """The member models of an ensemble built by :func:`build_ensemble` (empty for any other model)."""
    return [layer for layer in model.layers
            if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)]
