"""``emotion-keras speech {preprocess,train,evaluate,compare}`` end to end on a small RAVDESS subset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from conftest import corpus
from emotion_keras.cli import main
from emotion_keras.pipelines.splits import load_speech_split, read_speech_records, speech_kfold_splits

# Unnormalised MFCC keep loudness, so angry vs sad is learnable from 96 clips in a few seconds.
FEATURES = json.dumps({"window_seconds": 2.0, "n_mels": 32, "hop_length": 320, "feature": "mfcc",
                       "n_mfcc": 13, "normalize": "none"})
MODEL = json.dumps({"architecture": "cnn1d", "filters": 8, "conv_blocks": 2, "embedding_dim": 16,
                    "dropout": 0.1, "augment": False})
TRAIN = ["--epochs", "12", "--batch-size", "16", "--learning-rate", "0.003", "--patience", "0", "--verbose", "0"]


@pytest.fixture(scope="module")
def ravdess(shared_data):
    return corpus(shared_data, "ravdess_speech")


@pytest.fixture(scope="module")
def trained(ravdess, tmp_path_factory):
    """angry vs sad, trained on actors 1-6, validated on held-out actors 7-8."""
    out = tmp_path_factory.mktemp("speech_train")
    code = main(["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "1,2,3,4,5,6,7,8",
                 "--classes", "angry,sad", "--val-speakers", "7,8", "--feature-config", FEATURES,
                 "--model-config", MODEL, *TRAIN, "--run-dir", str(out / "run"), "--out", str(out / "model")])
    assert code == 0
    return out


def test_train_beats_chance_speaker_independent(trained):
    card = json.loads((trained / "model" / "card.json").read_text())
    val = card["metrics"]["validation"]
    assert card["task"] == "speech" and card["classes"] == ["angry", "sad"]
    assert card["inputs"] == {"features": [99, 39]}
    assert card["data"]["validation_speakers"] == ["07", "08"]
    assert not set(card["data"]["train_speakers"]) & set(card["data"]["validation_speakers"])
    assert "actors 7-8" in val["protocol"] and "speaker-independent" in val["protocol"]
    assert val["n"] == 32  # clips, not windows
    assert val["accuracy"] >= 0.75, val  # chance is 0.5
    assert (trained / "model" / "evaluation_confusion.png").exists()
    assert card["calibration"]["method"] == "temperature"  # fitted on the validation clips
    assert (trained / "model" / "evaluation_reliability.png").exists()
    assert len(card["history"]["loss"]) == 12


def test_evaluate_states_whether_speakers_were_seen(trained, ravdess, capsys):
    model = str(trained / "model")
    assert main(["speech", "evaluate", "--model", model, "--data", str(ravdess), "--speakers", "7,8",
                 "--out", str(trained / "eval_heldout"), "--json"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert "speaker-independent: none of these speakers" in held["protocol"] and held["n"] == 32
    assert main(["speech", "evaluate", "--model", model, "--data", str(ravdess), "--speakers", "1,2",
                 "--out", str(trained / "eval_seen"), "--json"]) == 0
    seen = json.loads(capsys.readouterr().out)
    assert "NOT speaker-independent" in seen["protocol"]
    assert (trained / "eval_seen" / "evaluation.json").exists()


@pytest.mark.once  # CLI orchestration; speech training under each backend: test_models_speech
def test_compare_writes_table(ravdess, tmp_path, capsys):
    out = tmp_path / "cmp"
    tiny = json.dumps({"filters": 4, "conv_blocks": 2, "embedding_dim": 8})
    code = main(["speech", "compare", "--data", str(ravdess), "--speakers", "1,2,3",
                 "--classes", "angry,sad", "--val-speakers", "3", "--families", "cnn1d,cnn2d",
                 "--feature-config", FEATURES.replace('"mfcc"', '"logmel"'), "--model-config", tiny,
                 "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--out", str(out)])
    assert code == 0
    table = json.loads((out / "comparison.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["cnn1d", "cnn2d"]
    assert [r["feature"] for r in table["rows"]] == ["mfcc", "logmel"]  # cnn1d reads MFCC sequences
    for r in table["rows"]:
        assert {"parameters", "accuracy", "uar", "macro_f1", "train_seconds", "backend"} <= set(r)
    assert "actors 3" in table["protocol"]
    assert "| cnn2d | cnn2d | logmel |" in (out / "comparison.md").read_text()


def test_preprocess_reports_unreadable(tmp_path, capsys):
    root = tmp_path / "corpus"
    t = np.arange(16000) / 16000
    for label in ("angry", "sad"):
        (root / label).mkdir(parents=True)
        sf.write(root / label / "ok.wav", (0.3 * np.sin(2 * np.pi * 200 * t)).astype("float32"), 16000)
    (root / "sad" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert main(["speech", "preprocess", "--data", f"folder:{root}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 3 and summary["usable_clips"] == 2 and summary["windows"] == 2
    assert summary["unreadable"][0]["file"].endswith("broken.wav")


def test_protocol_helpers(ravdess):
    records = read_speech_records(str(ravdess))
    split = load_speech_split(records, val_speakers="0.2", seed=1)
    assert len(split.data["validation_speakers"]) == 4
    assert not set(split.data["train_speakers"]) & set(split.data["validation_speakers"])
    folds = speech_kfold_splits(records, 5)
    assert "actors 1-4" in folds[0].protocol and "actors 17-20" in folds[4].protocol
    assert main(["speech", "train", "--data", str(ravdess), "--val-speakers", "99", "--epochs", "1"]) == 2


@pytest.mark.once  # fold orchestration; speech training under each backend: test_models_speech
def test_crossvalidation_chooses_epochs_on_inner_speakers(ravdess, tmp_path, capsys):
    """3 folds over actors 1-3: each fold reports its held-out actor, chose its epoch on the next
    fold's actor (never the reported one), and normalised per training speaker."""
    from emotion_keras.pipelines.splits import inner_split

    records = read_speech_records(f"ravdess:{ravdess}", ["angry", "sad"], limit_speakers="1,2,3,4,5")
    folds = speech_kfold_splits(records, 5)
    for i, split in enumerate(folds):
        inner = inner_split(split, i, folds)
        held = set(split.data["validation_speakers"])
        assert set(inner.data["inner_validation_speakers"]) == set(folds[(i + 1) % 5].data["validation_speakers"])
        assert not held & {r.subject for r in inner.train + inner.val}
    run = tmp_path / "cv"
    code = main(["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "1,2,3",
                 "--classes", "angry,sad", "--folds", "3", "--feature-config", FEATURES,
                 "--speaker-norm", "speaker", "--model-config", MODEL, "--epochs", "1", "--batch-size", "16",
                 "--patience", "0", "--verbose", "0", "--run-dir", str(run)])
    assert code == 0
    report = json.loads((run / "cv.json").read_text())
    assert "inner validation" in report["protocol"] and "never on the speakers it reports" in report["protocol"]
    assert report["preprocessing"]["speaker_norm"] == "speaker"
    assert [f["validation_speakers"] for f in report["folds"]] == [["01"], ["02"], ["03"]]
    fold = json.loads((run / "fold1" / "test_result.json").read_text())
    assert fold["metrics"]["n"] == 16 and "actors 1 " in fold["metrics"]["protocol"]
    card = json.loads((run / "fold1" / "card.json").read_text())
    assert card["data"]["validation_speakers"] == ["02"] and card["data"]["train_speakers"] == ["03"]

    # The fold models as one model averaging them, calibrated on their out-of-fold clips.
    from emotion_keras.models import store
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    ens = tmp_path / "ensemble"
    code = main(["speech", "ensemble", "--cv-dir", str(run), "--out", str(ens)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "3 members" in out.out and "fitted out of fold" in out.out
    card = json.loads((ens / "card.json").read_text())
    assert card["model_config"]["architecture"] == "ensemble" and card["model_config"]["members"] == 3
    assert card["metrics"]["cv5"]["accuracy"] == report["accuracy"]["mean"]
    assert card["calibration"]["n"] == 48 and "out-of-fold" in card["calibration"]["fitted_on"]
    assert card["data"]["train_speakers"] == ["01", "02", "03"]
    assert [m["held_out_speakers"] for m in card["ensemble"]["members"]] == [["01"], ["02"], ["03"]]
    model, _ = store.load(ens)
    members = [store.load(run / f"fold{i}")[0] for i in (1, 2, 3)]
    x = np.random.default_rng(0).normal(0, 1, (4, *card["inputs"]["features"])).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               np.mean([m.predict(x, verbose=0) for m in members], 0), atol=1e-5)
    rec = SpeechEmotionRecognizer(ens)
    emb, probs = rec.embeddings(x)
    assert emb.shape == (4, 3 * 16) and probs.shape == (4, 2)  # the members' embeddings side by side
    clip = next(r.path for r in records if r.subject == "01")
    assert set(rec.predict_file(clip)["probabilities"]) == {"angry", "sad"}
    assert main(["speech", "ensemble", "--cv-dir", str(tmp_path), "--out", str(ens)]) == 2
    assert "no cv.json here" in capsys.readouterr().err
