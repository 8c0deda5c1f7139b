"""Helpers for the video and fusion tests: synthetic media written with PyAV, and tiny placeholder
face/speech/fusion models saved like the real ones (so the tests do not depend on saved_models/)."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np

CLASSES7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
CLASSES8 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "calm"]


def make_video(path: Path, seconds: float = 2.0, fps: float = 25, size=(160, 120), audio: bool = True,
               video: bool = True, rotation: int = 0, vfr: bool = False, vcodec: str = "libx264",
               container: str | None = None, sr: int = 44100, channels: int = 2, tone: float = 440.0,
               acodec: str = "aac") -> Path:
    """Write a small test clip: a red square top-left (to check orientation), a green ramp over time,
    and a sine tone; ``vfr`` alternates 1x and 3x frame durations every 10 frames."""
    import av

    c = av.open(str(path), "w", format=container)
    w, h = size
    if video:
        vs = c.add_stream(vcodec, rate=int(fps))
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        vs.time_base = fractions.Fraction(1, 1000)
        if vcodec == "libx264":
            vs.options = {"preset": "ultrafast"}
        if rotation:
            vs.set_display_rotation(rotation)
    if audio:
        layout = "stereo" if channels == 2 else "mono"
        a = c.add_stream(acodec, rate=sr)
        a.layout = layout
    if video:
        t, i = 0.0, 0
        while t < seconds - 1e-9:
            img = np.zeros((h, w, 3), np.uint8)
            img[:h // 4, :w // 4] = (255, 0, 0)
            img[..., 1] = int(255 * t / seconds)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(round(t * 1000))
            frame.time_base = fractions.Fraction(1, 1000)
            for p in vs.encode(frame):
                c.mux(p)
            t += (1 / fps) * (3 if vfr and (i // 10) % 2 else 1)
            i += 1
        for p in vs.encode():
            c.mux(p)
    if audio:
        n = int(seconds * sr)
        x = (0.3 * np.sin(2 * np.pi * tone * np.arange(n) / sr)).astype(np.float32)
        step = 1024
        for s in range(0, n, step):
            chunk = np.ascontiguousarray(np.stack([x[s:s + step]] * channels))
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            af.sample_rate = sr
            af.pts = s
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return Path(path)


def tiny_models(root: Path, fusion: bool = True) -> dict[str, Path]:
    """Save tiny face (48x48 grey, 7 classes), speech (1 s log-mel, 8 classes with calm) and fusion
    models under ``root`` with cards, as the real saved models are laid out."""
    import keras

    from emotion_keras.models import store
    from emotion_keras.models.fusion import FusionConfig, build_fusion_model
    from emotion_keras.preprocess.audio import SpeechFeatureConfig
    from emotion_keras.preprocess.faces import FacePrepConfig

    keras.utils.set_random_seed(0)
    prep = FacePrepConfig(size=48, grayscale=True)
    inp = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    emb = keras.layers.Dense(8, activation="relu", name="embedding")(x)
    out = keras.layers.Dense(7, activation="softmax", name="probabilities")(emb)
    face = keras.Model(inp, out, name="tiny_face")
    store.save(face, root / "face", {"task": "face", "name": "tiny", "classes": CLASSES7,
                                     "inputs": {"image": [48, 48, 1]}, "preprocessing": prep.to_dict()})

    cfg = SpeechFeatureConfig(window_seconds=1.0, hop_seconds=0.5, n_mels=32)
    sinp = keras.Input(cfg.input_shape, name="features")
    x = keras.layers.Conv1D(8, 5, strides=4, activation="relu")(sinp)
    x = keras.layers.GlobalAveragePooling1D()(x)
    semb = keras.layers.Dense(8, activation="relu", name="embedding")(x)
    sout = keras.layers.Dense(8, activation="softmax", name="probabilities")(semb)
    speech = keras.Model(sinp, sout, name="tiny_speech")
    store.save(speech, root / "speech", {"task": "speech", "name": "tiny", "classes": CLASSES8,
                                         "inputs": {"features": list(cfg.input_shape)},
                                         "preprocessing": cfg.to_dict()})
    dirs = {"face": root / "face", "speech": root / "speech", "fusion": root / "fusion"}
    if fusion:
        fcfg = FusionConfig(face_dim=8, speech_dim=8, max_frames=16, pooling="mean", normalize=False,
                            projection=8, hidden=8, embedding_dim=8)
        model = build_fusion_model(fcfg, CLASSES7)
        store.save(model, root / "fusion", {"task": "fusion", "name": "tiny", "classes": CLASSES7,
                                            "model_config": fcfg.to_dict(),
                                            "late_fusion_face_weight": 0.5})
    return dirs
