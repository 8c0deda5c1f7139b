"""Where a face model looks: self-attention maps and Grad-CAM, on any Keras backend.

Both return one float32 ``(H, W)`` heatmap in ``[0, 1]`` per input image, at the input's size.
:func:`heatmap` picks the attention map when the model has a ``SelfAttention2D`` layer (what the model
itself weighs, no gradients needed) and Grad-CAM otherwise. Grad-CAM needs a gradient of a class
score with respect to an intermediate feature map; Keras has no backend-neutral ``grad``, so the one
backend-specific piece is :func:`_gradient`. The model is split at the feature map into two
functional models (features, head) so the gradient is taken with respect to a real input of the head.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-8


def _as_inputs(model, inputs):
    """Batch the inputs the way the model's input structure wants them; return (inputs, image)."""
    struct = model.input
    if isinstance(inputs, dict):
        data = {k: np.asarray(v, "float32") for k, v in inputs.items()}
    else:
        data = {"image": np.asarray(inputs, "float32")}
    image = data["image"]
    if image.ndim == 3:  # one image
        data = {k: v[None] for k, v in data.items()}
    elif image.ndim == 2:  # one grey image without channel axis
        data = {k: (v[None, ..., None] if k == "image" else v[None]) for k, v in data.items()}
    if not isinstance(struct, dict):
        return data["image"], data["image"]
    missing = sorted(set(struct) - set(data))
    if missing:
        raise ValueError(f"model {model.name} also needs inputs {missing}")
    return {k: data[k] for k in struct}, data["image"]


def _attention_layer(model):
    from emotion_keras.models.layers import SelfAttention2D

    found = [layer for layer in model.layers if isinstance(layer, SelfAttention2D)]
    return found[-1] if found else None


def _normalise_resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(B, h, w) -> (B, H, W) float32, each map scaled to [0, 1] (all-zero where it is flat)."""
    import cv2

    out = np.zeros((len(maps), *size), np.float32)
    for i, m in enumerate(np.asarray(maps, np.float32)):
        m = cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        lo, hi = float(m.min()), float(m.max())
        if hi - lo > _EPS:
            out[i] = (m - lo) / (hi - lo)
    return out


def attention_map(model, inputs) -> np.ndarray:
    """Mean attention each position receives from all positions of the model's last
    ``SelfAttention2D``, upsampled to the input size: ``(B, H, W)`` float32 in ``[0, 1]``."""
    import keras

    layer = _attention_layer(model)
    if layer is None:
        raise ValueError(f"model {model.name} has no SelfAttention2D layer; use grad_cam")
    x, image = _as_inputs(model, inputs)
    features = keras.Model(model.input, layer.input).predict(x, verbose=0)
    h, w = int(features.shape[1]), int(features.shape[2])
    attn = keras.ops.convert_to_numpy(layer.attention_scores(features))  # (B, N, N)
    received = attn.mean(axis=1).reshape(-1, h, w)
    return _normalise_resize(received, image.shape[1:3])


def _outer_output(model, layer):
    """The symbolic output of ``layer`` inside ``model``'s graph.

    ``layer.output`` of a nested model (a ``keras.applications`` backbone) is the nested model's own
    output tensor, not the one in the outer graph, so look up the outer node instead.
    """
    for nodes in getattr(model, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is layer and len(node.outputs) == 1:
                return node.outputs[0]
    return layer.output


def _feature_tensor(model, layer_name):
    import keras

    if layer_name is not None:
        return _outer_output(model, model.get_layer(layer_name))
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out = _outer_output(model, layer)
        if len(getattr(out, "shape", ())) == 4:
            return out
    raise ValueError(f"model {model.name} has no layer with a 4-D (feature map) output")


def _gradient(fn, x):
    """d sum(fn(x)) / dx with the active backend's autodiff (the only backend-specific code)."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        # one compiled function instead of hundreds of eagerly compiled ops
        return np.asarray(jax.jit(jax.grad(lambda t: jnp.sum(fn(t))))(jnp.asarray(x)))
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = tf.reduce_sum(fn(t))
        return tape.gradient(y, t).numpy()
    if backend == "torch":
        import torch

        t = torch.tensor(np.asarray(x), requires_grad=True)
        fn(t).sum().backward()
        return t.grad.detach().cpu().numpy()
    raise NotImplementedError(f"Grad-CAM is not implemented for the {backend} backend")


def grad_cam(model, inputs, class_index=None, layer_name=None) -> np.ndarray:
    """Grad-CAM of ``class_index`` (default: each sample's predicted class) at ``layer_name``
    (default: the last layer with a 4-D output): ``(B, H, W)`` float32 in ``[0, 1]``.

    The score is the log-probability, whose gradient does not vanish when the softmax saturates.
    """
    import keras

    x, image = _as_inputs(model, inputs)
    feature_tensor = _feature_tensor(model, layer_name)
    features = np.asarray(keras.Model(model.input, feature_tensor).predict(x, verbose=0), np.float32)
    others = {k: v for k, v in x.items() if k != "image"} if isinstance(x, dict) else {}
    extra = [model.input[k] for k in others]
    head = keras.Model([feature_tensor, *extra], model.output)
    probs = head.predict([features, *others.values()], verbose=0)
    if class_index is None:
        classes = probs.argmax(axis=-1)
    else:
        classes = np.broadcast_to(np.asarray(class_index, int), (len(features),))
    onehot = np.eye(probs.shape[-1], dtype=np.float32)[classes]
    other_values = [keras.ops.convert_to_tensor(v) for v in others.values()]

    def score(f):
        p = keras.ops.cast(head([f, *other_values], training=False), "float32")
        return keras.ops.sum(keras.ops.log(p + 1e-12) * onehot, axis=-1)

    grads = _gradient(score, features)  # (B, h, w, C)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * features).sum(axis=-1), 0.0)
    return _normalise_resize(cam, image.shape[1:3])


def heatmap(model, inputs, **kwargs) -> np.ndarray:
    """Attention map when the model has self-attention, else Grad-CAM: ``(B, H, W)`` in ``[0, 1]``;
    for an ensemble, the mean of its members' maps."""
    from emotion_keras.models.ensemble import members_of

    members = members_of(model)
    if members:
        maps = np.mean([heatmap(m, inputs, **kwargs) for m in members], axis=0)
        return _normalise_resize(maps, maps.shape[1:3])
    if _attention_layer(model) is not None:
        return attention_map(model, inputs)
    return grad_cam(model, inputs, **kwargs)


def overlay(rgb, heat, alpha: float = 0.45) -> np.ndarray:
    """Blend a ``[0, 1]`` heatmap as a JET colour map over an image (RGB or grey): uint8 RGB."""
    import cv2

    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        img = np.clip(img if img.max() > 1.0 else img * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2 or img.shape[-1] == 1:
        img = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=-1)
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    if heat.shape != img.shape[:2]:
        heat = cv2.resize(heat, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET),
                          cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(img, 1.0 - alpha, colour, alpha, 0.0)
