"""Corruptions for robustness reports: what a deployed model meets that its test set lacks.

Faces are perturbed *after* detection and alignment, on the crops the model sees (uint8, (N, H, W, C)),
so a figure measures the classifier, not the detector: occlusion (``eyes``: a band across the eye
line at 40 % of the crop's height, as aligned crops place it; ``mouth``: a patch centred at 76 %
height; ``blocks``: random grey squares covering a share of the crop), Gaussian ``blur``, Gaussian
``noise``, ``jpeg`` re-encoding, ``rotate`` (alternating sign) and ``downscale`` (down, then back up).
Speech is perturbed on the 16 kHz waveform before features: white ``noise`` at an SNR, synthetic
``reverb`` (exponentially decaying noise impulse response of a given RT60), a telephone ``codec``
(8 kHz band limit and mu-law quantisation to N bits) and ``gain`` (with clipping at full scale).

Every function is deterministic given ``seed`` (one ``numpy`` generator per call). ``FACE`` and
``SPEECH`` list each perturbation's strengths, mildest first, and their unit.
"""

from __future__ import annotations

import numpy as np

# name -> (strengths mildest first, unit)
FACE = {
    "eyes": ((0.12, 0.2, 0.28), "band height / crop height"),
    "mouth": ((0.2, 0.3, 0.4), "patch side / crop side"),
    "blocks": ((0.1, 0.2, 0.35), "share of the crop covered"),
    "blur": ((0.5, 1.0, 2.0), "Gaussian sigma, pixels at 48 px"),
    "noise": ((5.0, 10.0, 20.0), "Gaussian std, of 255"),
    "jpeg": ((50, 20, 10), "JPEG quality"),
    "rotate": ((10.0, 20.0, 30.0), "degrees"),
    "downscale": ((2, 3, 4), "factor"),
}
SPEECH = {
    "noise": ((20.0, 10.0, 5.0), "SNR dB (white noise)"),
    "reverb": ((0.3, 0.6, 1.0), "RT60 seconds"),
    "codec": ((8, 6, 4), "mu-law bits at 8 kHz"),
    "gain": ((-20.0, 6.0, 12.0), "dB (clipped at full scale)"),
}
GROUPS = {"occlusion": ("eyes", "mouth", "blocks")}  # one CLI name for the three occlusions


def expand(names, table: dict) -> list[str]:
    """CLI names (``occlusion,blur``) -> perturbation names; unknown names raise ``ValueError``."""
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        if not name:
            continue
        parts = GROUPS.get(name, (name,)) if table is FACE else (name,)
        for p in parts:
            if p not in table:
                known = sorted(set(table) | (set(GROUPS) if table is FACE else set()))
                raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(known)}")
            if p not in out:
                out.append(p)
    return out


# ------------------------------------------------------------------------------------------ faces

def _fill(images: np.ndarray) -> np.ndarray:
    """Per-image mean grey: occluders neither black nor white, so they add no edge the model keys on."""
    return images.reshape(len(images), -1).mean(1).astype(np.uint8)


def perturb_faces(images: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """A perturbed copy of face crops ``(N, H, W, C)`` uint8."""
    import cv2

    x = np.array(images, np.uint8, copy=True)
    n, h, w = x.shape[:3]
    rng = np.random.default_rng(seed)
    scale = h / 48.0
    if kind == "eyes":
        half = max(1, int(round(strength * h / 2)))
        c = int(round(0.40 * h))
        x[:, max(0, c - half):c + half] = _fill(images)[:, None, None, None]
    elif kind == "mouth":
        s = max(1, int(round(strength * min(h, w))))
        cy, cx = int(round(0.76 * h)), w // 2
        y0, x0 = max(0, cy - s // 2), max(0, cx - s // 2)
        x[:, y0:y0 + s, x0:x0 + s] = _fill(images)[:, None, None, None]
    elif kind == "blocks":
        side = max(2, int(round(h / 6)))
        count = int(np.ceil(strength * h * w / side ** 2))
        fill = _fill(images)
        for i in range(n):
            for _ in range(count):
                yy, xx = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
                x[i, yy:yy + side, xx:xx + side] = fill[i]
    elif kind == "blur":
        for i in range(n):
            x[i] = cv2.GaussianBlur(images[i], (0, 0), strength * scale).reshape(x[i].shape)
    elif kind == "noise":
        x = np.clip(images.astype(np.float32) + rng.normal(0, strength, images.shape), 0, 255).astype(np.uint8)
    elif kind == "jpeg":
        for i in range(n):
            ok, buf = cv2.imencode(".jpg", images[i], [cv2.IMWRITE_JPEG_QUALITY, int(strength)])
            x[i] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(x[i].shape)
    elif kind == "rotate":
        for i in range(n):
            angle = strength if i % 2 == 0 else -strength
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            x[i] = cv2.warpAffine(images[i], m, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT).reshape(x[i].shape)
    elif kind == "downscale":
        small = (max(1, int(round(w / strength))), max(1, int(round(h / strength))))
        for i in range(n):
            lo = cv2.resize(images[i], small, interpolation=cv2.INTER_AREA)
            x[i] = cv2.resize(lo, (w, h), interpolation=cv2.INTER_LINEAR).reshape(x[i].shape)
    else:
        raise ValueError(f"unknown face perturbation {kind!r}; choose from {', '.join(FACE)}")
    return x


# ------------------------------------------------------------------------------------------ speech

def perturb_audio(y: np.ndarray, sr: int, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """A perturbed copy of a mono float32 waveform in [-1, 1] at ``sr``."""
    y = np.asarray(y, np.float32)
    rng = np.random.default_rng(seed)
    if kind == "noise":
        power = float(np.mean(y ** 2)) or 1e-10
        noise = rng.standard_normal(len(y)).astype(np.float32)
        out = y + noise * np.sqrt(power / 10 ** (strength / 10))
    elif kind == "reverb":
        t = np.arange(int(strength * sr)) / sr
        ir = rng.standard_normal(len(t)) * np.exp(-6.908 * t / strength)  # -60 dB at RT60
        ir[0] = 1.0
        ir /= np.sqrt(np.sum(ir ** 2))
        from scipy.signal import fftconvolve

        wet = fftconvolve(y, ir)[:len(y)].astype(np.float32)
        out = wet * (np.max(np.abs(y)) / max(float(np.max(np.abs(wet))), 1e-9))
    elif kind == "codec":
        import soxr

        narrow = soxr.resample(y, sr, 8000)
        mu = 255.0
        comp = np.sign(narrow) * np.log1p(mu * np.abs(np.clip(narrow, -1, 1))) / np.log1p(mu)
        levels = 2 ** int(strength) / 2
        comp = np.round(comp * levels) / levels
        expanded = np.sign(comp) * ((1 + mu) ** np.abs(comp) - 1) / mu
        out = soxr.resample(expanded.astype(np.float32), 8000, sr)[:len(y)]
        out = np.pad(out, (0, len(y) - len(out)))
    elif kind == "gain":
        out = y * 10 ** (strength / 20)
    else:
        raise ValueError(f"unknown speech perturbation {kind!r}; choose from {', '.join(SPEECH)}")
    return np.clip(out, -1.0, 1.0).astype(np.float32)
