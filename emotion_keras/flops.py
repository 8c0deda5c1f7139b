"""Forward-pass FLOPs of a Keras model, counted from its layers' shapes (multiply-add = 2 FLOPs).

Used to report training throughput as achieved GFLOP/s next to the machine's matrix-multiply peak,
which says how far a CPU run is from what the cores can do. Counts the layers that dominate a CNN
(convolutions, dense layers, self-attention); element-wise layers are left out, so the figure is a
slight undercount. A training step costs about three forward passes (forward, two backward products).
"""

from __future__ import annotations

import numpy as np


def _shape(t) -> tuple:
    return tuple(int(d) for d in t.shape[1:])


def layer_flops(layer) -> int:
    import keras

    from emotion_keras.models.layers import SelfAttention2D

    try:
        out = layer.output
        inp = layer.input
    except (AttributeError, ValueError):
        return 0
    if isinstance(inp, (list, tuple)) or isinstance(out, (list, tuple)):
        return 0
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = int(np.prod(layer.kernel_size))
        return 2 * int(np.prod(_shape(out))) * k
    if isinstance(layer, keras.layers.Conv2D):  # also SeparableConv's pointwise part is a Conv2D
        k = int(np.prod(layer.kernel_size)) * _shape(inp)[-1] // max(1, layer.groups)
        return 2 * int(np.prod(_shape(out))) * k
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(np.prod(_shape(inp))) * int(layer.units)
    if isinstance(layer, SelfAttention2D):
        h, w, c = _shape(inp)
        n, ck = h * w, max(1, c // layer.reduction)
        return 2 * n * c * (2 * ck + c) + 2 * n * n * (ck + c)
    return 0


def model_flops(model) -> int:
    """Forward FLOPs for one sample, recursing into nested models (keras.applications backbones)."""
    total = 0
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            total += model_flops(layer)
        else:
            total += layer_flops(layer)
    return total


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """The best float32 GFLOP/s of an ``n x n`` matrix product through NumPy's BLAS on all cores."""
    import time

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9
