"""``emotion-keras analyze`` and ``predict`` on video: JSON timeline, CSV, contact sheet, annotated video,
failures reported per file with a non-zero exit."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import corpus
from emotion_keras.cli import main
from video_fixtures import make_video, tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models(tmp_path_factory.mktemp("cli_models"))


def _dirs(models):
    return ["--fusion-dir", str(models["fusion"]), "--face-dir", str(models["face"]),
            "--speech-dir", str(models["speech"])]


def test_analyze_json_and_csv(models, shared_data, tmp_path, capsys):
    clip = corpus(shared_data, "cremad_av") / "data" / "1001_DFA_SAD_XX.flv"
    out_csv = tmp_path / "timeline.csv"
    rc = main(["analyze", str(clip), "--json", "--csv", str(out_csv), "--window", "1.0", "--hop", "0.5",
               *_dirs(models)])
    assert rc == 0
    t = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert t["file"] == str(clip) and t["modalities"] == ["face", "speech"]
    assert all({"start", "end", "face", "speech", "fused", "modalities"} <= set(w) for w in t["windows"])
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == len(t["windows"]) and rows[0]["modalities"] == "face+speech"


def test_analyze_contact_sheet_and_failures(models, tmp_path, capsys):
    good = make_video(tmp_path / "ok.mp4", seconds=1.5)
    bad = tmp_path / "bad.mkv"
    bad.write_text("not a video")
    sheet = tmp_path / "sheet.jpg"
    rc = main(["analyze", str(good), str(bad), "--contact-sheet", str(sheet), "--quiet", *_dirs(models)])
    out = capsys.readouterr().out
    assert rc == 1 and "bad.mkv" in out and "error" in out
    assert (tmp_path / "sheet_ok.jpg").stat().st_size > 0  # one sheet per input when several are given


def test_analyze_annotate(models, tmp_path, capsys):
    clip = make_video(tmp_path / "a.webm", seconds=1.0, vcodec="libvpx", acodec="libopus", sr=48000)
    ann = tmp_path / "ann.mp4"
    assert main(["analyze", str(clip), "--annotate", str(ann), "--json", *_dirs(models)]) == 0
    assert ann.stat().st_size > 0
    t = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert t["media"]["video_codec"] == "vp8" and t["windows"]


def test_predict_dispatches_video(models, shared_data, tmp_path, monkeypatch, capsys):
    # predict uses the default model directories: point them at the tiny models
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(models["face"].parent))
    clip = corpus(shared_data, "cremad_av") / "data" / "1001_DFA_FEA_XX.flv"
    assert main(["predict", str(clip), "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["file"] == str(clip) and line["emotion"] and set(line["modalities"]) == {"face", "speech"}


def test_fusion_train_on_real_clips_and_evaluate(models, shared_data, tmp_path, capsys):
    from emotion_keras.models import store

    data = corpus(shared_data, "cremad_av") / "data"
    manifest = tmp_path / "clips.csv"
    rows = [f"{data / f'1001_DFA_{e}_XX.flv'},{e},{s}" for e, s in
            (("ANG", "a"), ("HAP", "a"), ("SAD", "a"), ("NEU", "b"), ("ANG", "b"), ("HAP", "b"))]
    manifest.write_text("file,label,subject\n" + "\n".join(rows) + "\n")
    out = tmp_path / "fusion"
    rc = main(["fusion", "train", "--data", str(manifest), "--val-subjects", "b", "--face-dir",
               str(models["face"]), "--speech-dir", str(models["speech"]), "--out", str(out),
               "--run-dir", str(tmp_path / "run"), "--epochs", "2", "--pooling", "mean", "--verbose", "0",
               "--window", "1.0", "--hop", "1.0"])
    assert rc == 0
    card = store.read_card(out)
    assert card["data"]["pairs"] == "real" and card["classes"] == ["angry", "happy", "sad", "neutral"]
    assert card["metrics"]["validation"]["n"] > 0
    capsys.readouterr()
    rc = main(["fusion", "evaluate", "--data", str(manifest), "--fusion-dir", str(out), "--face-dir",
               str(models["face"]), "--speech-dir", str(models["speech"])])
    assert rc == 0 and json.loads(capsys.readouterr().out)["n"] == 6
