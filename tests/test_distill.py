"""Distillation: a teacher's softened predictions mixed into the training targets
(:mod:`emotion_keras.distill`), and ``face train --teacher`` distilling a saved ensemble into one model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT, corpus
from emotion_keras.cli import main
from emotion_keras.config import ConfigError, TrainConfig
from emotion_keras.distill import distill_targets, soften

TINY = json.dumps({"width": 8, "depth": 3, "augment": False, "embedding_dim": 16})
FAST = json.dumps({"warmup_epochs": 0, "label_smoothing": 0.0, "early_stopping": 0})


def test_soften_flattens_a_sure_teacher_and_keeps_its_ranking():
    p = np.array([[0.97, 0.02, 0.01], [0.2, 0.5, 0.3]], np.float32)
    assert np.allclose(soften(p, 1.0), p, atol=1e-6)
    flat = soften(p, 2.0)
    assert np.allclose(flat.sum(axis=1), 1.0) and (flat.argsort(axis=1) == p.argsort(axis=1)).all()
    # T = 2 is the square root of the odds: 0.97 : 0.02 becomes sqrt(48.5) : 1
    assert flat[0, 0] / flat[0, 1] == pytest.approx(np.sqrt(0.97 / 0.02), rel=1e-5)
    assert flat[0, 0] < p[0, 0]


def test_distill_targets_mix_labels_or_votes_with_the_teacher():
    teacher = np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], np.float32)
    assert np.allclose(distill_targets(np.array([1, 2]), teacher, 0.0, 2.0), np.eye(3)[[1, 2]])
    assert np.allclose(distill_targets(np.array([1, 2]), teacher, 1.0, 1.0), teacher)
    half = distill_targets(np.array([1, 2]), teacher, 0.5, 1.0)
    assert np.allclose(half[0], [0.3, 0.65, 0.05]) and np.allclose(half.sum(axis=1), 1.0)
    votes = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], np.float32)  # FER+ distributions
    assert np.allclose(distill_targets(votes, teacher, 0.5, 1.0)[0], [0.55, 0.4, 0.05])
    with pytest.raises(ValueError, match="do not match"):
        distill_targets(np.array([0, 1, 2]), teacher, 0.5, 2.0)
    with pytest.raises(ConfigError, match="distill"):
        TrainConfig(distill=1.5)
    with pytest.raises(ConfigError, match="distill"):
        TrainConfig(distill_temperature=0)


CLASSES = "happy,surprise,sad"


def _data(ck):
    return ["--data", f"ckplus:{ck}", "--val-subjects", "0.2", "--limit", "200", "--classes", CLASSES,
            "--batch-size", "32", "--model-config", TINY, "--train-config", FAST, "--verbose", "0"]


@pytest.fixture(scope="module")
def members(shared_data, tmp_path_factory):
    """Two tiny CK+48 models (seeds 0 and 1), the teachers of both tests (read, never changed)."""
    ck = corpus(shared_data, "ckplus48")
    root = tmp_path_factory.mktemp("members")
    for seed in (0, 1):
        assert main(["face", "train", *_data(ck), "--epochs", "1", "--seed", str(seed),
                     "--run-dir", str(root / f"m{seed}")]) == 0
    return [root / "m0", root / "m1"]


def test_face_train_distils_a_saved_ensemble(shared_data, members, tmp_path, monkeypatch, capsys):
    """The student's targets are exactly the share of the ensemble's predictions (in its own views)
    asked for; its card names the teacher; a teacher of other classes or other faces is refused."""
    from emotion_keras import train as trainlib
    from emotion_keras.models import store

    ck = corpus(shared_data, "ckplus48")
    data = _data(ck)
    teacher = tmp_path / "teacher"
    assert main(["face", "ensemble", *map(str, members), "--out", str(teacher), "--split", "all", "--tta", "flip"]) == 0

    seen = {}
    real_fit = trainlib.fit

    def fit(model, x_train, y_train, *args, **kwargs):
        seen["x"], seen["y"] = x_train, y_train
        return real_fit(model, x_train, y_train, *args, **kwargs)

    monkeypatch.setattr(trainlib, "fit", fit)
    student = tmp_path / "student"
    assert main(["face", "train", *data, "--epochs", "1", "--seed", "2", "--run-dir", str(student),
                 "--teacher", str(teacher), "--distill", "0.75", "--distill-temperature", "1.5"]) == 0
    card = json.loads((student / "card.json").read_text())
    assert card["training"]["teacher"] == {"name": "teacher", "dir": str(teacher), "sha256": store.digest(teacher),
                                           "tta": "flip", "share": 0.75, "temperature": 1.5}
    assert card["training"]["targets"] == "class labels mixed with a teacher's predictions"
    assert card["train_config"]["distill"] == 0.75 and "architecture" not in card["model_config"]  # one model

    # the targets, recomputed: the ensemble's flip-averaged predictions of the same training faces,
    # softened, take 0.75; what is left is a quarter of each face's one-hot label
    from emotion_keras.models.io import predict_views

    net, _ = store.load(teacher)
    probs = predict_views(net, seen["x"] if isinstance(seen["x"], dict) else {"image": seen["x"]}, "flip", 0, 256)
    hard = (seen["y"] - 0.75 * soften(probs, 1.5)) / 0.25
    assert np.allclose(np.sort(hard, axis=1), [0, 0, 1], atol=1e-4)
    capsys.readouterr()

    # a teacher that lacks a class, or reads faces otherwise, is refused off its card, before any face
    # is prepared
    from emotion_keras.pipelines import face as face_pipeline

    def no_faces(*args, **kwargs):
        raise AssertionError("faces were prepared before the teacher was checked")

    monkeypatch.setattr(face_pipeline, "prepare_faces", no_faces)
    other = [a if a != CLASSES else CLASSES + ",anger" for a in data]
    assert main(["face", "train", *other, "--epochs", "1", "--run-dir", str(tmp_path / "s2"),
                 "--teacher", str(teacher)]) == 2
    assert "teacher has no class" in capsys.readouterr().err and not (tmp_path / "s2" / "card.json").exists()
    assert main(["face", "train", *data, "--size", "56", "--epochs", "1", "--run-dir", str(tmp_path / "s3"),
                 "--teacher", str(teacher)]) == 2
    assert "preprocessing differs" in capsys.readouterr().err
    speech = ROOT / "saved_models" / "speech"
    assert main(["face", "train", *data, "--epochs", "1", "--run-dir", str(tmp_path / "s6"),
                 "--teacher", str(speech)]) == 2
    assert "a speech model cannot teach a face model" in capsys.readouterr().err
    # the teacher's settings mean nothing without one; a missing teacher is named
    assert main(["face", "train", *data, "--epochs", "1", "--run-dir", str(tmp_path / "s4"), "--distill", "0.3"]) == 2
    assert "need --teacher" in capsys.readouterr().err
    assert main(["face", "train", *data, "--epochs", "1", "--run-dir", str(tmp_path / "s5"),
                 "--teacher", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    # (tune face checks the teacher as early)
    from emotion_keras.pipelines import splits
    from emotion_keras.tuning import data as tuning_data
    monkeypatch.setattr(splits, "load_face_split", no_faces)
    with pytest.raises(ConfigError, match="preprocessing differs"):
        tuning_data.load_face_data(f"ckplus:{ck}", size=56, teacher=teacher)


def test_tune_face_searches_on_a_teachers_targets(shared_data, members, tmp_path, capsys):
    """Every trial of ``tune face --teacher`` learns from the distilled targets ``face train`` would
    use; the export's card names the teacher; a resumed project refuses another teacher."""
    from emotion_keras.models import store
    from emotion_keras.models.io import predict_views
    from emotion_keras.pipelines.face import face_views
    from emotion_keras.tuning.data import load_face_data

    ck = corpus(shared_data, "ckplus48")
    classes = CLASSES
    teachers = members

    data = load_face_data(f"ckplus:{ck}", val_subjects=0.2, limit=200, classes=classes.split(","), progress=False,
                          teacher=teachers[0], distill=(0.75, 1.5))
    net, card = store.load(teachers[0])
    probs = predict_views(net, data.x_train, *face_views(card), 256)
    hard = (data.y_train - 0.75 * soften(probs, 1.5)) / 0.25
    assert np.allclose(np.sort(hard, axis=1), [0, 0, 1], atol=1e-4)
    assert data.teacher["sha256"] == store.digest(teachers[0]) and data.teacher["share"] == 0.75

    tune = ["tune", "face", "--data", f"ckplus:{ck}", "--val-subjects", "0.2", "--limit", "200", "--classes", classes,
            "--tuner", "random", "--space", "small", "--max-trials", "1", "--epochs", "1", "--patience", "0",
            "--project-dir", str(tmp_path / "p"), "--verbose", "0"]
    out = tmp_path / "export"
    assert main([*tune, "--teacher", str(teachers[0]), "--distill", "0.75", "--distill-temperature", "1.5",
                 "--export", str(out)]) == 0, capsys.readouterr().err
    _, tuned = store.load(out)
    assert tuned["training"]["teacher"] == data.teacher
    assert tuned["train_config"]["distill"] == 0.75 and tuned["train_config"]["distill_temperature"] == 1.5
    capsys.readouterr()

    # the project's one trial learnt from the first teacher: neither another teacher nor none may join it
    assert main([*tune, "--max-trials", "2", "--teacher", str(teachers[1]), "--distill", "0.75",
                 "--distill-temperature", "1.5"]) == 2
    assert "trials learnt from teacher" in capsys.readouterr().err
    assert main([*tune, "--max-trials", "2"]) == 2
    assert "this search from labels alone" in capsys.readouterr().err
    assert main(["tune", "speech", "--synthetic", "32", "--teacher", str(teachers[0])]) == 2
    assert "tune speech has no teacher" in capsys.readouterr().err
