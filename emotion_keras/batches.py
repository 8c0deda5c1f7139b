"""Training batches that mix samples: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

Mixing changes the targets as well as the inputs, so it cannot live inside the model the way
:class:`~emotion_keras.models.layers.ImageAugment` does; it happens here, on the host, on uint8-range
numpy batches (microseconds for 48 px faces), and feeds the unchanged, still jit-compiled train
step. Every batch has the same shape (the remainder is dropped, reshuffled each epoch), so JAX and
XLA compile one step only.
"""

from __future__ import annotations

import numpy as np


def _pydataset():
    import keras

    return keras.utils.PyDataset


def mix_batch(x, y, rng: np.random.Generator, mixup: float = 0.0, cutmix: float = 0.0,
              image_key: str = "image"):
    """One mixed batch: each sample blended with a shuffled partner of the same batch.

    ``x`` is an array or a dict of named arrays; ``y`` ``(B, K)`` distributions. With both
    ``mixup`` and ``cutmix`` set, a coin picks one per batch. CutMix pastes a box of the partner's
    image (area ``1 - lam``) into the ``image`` input and mixes the targets by the area actually
    pasted; the other inputs follow mixup's blend with the same ``lam``.
    """
    b = len(y)
    perm = rng.permutation(b)
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(rng.beta(alpha, alpha))
    arrays = x if isinstance(x, dict) else {image_key: x}
    out = {}
    if use_cutmix:
        img = np.asarray(arrays[image_key], np.float32)
        h, w = img.shape[1:3]
        ch, cw = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, w)
        mixed = img.copy()
        mixed[:, y0:y1, x0:x1] = img[perm, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        out[image_key] = mixed
    for key, value in arrays.items():
        if key not in out:
            v = np.asarray(value, np.float32)
            out[key] = lam * v + (1.0 - lam) * v[perm]
    y_mixed = (lam * y + (1.0 - lam) * y[perm]).astype(np.float32)
    return (out if isinstance(x, dict) else out[image_key]), y_mixed


class MixedBatches:
    """A ``keras.utils.PyDataset`` of shuffled, mixed, fixed-size batches (one epoch = ``len``)."""

    def __new__(cls, x, y, batch_size: int, mixup: float = 0.0, cutmix: float = 0.0, seed: int = 0):
        base = _pydataset()

        class _Mixed(base):
            def __init__(self):
                super().__init__()
                self.x, self.y = x, np.asarray(y, np.float32)
                self.n = len(self.y)
                self.batch_size = min(batch_size, self.n)
                self.rng = np.random.default_rng(seed)
                self.order = self.rng.permutation(self.n)

            def __len__(self):
                return max(1, self.n // self.batch_size)

            def __getitem__(self, i):
                idx = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
                xb = {k: v[idx] for k, v in self.x.items()} if isinstance(self.x, dict) else self.x[idx]
                return mix_batch(xb, self.y[idx], self.rng, mixup, cutmix)

            def on_epoch_end(self):
                self.order = self.rng.permutation(self.n)

        return _Mixed()
