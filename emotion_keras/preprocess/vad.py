"""Voice activity: does a window of a long recording hold speech, or only silence, music or noise?

WebRTC's VAD (``webrtcvad-wheels``, a GMM over 30 ms frames of 16-bit PCM; frames must also be above
-55 dBFS) when installed, else an energy detector (30 ms frames above -45 dBFS RMS: louder than room
noise, quieter than speech close to a microphone). Only used to skip windows of recordings longer than
one window, so a single short clip is never discarded because the detector missed its speech.
"""

from __future__ import annotations

import numpy as np

MODES = ("webrtc", "energy", "none")
FRAME_MS = 30


def _webrtc():
    try:
        import webrtcvad
    except ImportError:
        return None
    return webrtcvad


def speech_fraction(y: np.ndarray, sr: int, mode: str = "webrtc", aggressiveness: int = 2,
                    floor_dbfs: float | None = None) -> float:
    """Fraction of 30 ms frames of ``y`` (float mono at ``sr``) that hold speech."""
    if mode == "none":
        return 1.0
    n = int(sr * FRAME_MS / 1000)
    frames = len(y) // n
    if frames == 0:
        return 0.0
    y = np.asarray(y[:frames * n], np.float32)
    vad_mod = _webrtc() if mode == "webrtc" else None
    webrtc = vad_mod is not None and sr in (8000, 16000, 32000, 48000)
    if floor_dbfs is None:
        floor_dbfs = -55.0 if webrtc else -45.0
    if webrtc:
        vad = vad_mod.Vad(int(aggressiveness))
        pcm = (np.clip(y, -1.0, 1.0) * 32767).astype("<i2").reshape(frames, n)
        energy_ok = _energy_frames(pcm.astype(np.float32) / 32767, floor_dbfs)
        votes = [energy_ok[i] and vad.is_speech(pcm[i].tobytes(), sr) for i in range(frames)]
        return float(np.mean(votes))
    return float(np.mean(_energy_frames(y.reshape(frames, n), floor_dbfs)))


def _energy_frames(frames: np.ndarray, floor_dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10)) > floor_dbfs


def has_speech(y: np.ndarray, sr: int, mode: str = "webrtc", min_fraction: float = 0.1) -> bool:
    """True when at least ``min_fraction`` of the window's frames are voiced speech."""
    return mode == "none" or speech_fraction(y, sr, mode) >= min_fraction
