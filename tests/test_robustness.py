"""``evaluate --perturb`` and ``calibrate`` on the shipped models and real corpora (small subsets):
the robustness table next to the clean figure in the report and on the card, ECE and the reliability
diagram in every report, and a fitted temperature that every recogniser applies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import ROOT, corpus
from emotion_keras.cli import main

MODELS = ROOT / "saved_models"
# The perturbations, the temperature fit and the recognisers' use of it are numpy and Python around
# the model's predictions; predicting under each backend is covered by test_recognizer_* and
# test_parity. The shipped six-model ensemble costs about a minute a pass, so once.
pytestmark = pytest.mark.once


def _copy(task, tmp_path):
    d = tmp_path / task
    shutil.copytree(MODELS / task, d, ignore=shutil.ignore_patterns("*.png", "evaluation.json"))
    card = json.loads((d / "card.json").read_text())
    card.pop("calibration", None)
    card.pop("robustness", None)
    card.pop("class_prior", None)  # as a card saved before trainers recorded it
    (d / "card.json").write_text(json.dumps(card))
    return d


def test_face_evaluate_perturb_report_and_card(shared_data, tmp_path, capsys):
    fer = corpus(shared_data, "fer2013")
    model = _copy("face", tmp_path)
    code = main(["face", "evaluate", "--model", str(model), "--data", f"fer2013:{fer}", "--split", "validation",
                 "--limit", "56", "--perturb", "occlusion,blur,noise,jpeg,rotate,downscale", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    rob = report["robustness"]
    assert rob["clean"]["accuracy"] == report["accuracy"]
    kinds = {r["perturbation"] for r in rob["rows"]}
    assert kinds == {"eyes", "mouth", "blocks", "blur", "noise", "jpeg", "rotate", "downscale"}
    assert len(rob["rows"]) == 24 and all(0 <= r["accuracy"] <= 1 for r in rob["rows"])
    # the strongest occlusions and blurs cost accuracy on average
    strongest = [r for r in rob["rows"] if r["strength"] == max(x["strength"] for x in rob["rows"]
                                                                  if x["perturbation"] == r["perturbation"])]
    assert np.mean([r["accuracy_drop"] for r in strongest]) > 0
    assert "seed 0" in rob["protocol"] and "subset of 56" in rob["protocol"]
    cal = report["calibration"]
    assert 0 <= cal["ece"] <= 1 and len(cal["reliability"]) == 15
    assert (model / "evaluation_reliability.png").exists() and (model / "evaluation_confusion.png").exists()
    card = json.loads((model / "card.json").read_text())
    assert list(card["robustness"].values())[0]["rows"] == rob["rows"]


def test_speech_evaluate_perturb(shared_data, tmp_path, capsys):
    rav = corpus(shared_data, "ravdess_speech")
    model = _copy("speech", tmp_path)
    code = main(["speech", "evaluate", "--model", str(model), "--data", f"ravdess:{rav}", "--speakers", "20",
                 "--perturb", "noise,reverb,codec,gain", "--out", str(tmp_path / "rep"), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    rows = report["robustness"]["rows"]
    assert [r["perturbation"] for r in rows] == ["noise"] * 3 + ["reverb"] * 3 + ["codec"] * 3 + ["gain"] * 3
    noise = [r["accuracy"] for r in rows if r["perturbation"] == "noise"]
    assert noise[-1] <= report["accuracy"]  # 5 dB SNR is no better than clean
    assert (tmp_path / "rep" / "evaluation_reliability.png").exists()
    assert "robustness" not in json.loads((model / "card.json").read_text())  # --out: card untouched


def test_calibrate_writes_the_card_and_recognisers_apply_it(shared_data, tmp_path, capsys):
    from emotion_keras.calibration import apply_balance, apply_temperature
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    fer = corpus(shared_data, "fer2013")
    model = _copy("face", tmp_path)
    card = json.loads((model / "card.json").read_text())
    card["data"]["spec"] = f"fer2013:{fer}"  # as if trained on FER2013: its prior comes from FER2013 Training
    (model / "card.json").write_text(json.dumps(card))
    plain = FaceEmotionRecognizer(model)
    code = main(["calibrate", "--model", str(model), "--data", f"fer2013:{fer}", "--limit", "300", "--json",
                 "--balance", "0.3"])
    out = capsys.readouterr()
    assert code == 0, out.err
    entry = json.loads(out.out)
    prior = entry.pop("class_prior")
    card = json.loads((model / "card.json").read_text())
    assert card["calibration"] == entry and entry["method"] == "temperature" and entry["n"] == 300
    # the prior came from the training split's labels (FER2013 Training here), with the balance asked for
    assert card["class_prior"] == prior and prior["balance"] == 0.3 and "rebuilt" in prior["source"]
    freq = prior["frequencies"]
    assert list(freq) == card["classes"] and sum(freq.values()) == pytest.approx(1, abs=1e-4)
    # FER2013 Training: 25% happy, 1.5% disgust (class-weighted as the card's training was)
    assert max(freq, key=freq.get) == "happy" and min(freq, key=freq.get) == "disgust" and freq["disgust"] > 0
    assert "PublicTest" in entry["fitted_on"]  # the card's validation split by default
    assert entry["nll_after"] <= entry["nll_before"] + 1e-9
    assert (model / "calibration_reliability.png").exists()
    calibrated = FaceEmotionRecognizer(model, balance=0)
    assert calibrated.temperature == entry["temperature"]
    crops = np.random.default_rng(0).integers(0, 255, (4, 48, 48, 1)).astype(np.uint8)
    np.testing.assert_allclose(calibrated._run(crops, None), apply_temperature(plain._run(crops, None),
                                                                             entry["temperature"]), atol=1e-5)
    balanced = FaceEmotionRecognizer(model)  # the card's balance, 0.3
    assert balanced.balance == 0.3
    np.testing.assert_allclose(balanced._run(crops, None),
                               apply_balance(calibrated._run(crops, None), list(freq.values()), 0.3), atol=1e-5)


def test_calibrate_refuses_fusion_and_cards_without_data(tmp_path, capsys):
    assert main(["calibrate", "--model", str(MODELS / "fusion")]) == 2
    assert "calibrate the face and speech models" in capsys.readouterr().err
