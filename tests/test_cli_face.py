"""The face CLI end to end on real data: tiny training runs that must beat chance, evaluation
reports, the resumable comparison, preprocessing, and the ``predict --json`` contract."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import ROOT, corpus
from emotion_keras.cli import main

TINY = json.dumps({"width": 8, "depth": 3, "augment": False, "embedding_dim": 32})
FAST = json.dumps({"warmup_epochs": 0, "label_smoothing": 0.0, "early_stopping": 0})
SHIPPED = ROOT / "saved_models" / "face"


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
@pytest.mark.once  # CLI orchestration; training under each backend: test_models_face, test_recipe
def test_train_fer2013_subset_beats_chance(shared_data, tmp_path, capsys):
    """700 FER2013 Training images of three classes, 4 epochs of a tiny CNN, judged on 300 held-out
    PublicTest images: chance UAR is 1/3. Then the evaluate verb on the saved model."""
    fer = corpus(shared_data, "fer2013")
    run = tmp_path / "fer"
    args = ["face", "train", "--data", f"fer2013:{fer}", "--classes", "happy,surprise,neutral",
            "--limit", 700, "--val-limit", 300, "--epochs", 4, "--batch-size", 50,
            "--learning-rate", 0.003, "--model-config", TINY, "--train-config", FAST,
            "--run-dir", run, "--verbose", 0]
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    card = json.loads((run / "card.json").read_text())
    m = card["metrics"]["validation"]
    assert m["uar"] > 0.42, m
    assert card["task"] == "face" and card["classes"] == ["happy", "surprise", "neutral"]
    assert card["inputs"] == {"image": [48, 48, 1]}
    assert "PublicTest" in m["protocol"] and "Training" in m["protocol"] and "700" in m["protocol"]
    assert card["data"]["licence"] and card["preprocessing"]["size"] == 48
    assert len(card["history"]["val_uar"]) == 4 and (run / "history.csv").exists()
    assert (run / "evaluation.json").exists() and (run / "evaluation_confusion.png").exists()
    # training fits a temperature on the validation split and reports ECE with a reliability diagram
    assert card["calibration"]["n"] == m["n"] and card["calibration"]["temperature"] > 0
    assert (run / "evaluation_reliability.png").exists()
    # ... and records the class prior the loss saw (class weights on: about equal) with the default balance
    prior = card["class_prior"]
    assert list(prior["frequencies"]) == card["classes"] and prior["balance"] == 0.5
    assert sum(prior["frequencies"].values()) == pytest.approx(1, abs=1e-4)
    assert max(prior["frequencies"].values()) < 0.4 and "class weights" in prior["source"]
    # Rerunning a finished run does not train again.
    code, out, err = _run(capsys, *args)
    assert code == 0 and "already holds a finished run" in err

    rep_dir = tmp_path / "report"
    code, out, err = _run(capsys, "face", "evaluate", "--model", run, "--data", f"fer2013:{fer}",
                          "--split", "validation", "--limit", 300, "--tta-flip", "--out", rep_dir, "--json")
    assert code == 0, err
    report = json.loads(out)
    # Four classes of the validation subset are not the model's: they are left out, and said so.
    assert "not among the model's classes" in err
    assert set(report["per_class_recall"]) <= {"happy", "surprise", "neutral"}
    assert report["tta_flip"] and "PublicTest" in report["protocol"]
    assert json.loads((rep_dir / "evaluation.json").read_text())["n"] == report["n"]
    assert (rep_dir / "evaluation_confusion.png").stat().st_size > 1000
    assert report["balance"] == 0.5  # the card's prior correction
    code, out, err = _run(capsys, "face", "evaluate", "--model", run, "--data", f"fer2013:{fer}",
                          "--split", "validation", "--limit", 300, "--balance", 0, "--out", rep_dir, "--json")
    assert code == 0 and json.loads(out)["balance"] == 0


@pytest.mark.slow
@pytest.mark.once
def test_compare_on_ckplus(shared_data, tmp_path, capsys):
    """Two models on CK+48 with a fifth of the subjects held out (chance UAR 1/7; 600 of the training
    and 200 of the held-out images, so batches of 50 never leave a partial batch to recompile): a tiny
    VGG for 6 epochs must beat chance; a ResNet for 1 epoch only shows the table; rerunning skips both."""
    ck = corpus(shared_data, "ckplus48")
    cfg = tmp_path / "vgg-tiny.json"
    cfg.write_text(json.dumps({"name": "vgg-tiny", "model": json.loads(TINY)}))
    res = tmp_path / "resnet.json"
    res.write_text(json.dumps({"name": "resnet-w4", "train": {"epochs": 1},
                               "model": {"backbone": "resnet", "width": 4, "depth": 2, "attention_after": -1,
                                         "augment": False}}))
    compare = tmp_path / "compare"
    cargs = ["face", "compare", "--data", f"ckplus:{ck}", "--val-subjects", 0.2, "--configs", cfg, res,
             "--limit", 600, "--val-limit", 200, "--epochs", 6, "--batch-size", 50, "--learning-rate", 0.003,
             "--train-config", FAST, "--verbose", 0, "--out", compare]
    code, out, err = _run(capsys, *cargs)
    assert code == 0, err
    table = json.loads((compare / "comparison.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["vgg-tiny", "resnet-w4"]
    vgg, resnet = table["rows"]
    assert vgg["uar"] > 0.25, vgg
    assert vgg["epochs"] == 6 and resnet["epochs"] == 1 and resnet["backbone"] == "resnet"
    assert all(r["parameters"] > 0 and r["train_seconds"] > 0 and r["backend"] for r in table["rows"])
    assert "subject-held-out" in table["protocol"]
    assert "| vgg-tiny |" in (compare / "comparison.md").read_text()
    card = json.loads((compare / "vgg-tiny" / "card.json").read_text())
    assert "contempt" in card["classes"] and card["training"]["batchnorm_momentum"] < 0.99
    code, out, err = _run(capsys, *cargs)
    assert code == 0 and err.count("already done, skipping") == 2


def test_preprocess_verb(shared_data, capsys, tmp_path):
    code, out, err = _run(capsys, "face", "preprocess", "--data", corpus(shared_data, "ckplus48"), "--json",
                          "--out", tmp_path / "ck.npz")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["faces"] == 981 and summary["shape"] == [48, 48, 1] and summary["no_face"] == []
    with np.load(tmp_path / "ck.npz") as z:
        assert z["images"].shape == (981, 48, 48, 1) and len(z["labels"]) == 981


def test_bad_data_spec_is_a_clear_error(tmp_path, capsys):
    code, out, err = _run(capsys, "face", "preprocess", "--data", tmp_path / "missing")
    assert code == 2 and "missing" in err and "Traceback" not in err


@pytest.mark.skipif(not (SHIPPED / "model.keras").exists(), reason="no shipped face model in saved_models/face")
def test_predict_json_contract(tmp_path, capsys):
    face = ROOT / "samples" / "face.jpg"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    blank = tmp_path / "wall.jpg"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))
    heat = tmp_path / "heat"
    code, out, err = _run(capsys, "predict", face, corrupt, blank, "--json", "--heatmap-dir", heat)
    assert code == 1
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [x["file"] for x in lines] == [str(face), str(corrupt), str(blank)]
    faces = lines[0]["faces"]
    assert len(faces) == 1
    f = faces[0]
    assert set(f) >= {"box", "keypoints", "emotion", "probabilities"} and len(f["box"]) == 4
    assert abs(sum(f["probabilities"].values()) - 1) < 1e-3 and f["emotion"] in f["probabilities"]
    assert set(f["keypoints"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
    assert (heat / "face_face0.png").exists() and f["heatmap"] == str(heat / "face_face0.png")
    assert set(lines[1]) == {"file", "error"} and lines[1]["error"]
    assert lines[2] == {"file": str(blank), "faces": []}
    # Without --json: a table, same exit code.
    code, out, err = _run(capsys, "predict", face, corrupt)
    assert code == 1 and "face 1 at" in out and "error:" in out


def test_balance_outside_0_1_is_refused_by_the_parser(capsys):
    for verb in (["predict", str(ROOT / "samples" / "face.jpg")], ["face", "evaluate", "--data", "x"],
                 ["speech", "evaluate", "--data", "x"], ["calibrate", "--model", "x"]):
        with pytest.raises(SystemExit) as stop:
            _run(capsys, *verb, "--balance", "1.5")
        assert stop.value.code == 2
        assert "--balance: must be in [0, 1], not 1.5" in capsys.readouterr().err


def test_batch_verbs_refuse_an_empty_file_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo.jpg").write_bytes(b"not analysed")  # "" would have meant this folder
    for verb in ("predict", "analyze"):
        with pytest.raises(SystemExit) as stop:  # refused by the parser, before any model loads
            _run(capsys, verb, str(tmp_path / "photo.jpg"), "")
        out = capsys.readouterr()
        assert stop.value.code == 2 and out.out == ""
        assert "empty file name" in out.err and "nothing was analysed" in out.err
