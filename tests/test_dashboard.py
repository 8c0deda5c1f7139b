"""The Streamlit dashboard under ``streamlit.testing.v1.AppTest``: every page, uploads included.

Models are tiny ones built here and saved with ``models.store.save`` into a temporary folder that
``EMOTION_KERAS_MODELS`` points at, so the app runs the real recognisers end to end in seconds.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "dashboard.py"
sys.path.insert(0, str(ROOT / "apps"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamlit.testing.v1 import AppTest  # noqa: E402

from test_results import write_tree  # noqa: E402

CLASSES = ["angry", "happy", "neutral", "sad"]
TIMEOUT = 120


def _face_model(directory: Path) -> None:
    from emotion_keras.models import store
    from emotion_keras.models.face import FaceModelConfig, build_face_model
    from emotion_keras.preprocess.faces import FacePrepConfig

    cfg = FaceModelConfig(input_size=48, channels=1, width=4, depth=2, attention=True, attention_after=1,
                          dropout=0.0, embedding_dim=8, augment=False)
    model = build_face_model(cfg, CLASSES)
    store.save(model, directory, {"task": "face", "name": "tiny-face", "classes": CLASSES,
                                  "inputs": {"image": [48, 48, 1]},
                                  "preprocessing": FacePrepConfig().to_dict(),
                                  "model_config": cfg.to_dict(), "metrics": {},
                                  # a skewed training prior: the page's balance slider visibly moves the bars
                                  "class_prior": {"frequencies": {c: (0.97 if i == 0 else 0.03 / (len(CLASSES) - 1))
                                                                  for i, c in enumerate(CLASSES)},
                                                  "balance": 0.5, "source": "test"}})


def _speech_model(directory: Path) -> None:
    from emotion_keras.models import store
    from emotion_keras.models.speech import SpeechModelConfig, build_speech_model
    from emotion_keras.preprocess.audio import SpeechFeatureConfig

    feats = SpeechFeatureConfig(window_seconds=1.0, hop_seconds=0.5, n_mels=16)
    cfg = SpeechModelConfig(architecture="cnn1d", filters=4, conv_blocks=1, dropout=0.0, embedding_dim=8,
                            augment=False)
    model = build_speech_model(cfg, CLASSES, feats.input_shape)
    store.save(model, directory, {"task": "speech", "name": "tiny-speech", "classes": CLASSES,
                                  "inputs": {"features": list(feats.input_shape)},
                                  "preprocessing": feats.to_dict(), "model_config": cfg.to_dict(),
                                  "metrics": {}})


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _face_model(root / "face")
    _speech_model(root / "speech")
    return root


@pytest.fixture
def app_env(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(models_dir))
    return models_dir


def _run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.title] + [m.value for m in at.subheader]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [i.value for i in at.info] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _face_array() -> np.ndarray:
    img = np.full((48, 48), 170, np.uint8)
    img[14:20, 10:18] = 40
    img[14:20, 30:38] = 40
    img[32:36, 14:34] = 60
    return img


def _face_crop() -> bytes:
    """A 48x48 grey face-like crop (two eyes, a mouth): small images are classified whole."""
    return _png(_face_array())


# --- results -------------------------------------------------------------------------------------

def test_results_page_shows_every_kind_of_result(app_env, tmp_path):
    paths = write_tree(tmp_path)
    project = paths["tuning"] / "face" / "search"
    for tid, (score, filters, block) in {"00": (0.4, 8, "conv"), "01": (0.6, 16, "attention")}.items():
        (project / f"trial_{tid}").mkdir(parents=True)
        (project / f"trial_{tid}" / "trial.json").write_text(json.dumps({
            "trial_id": tid, "status": "COMPLETED", "score": score, "best_step": 1, "message": None,
            "hyperparameters": {"space": [], "values": {"filters": filters, "block": block}},
            "metrics": {"metrics": {"val_uar": {"direction": "max",
                                                "observations": [{"value": [score], "step": 1}]}}}}))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.text_area(key="results_roots").set_value("\n".join(str(p) for p in paths.values())).run()
    assert not at.exception, [e.value for e in at.exception]
    text = _text(at)
    assert "Keras backend" in text
    frames = [df.value for df in at.dataframe]
    models = frames[0]
    assert set(models["name"]) >= {"shipped-face", "small_cnn"} and "uar" in models
    comparison = next(f for f in frames if "metrics.uar" in f)
    assert list(comparison["name"]) == ["small_cnn", "attention"]
    trials = next(f for f in frames if "hp.filters" in f)
    assert list(trials["score"]) == [0.4, 0.6]
    assert any(m.value == "01" for m in at.metric)  # best trial
    assert len(at.get("vega_lite_chart")) >= 3  # parallel coordinates, curves, confusion+recall
    assert any("broken" in w.value for w in at.warning)  # the unreadable card is reported


def test_results_page_without_results_says_how_to_get_some(app_env, tmp_path):
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.text_area(key="results_roots").set_value(str(tmp_path / "nothing")).run()
    assert not at.exception
    assert any("No results found" in i.value for i in at.info)


# --- face ----------------------------------------------------------------------------------------

def test_face_page_upload_boxes_and_bars(app_env):
    at = _run("views/face.py")
    assert at.file_uploader(key="face_upload").allowed_type  # restricted to image types
    at.file_uploader(key="face_upload").upload("me.png", _face_crop(), "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = _text(at)
    assert "1 face found" in text and "tiny-face" in text
    assert any(h in text for h in (f"Face 1: **{c}**" for c in CLASSES))
    assert len(at.image) >= 1 and len(at.get("vega_lite_chart")) == 1
    # a rerun (another widget touched) reuses the result instead of recomputing
    before = at.session_state["_results"]
    at.run()
    assert at.session_state["_results"] is before
    # the class-balance slider starts at the card's default and re-weighs the bars without a model call
    slider = at.slider(key="face_balance")
    assert slider.value == 0.5
    headers = {}
    for b in (0.0, 1.0):
        at.slider(key="face_balance").set_value(b).run()
        assert not at.exception, [e.value for e in at.exception]
        headers[b] = [m.value for m in at.markdown if m.value.startswith("#### Face 1")]
    assert headers[0.0] != headers[1.0] and at.session_state["_results"] is before


def test_face_page_refuses_wrong_type_and_model_files(app_env):
    at = _run("views/face.py")
    at.file_uploader(key="face_upload").upload("model.keras", b"PK\x03\x04 not for loading", "application/zip")
    at.run()
    assert not at.exception
    assert at.error and all("keras" in e.value for e in at.error)
    assert "face found" not in _text(at)


def test_face_page_reports_a_corrupt_image(app_env):
    at = _run("views/face.py")
    at.file_uploader(key="face_upload").upload("broken.jpg", b"\xff\xd8\xff\xe0 truncated", "image/jpeg")
    at.run()
    assert not at.exception
    assert any("Could not analyse the upload" in e.value for e in at.error)


def test_face_page_camera(app_env):
    at = _run("views/face.py")
    at.radio(key="face_source").set_value("Camera").run()
    at.camera_input(key="face_camera").upload("camera.jpg", _jpeg(_face_array()), "image/jpeg")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "1 face found" in _text(at)


def test_oversized_upload_is_refused_with_a_message(app_env, monkeypatch):
    import common

    monkeypatch.setitem(common.LIMITS_MB, "image", 1)
    at = _run("views/face.py")
    at.file_uploader(key="face_upload").upload("big.png", _face_crop() + b"\0" * (1 << 20), "image/png")
    at.run()
    assert any("the limit for image files" in e.value for e in at.error)


# --- speech ----------------------------------------------------------------------------------------

def _voice(seconds: float = 2.5, sr: int = 16000) -> np.ndarray:
    """A vowel-like harmonic tone with a pitch glide and syllable-rate loudness changes."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.3 * y / np.abs(y).max() * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)).astype(np.float32)


def test_speech_page_upload_windows_and_pooled(app_env):
    at = _run("views/speech.py")
    at.file_uploader(key="speech_upload").upload("voice.wav", _wav(_voice()), "audio/wav")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = _text(at)
    assert "Pooled emotion" in text and "tiny-speech" in text and "2.5 s" in text
    assert len(at.image) == 1  # waveform + spectrogram
    assert len(at.get("vega_lite_chart")) == 2  # per-window and pooled
    windows = at.dataframe[0].value
    assert len(windows) >= 3 and set(CLASSES) <= set(windows.columns)


def test_speech_page_microphone_and_silence(app_env):
    at = _run("views/speech.py")
    at.radio(key="speech_source").set_value("Microphone").run()
    at.audio_input(key="speech_mic").upload("recording.wav", _wav(_voice(1.5)))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Pooled emotion" in _text(at)
    at.audio_input(key="speech_mic").upload("recording.wav", _wav(np.zeros(16000, np.float32)))
    at.run()
    assert not at.exception
    assert any("Could not analyse the upload" in e.value and "silence" in e.value for e in at.error)


# --- video -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def av_models(tmp_path_factory) -> Path:
    from video_fixtures import tiny_models

    root = tmp_path_factory.mktemp("av_models")
    tiny_models(root)
    return root


def test_video_page_timeline_and_frame_slider(av_models, monkeypatch, tmp_path):
    from video_fixtures import make_video

    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(av_models))
    clip = make_video(tmp_path / "clip.mp4", seconds=3.0, size=(160, 120))
    at = _run("views/video.py")
    at.file_uploader(key="video_upload").upload("my clip.mp4", clip.read_bytes(), "video/mp4")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = _text(at)
    assert "3.0 s analysed" in text and "overall emotion" in text
    assert len(at.get("vega_lite_chart")) == 2  # the timeline and the chosen window's bars
    assert len(at.image) == 1 and "frame at 0.00 s" in at.image[0].proto.imgs[0].caption
    result = at.session_state["_results"]
    at.slider(key="video_time").set_value(2.0).run()
    assert not at.exception
    assert "frame at 2.00 s" in at.image[0].proto.imgs[0].caption
    assert at.session_state["_results"] is result  # moving the slider does not analyse again


def test_video_page_wrong_type(app_env):
    at = _run("views/video.py")
    assert "Video" in _text(at)
    at.file_uploader(key="video_upload").upload("clip.txt", b"hello", "text/plain")
    at.run()
    assert not at.exception
    assert any(".txt" in e.value or "not a supported video" in e.value for e in at.error)


def test_video_page_without_models_explains(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(tmp_path))
    at = _run("views/video.py")
    at.file_uploader(key="video_upload").upload("clip.mp4", b"\0" * 64, "video/mp4")
    at.run()
    assert not at.exception
    assert any("Could not load the video model" in e.value and "EMOTION_KERAS_MODELS" in e.value
               for e in at.error)


def _wav(y: np.ndarray, sr: int = 16000) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV")
    return buf.getvalue()


# --- helpers -------------------------------------------------------------------------------------

def test_temp_upload_is_removed_and_never_named_by_the_user():
    import common

    with common.temp_upload(b"abc", ".png") as path:
        assert path.name == "upload.png" and path.read_bytes() == b"abc"
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(ValueError):
        with common.temp_upload(b"abc", "/../../etc/x"):
            pass
    with pytest.raises(RuntimeError):
        with common.temp_upload(b"abc", ".wav") as path:
            raise RuntimeError("boom")
    assert not path.exists()


def test_check_upload():
    import common

    assert common.check_upload("Photo.JPEG", b"x", common.IMAGE_TYPES, "image") == ".jpg"
    for name in ("x.keras", "x.h5", "noext", "../../x.png.exe"):
        with pytest.raises(common.UploadError):
            common.check_upload(name, b"x", common.IMAGE_TYPES, "image")
    with pytest.raises(common.UploadError, match="empty"):
        common.check_upload("a.wav", b"", common.AUDIO_TYPES, "audio")


def test_parallel_coordinates_and_timeline_rows():
    import common

    trials = [{"trial_id": "0", "score": 0.2, "hyperparameters": {"lr": 0.1, "block": "b", "flag": True}},
              {"trial_id": "1", "score": 0.6, "hyperparameters": {"lr": 0.3, "block": "a", "flag": True}}]
    rows = common.parallel_coordinates(trials)
    pos = {(r["trial"], r["axis"]): r["position"] for r in rows}
    assert pos[("0", "lr")] == 0 and pos[("1", "lr")] == 1
    assert pos[("0", "block")] == 1 and pos[("1", "block")] == 0  # sorted categories
    assert pos[("0", "flag")] == 0.5  # a constant axis sits in the middle
    assert pos[("1", "score")] == 1
    tl = common.timeline_rows({"timeline": [
        {"start": 0.0, "end": 2.5, "face": {"probabilities": {"happy": 0.9, "sad": 0.1}},
         "speech": {"happy": 0.4, "sad": 0.6}, "fused": {"probabilities": {"happy": 0.7, "sad": 0.3}}},
        {"start": 1.0, "end": 3.5, "face": None, "speech": {"happy": 0.5, "sad": 0.5}}]})
    assert {(r["modality"], r["time"]) for r in tl} == {("face", 0.0), ("speech", 0.0), ("fused", 0.0),
                                                        ("speech", 1.0)}
    assert len(tl) == 8


def test_backend_shown_matches_keras(app_env):
    import common
    import keras

    assert common.backend_name() == keras.backend.backend()


def test_dashboard_command_line(tmp_path):
    import argparse

    from emotion_keras.commands import dashboard
    from emotion_keras.errors import InputError

    parser = argparse.ArgumentParser()
    dashboard.register(parser.add_subparsers())
    args = parser.parse_args(["dashboard", "--port", "8600", "--models", str(tmp_path),
                              "--results", str(tmp_path), "--headless"])
    cmd, env = dashboard.command(args)
    assert Path(cmd[cmd.index("run") + 1]) == APP
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert env["EMOTION_KERAS_MODELS"] == str(tmp_path.resolve())
    assert str(tmp_path.resolve()) in env["EMOTION_KERAS_RESULTS"]
    with pytest.raises(InputError):
        dashboard.command(parser.parse_args(["dashboard", "--models", str(tmp_path / "absent")]))


def test_results_page_does_not_import_keras():
    """Browsing results needs no backend: Keras (and TensorFlow/JAX) load only with the first model."""
    import subprocess

    code = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
            f"at = AppTest.from_file({str(APP)!r}, default_timeout=60)\nat.run()\n"
            "assert not at.exception, [e.value for e in at.exception]\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
