"""Export (ONNX, LiteRT, SavedModel) of the shipped face, speech and fusion models: outputs equal the
Keras model's within 1e-4 on real inputs (the bundled samples' face crop and speech windows), and
the ONNX runtime path runs without TensorFlow, JAX or Keras in the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
MODELS = ROOT / "saved_models"
pytest.importorskip("onnxruntime", reason="export tests need the [export] extra (onnxruntime, tf2onnx)")


@pytest.fixture(scope="module")
def real_inputs():
    """Model inputs computed from samples/: aligned face crops (plus a mirrored and a darker copy),
    the speech clip's feature windows, and fusion inputs built from the two models' embeddings."""
    from emotion_keras.models import store
    from emotion_keras.models.fusion import embedding_and_probabilities
    from emotion_keras.models.io import pad_frames
    from emotion_keras.preprocess import audio
    from emotion_keras.recognizers.face import FaceEmotionRecognizer
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    face = FaceEmotionRecognizer(MODELS / "face")
    from emotion_keras.preprocess.images import load_image

    _, crops, _, _ = face._prepare(load_image(SAMPLES / "face.jpg"))
    crops = np.concatenate([crops, crops[:, :, ::-1], (crops * 0.6).astype(np.uint8)]).astype(np.float32)
    speech = SpeechEmotionRecognizer(MODELS / "speech")  # every input the model reads, normalised as it is
    windows, _ = speech.waveform_inputs(audio.load_audio(SAMPLES / "speech.wav", speech.config.sr))
    windows = {k: v.astype(np.float32) for k, v in windows.items()}
    f_emb = np.asarray(embedding_and_probabilities(face.model).predict_on_batch(crops)[0])
    s_emb = np.asarray(embedding_and_probabilities(speech.model).predict_on_batch(windows)[0])
    fusion_card = store.read_card(MODELS / "fusion")
    mc = fusion_card["model_config"]
    frames, mask = pad_frames([f_emb, f_emb[:1], f_emb[1:]], mc["max_frames"], mc["face_dim"])
    return {"face": {"image": crops},
            "speech": windows,
            "fusion": {"face_frames": frames, "face_mask": mask,
                       "speech": np.repeat(s_emb[:1], 3, axis=0)}}


CASES = [(task, fmt) for task in ("face", "speech", "fusion") for fmt in ("onnx", "tflite", "saved_model")]


@pytest.mark.parametrize("task,fmt", CASES)
def test_exported_model_matches_keras_on_real_inputs(task, fmt, request, tmp_path):
    import keras

    from emotion_keras.export import export_model, export_net, keras_outputs, run_exported
    from emotion_keras.models import store

    if keras.backend.backend() != "tensorflow":  # exporting runs on TensorFlow (see emotion_keras.export)
        from emotion_keras.config import ConfigError

        with pytest.raises(ConfigError, match="TensorFlow backend"):
            export_model(MODELS / task, fmt, tmp_path)
        return
    record = export_model(MODELS / task, fmt, tmp_path)
    path = Path(record["path"])
    assert path.exists() and path.parent == tmp_path
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["task"] == task and card["exports"][fmt]["file"] == path.name
    assert card["classes"] == store.read_card(MODELS / task)["classes"]
    model, _ = store.load(MODELS / task)
    net, roles = export_net(model, card)
    x = request.getfixturevalue("real_inputs")[task]  # built only where the export runs
    want = keras_outputs(net, x, roles)
    got = run_exported(path, fmt, x, roles)
    for role in roles:
        assert got[role].shape == want[role].shape
        np.testing.assert_allclose(got[role], want[role], atol=1e-4, rtol=0)
    assert record["parity_max_abs_diff"] < 1e-4


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    from emotion_keras.export import export_model

    import keras

    root = tmp_path_factory.mktemp("onnx_models")
    if keras.backend.backend() == "tensorflow":
        for task in ("face", "speech", "fusion"):
            export_model(MODELS / task, "onnx", root / task)
    else:  # another backend in this process: export as a user would, with the CLI (it picks TensorFlow)
        _export_with_the_cli(root, ("face", "speech", "fusion"))
    return root


def _export_with_the_cli(root: Path, tasks, backend: str = "jax"):
    """``emotion-keras export --format onnx`` of the shipped ``tasks`` into ``root/<task>``, in a fresh
    process whose KERAS_BACKEND is ``backend``."""
    code = ("import sys\nfrom emotion_keras.cli import main\n"
            "sys.exit(max(main(['export', '--model', f'{sys.argv[1]}/{t}', '--format', 'onnx', '--out',\n"
            "                   f'{sys.argv[2]}/{t}', '--no-calibrate']) for t in sys.argv[3:]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(MODELS), str(root), *tasks], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": backend})
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.once  # it chooses its process's backend itself
def test_export_command_from_a_jax_process_exports_with_tensorflow(tmp_path):
    _export_with_the_cli(tmp_path, ["speech"])
    card = json.loads((tmp_path / "speech" / "card.json").read_text())
    record = card["exports"]["onnx"]
    assert (tmp_path / "speech" / record["file"]).is_file() and record["parity_max_abs_diff"] < 1e-4


@pytest.mark.once  # the ONNX runtime path imports no backend; exporting from JAX: the next-but-one test
def test_onnx_runtime_needs_no_tensorflow_or_jax(onnx_models, tmp_path):
    """predict --runtime onnx in a fresh process: same results as Keras, and no TF/JAX/Keras import."""
    code = (
        "import json, sys\n"
        "from emotion_keras.cli import main\n"
        f"m = {str(onnx_models)!r}\n"
        "rc = main(['predict', sys.argv[1], sys.argv[2], '--json', '--runtime', 'onnx', '--model-dir', m + '/face',\n"
        "           '--speech-model-dir', m + '/speech', '--fusion-model-dir', m + '/fusion'])\n"
        "from emotion_keras.recognizers.face import FaceEmotionRecognizer\n"
        "r = FaceEmotionRecognizer(m + '/face', runtime='onnx').predict_file(sys.argv[1])\n"
        "heavy = [k for k in ('tensorflow', 'jax', 'keras', 'torch') if k in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy, 'faces': len(r['faces'])}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code, str(SAMPLES / "face.jpg"), str(SAMPLES / "speech.wav")],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    summary = lines[-1]
    assert summary == {"rc": 0, "heavy": [], "faces": 1}
    onnx_face, onnx_speech = lines[0], lines[1]

    from emotion_keras.recognizers.face import FaceEmotionRecognizer
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    keras_face = FaceEmotionRecognizer(MODELS / "face").predict_file(SAMPLES / "face.jpg")
    keras_speech = SpeechEmotionRecognizer(MODELS / "speech").predict_file(SAMPLES / "speech.wav")
    assert onnx_face["faces"][0]["box"] == keras_face["faces"][0]["box"]
    for a, b in ((onnx_face["faces"][0]["probabilities"], keras_face["faces"][0]["probabilities"]),
                 (onnx_speech["probabilities"], keras_speech["probabilities"])):
        assert a.keys() == b.keys()
        assert max(abs(a[k] - b[k]) for k in a) <= 2e-4  # both rounded to 4 decimals


@pytest.mark.once  # the ONNX runtime path imports no backend
def test_onnx_runtime_applies_the_card_temperature(onnx_models, tmp_path):
    import shutil

    from emotion_keras.calibration import apply_temperature
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    d = tmp_path / "speech"
    shutil.copytree(onnx_models / "speech", d)
    card = json.loads((d / "card.json").read_text())
    card.pop("calibration", None)
    (d / "card.json").write_text(json.dumps(card))
    plain = SpeechEmotionRecognizer(d, runtime="onnx")
    rng = np.random.default_rng(0)
    feats = {name: rng.standard_normal((3, *plain.net.input_shapes[name])).astype(np.float32)
             for name in plain.input_names}  # features and, for a prosody model, prosody
    raw = plain.predict_features(feats)
    card["calibration"] = {"method": "temperature", "temperature": 2.5}
    (d / "card.json").write_text(json.dumps(card))
    hot = SpeechEmotionRecognizer(d, runtime="onnx")
    np.testing.assert_allclose(hot.predict_features(feats), apply_temperature(raw, 2.5), atol=1e-6)
    assert hot.predict_features(feats).max() < raw.max()


def test_onnx_runtime_without_an_export_says_what_to_run(tmp_path):
    import shutil

    from emotion_keras.models.store import ModelLoadError
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    shutil.copy(MODELS / "face" / "card.json", tmp_path / "card.json")
    with pytest.raises(ModelLoadError, match="emotion-keras export"):
        FaceEmotionRecognizer(tmp_path, runtime="onnx")


def test_export_command_line(tmp_path):
    import keras

    from emotion_keras.cli import main

    if keras.backend.backend() != "tensorflow":  # keras already imported here: a clear error
        assert main(["export", "--model", str(MODELS / "speech"), "--format", "onnx", "--out", str(tmp_path),
                     "--no-calibrate"]) == 2
        return
    # the speech model: the command is the same for every task, and it exports in a second (the face ensemble: 15 s)
    assert main(["export", "--model", str(MODELS / "speech"), "--format", "onnx", "--out",
                 str(tmp_path / "speech.onnx"), "--no-calibrate", "--json"]) == 0
    assert (tmp_path / "speech.onnx").is_file() and (tmp_path / "card.json").is_file()
    assert main(["export", "--model", str(tmp_path / "missing"), "--format", "onnx"]) == 2
