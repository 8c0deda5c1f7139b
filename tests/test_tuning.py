"""Tuning: hypermodels build each task's model through its builder, a search runs, resumes after a
kill, exports a loadable model with its card, the report reads the project, and ``tune`` works from
the command line. Searches use the tiny synthetic fusion problem (a small MLP: quick to compile
under JAX); the face CLI run uses a small real CK+48 subset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from emotion_keras.config import ConfigError
from emotion_keras.models import store
from conftest import corpus
from emotion_keras.tuning import data as search_data
from emotion_keras.tuning import export, tuners
from emotion_keras.tuning.hypermodels import FaceHyperModel, FusionHyperModel, SpeechHyperModel

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "happy", "sad"]


def _layer_names(model):
    return {layer.name for layer in model.layers}


def _hypermodels(space):
    return [
        FaceHyperModel(CLASSES, image_shape=(48, 48, 1), geometry=True, geometry_dim=10, space=space),
        SpeechHyperModel(CLASSES, input_shape=(64, 32), space=space),
        FusionHyperModel(CLASSES, base={"face_input": "frames", "face_dim": 8, "speech_dim": 6,
                                        "max_frames": 4}, space=space),
    ]


def test_full_spaces_only_hold_valid_configs():
    """Random points of every full space give configs the builders accept (checked by the configs'
    own validation), without building the GPU-sized models."""
    for hm in _hypermodels("full"):
        hp = kt.HyperParameters()
        hm.space_only = True
        hm.build(hp)  # declares the space, builds nothing big
        names = {p.name for p in hp.space}
        assert {"learning_rate", "batch_size", "weight_decay", "label_smoothing", "schedule",
                "dropout"} <= names
        seen = set()
        for seed in range(12):
            point = kt.HyperParameters()
            point.values = {p.name: p.random_sample(seed * 31 + i) for i, p in enumerate(hp.space)}
            cfg = hm.describe(point)
            seen.add(json.dumps(cfg["model_config"], sort_keys=True))
        assert len(seen) > 6, hm.task
    face = _hypermodels("full")[0]
    hp = kt.HyperParameters()
    face.space_only = True
    face.build(hp)
    backbones = next(p for p in hp.space if p.name == "backbone").values
    assert set(backbones) == {"vgg", "resnet", "mobilenetv3small", "efficientnetv2b0"}
    assert {"attention", "geometry", "augment", "width", "depth"} <= {p.name for p in hp.space}


def test_hypermodels_build_each_task_through_its_builder():
    space = "small"
    cases = [
        (FaceHyperModel(CLASSES, image_shape=(48, 48, 1), space=space), ["image"],
         {"backbone", "attention", "augment", "dropout", "learning_rate", "batch_size", "schedule"}),
        (SpeechHyperModel(CLASSES, input_shape=(64, 32), space=space), ["features"],
         {"architecture", "rnn", "filters", "augment", "label_smoothing"}),
        (FusionHyperModel(CLASSES, base={"face_input": "frames", "face_dim": 8, "speech_dim": 6,
                                         "max_frames": 4}, space=space),
         ["face_frames", "face_mask", "speech"], {"pooling", "projection", "modality_dropout"}),
    ]
    for hm, inputs, tuned in cases:
        hp = kt.HyperParameters()
        model = hm.build(hp)
        assert sorted(t.name.split(":")[0] for t in model.inputs) == sorted(inputs)
        assert model.layers[-1].name == "probabilities" and "embedding" in _layer_names(model)
        assert model.output.shape[-1] == len(CLASSES) and model.optimizer is not None
        assert tuned <= set(hp.values), (hm.task, sorted(hp.values))
        cfg = hm.describe(hp)
        assert cfg["train_config"]["batch_size"] == hp.values["batch_size"]


def test_face_space_choices_reach_the_model():
    hm = FaceHyperModel(CLASSES, image_shape=(48, 48, 1), geometry=True, geometry_dim=10)
    hp = kt.HyperParameters()
    hp.Fixed("backbone", "resnet")
    hp.Fixed("attention", "last")
    hp.Fixed("geometry", True)
    hp.Fixed("augment", 0.5)
    model = hm.build(hp)
    names = _layer_names(model)
    assert "attention" in names and "augment" in names and "geometry" in {
        t.name.split(":")[0] for t in model.inputs}
    cfg = hm.model_config(hp)
    assert cfg.backbone == "resnet" and cfg.attention_after == -1 and cfg.max_rotation == 7.5


def _killing_callback(kill_at: int):
    """Raise KeyboardInterrupt (as Ctrl-C or a kill would stop the process) in trial ``kill_at``."""
    state = {"trials": 0}

    class Kill(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            state["trials"] += 1

        def on_epoch_end(self, epoch, logs=None):
            if state["trials"] == kill_at:
                raise KeyboardInterrupt

        def __deepcopy__(self, memo):  # KerasTuner copies callbacks per trial; share the count
            return Kill()

    return Kill()


@pytest.mark.once  # the tuner engine; a search under each backend: test_cli_tune_face_end_to_end_on_real_faces
def test_search_resumes_after_kill_and_exports(tmp_path):
    data = search_data.synthetic_data("fusion", n=64)
    project = tmp_path / "project"
    kw = dict(tuner_kind="random", max_trials=2, epochs=2, project_dir=project, patience=0, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        tuners.run_search(data, callbacks=[_killing_callback(kill_at=2)], **kw)
    first = json.loads((project / "trial_0" / "run.json").read_text())
    assert first["status"] == "completed" and first["fit"]["best_epoch"] in (1, 2)
    killed = tuners.read_search(project)  # written before the first trial: the report knows what it was
    assert killed["task"] == "fusion" and killed["tuner"] == "random" and killed["protocol"]
    assert [s["status"] for s in killed["sessions"]] == ["running"]

    tuner, summary = tuners.run_search(data, **kw)  # same command again: resumes
    assert summary["completed"] == 2 and tuner.trials_run == 1  # only the killed trial ran again
    assert json.loads((project / "trial_0" / "run.json").read_text()) == first
    assert sorted(p.name for p in project.glob("trial_*")) == ["trial_0", "trial_1"]

    tuner, summary = tuners.run_search(data, **kw)  # nothing left to do
    assert tuner.trials_run == 0 and summary["completed"] == 2
    assert [s["status"] for s in tuners.read_search(project)["sessions"]] == ["killed", "finished", "finished"]

    with pytest.raises(ConfigError, match="tuner"):
        tuners.run_search(data, **{**kw, "tuner_kind": "bayesian"})

    out = tmp_path / "export"
    card = export.export_best(tuner, data, out, retrain_on_all=True, verbose=0)
    model, loaded = store.load(out)
    assert loaded["tuning"]["trials"] == 2 and loaded["tuning"]["tuner"] == "random"
    assert loaded["training"]["trained_on"] == "train+validation"
    assert loaded["train_config"]["epochs"] == loaded["tuning"]["best_epoch"]
    for key in ("classes", "inputs", "preprocessing", "model_config", "metrics", "backend", "versions",
                "date"):
        assert key in card
    assert "protocol" in loaded["metrics"]["search_validation"]
    probs = model.predict(data.x_val, verbose=0)
    assert probs.shape == (len(data.y_val), len(data.classes))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)

    # without retraining: the best trial's own checkpoint, scored on the split that selected it
    card = export.export_best(tuner, data, tmp_path / "checkpoint", retrain_on_all=False, verbose=0)
    val = card["metrics"]["validation"]
    assert val["n"] == len(data.y_val) and "selected on this split" in val["protocol"]
    assert card["training"]["trained_on"] == "train" and val["uar"] == pytest.approx(
        card["tuning"]["best_score"], abs=1e-6)

    # the report reads the project without Keras and compares the families tried
    rep_out = tmp_path / "report" / "tuning"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tuning_report.py"), str(project),
                    "--out", str(rep_out), "--label", "test search", "--comparison"], check=True,
                   cwd=ROOT, capture_output=True)
    rep = json.loads(rep_out.with_suffix(".json").read_text())
    assert rep["completed"] == 2 and rep["objective"] == "val_uar" and rep["rows"]
    assert sum(r["trials"] for r in rep["rows"]) == 2 and rep["best"]["hyperparameters"]
    assert "Model families" in rep_out.with_suffix(".md").read_text()
    from emotion_keras.results import comparison_rows, discover

    meta, rows = comparison_rows(rep)
    assert meta["task"] == "fusion" and rows[0]["family"]
    res = discover([tmp_path])
    assert res.tuning and len(res.tuning[0].trials) == 2 and res.comparisons


def test_cli_rejects_bad_data_with_a_clear_message(tmp_path, capsys):
    from emotion_keras.cli import main

    rc = main(["tune", "face", "--data", str(tmp_path / "missing"), "--project-dir", str(tmp_path / "p")])
    assert rc == 2 and "missing" in capsys.readouterr().err


def test_cli_tune_face_end_to_end_on_real_faces(shared_data, tmp_path, capsys):
    """``emotion-keras tune face`` on a small CK+48 subset: search, then export with a card."""
    from emotion_keras.cli import main

    ck = corpus(shared_data, "ckplus48")
    out = tmp_path / "face"
    rc = main(["tune", "face", "--data", f"ckplus:{ck}", "--limit", "70", "--val-limit", "35",
               "--tuner", "random", "--space", "small", "--max-trials", "1", "--epochs", "1",
               "--patience", "0", "--project-dir", str(tmp_path / "p"), "--export", str(out),
               "--verbose", "0"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["completed"] == 1 and line["export"] == str(out)
    model, card = store.load(out)
    assert card["task"] == "face" and "subject-held-out" in card["metrics"]["validation"]["protocol"]
    assert card["preprocessing"]["size"] == 48 and card["inputs"]["image"] == [48, 48, 1]
    assert "CK+" in card["data"]["licence"]


def test_speech_data_is_speaker_independent_float16_windows(shared_data):
    rav = corpus(shared_data, "ravdess_speech")
    data = search_data.load_speech_data(f"ravdess:{rav}", fold=4, limit=16, progress=False)
    assert data.x_train["features"].dtype == np.float16 and data.x_val["features"].dtype == np.float16
    assert "speakers 17, 18, 19, 20 held out" in data.protocol
    assert data.hypermodel["input_shape"] == data.x_train["features"].shape[1:]
    assert len(data.y_train) >= 16 and set(data.y_val) <= set(range(len(data.classes)))


def test_fusion_data_from_paired_npz_holds_out_subjects(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    path = search_data.save_fusion_arrays(tmp_path / "pairs.npz", {
        "face": rng.normal(size=(n, 5)).astype(np.float32),
        "speech": rng.normal(size=(n, 3)).astype(np.float32),
        "labels": np.asarray(["happy", "sad"] * (n // 2)),
        "subjects": np.asarray([str(1 + i % 10) for i in range(n)])})
    data = search_data.load_fusion_data(str(path), fold=4, folds=5)
    assert "subjects 9, 10 held out" in data.protocol and len(data.y_val) == 8
    assert data.hypermodel["base"]["face_input"] == "descriptor"
    with pytest.raises(Exception, match="no such file"):
        search_data.load_fusion_data(str(tmp_path / "missing.npz"))


def test_speech_cpu_space_searches_data_choices(shared_data):
    """The cpu space: each trial's features / speaker normalisation come from its own hyperparameters,
    and a changed feature kind changes the model's input shape."""
    rav = corpus(shared_data, "ravdess_speech")
    data = search_data.load_speech_data(f"ravdess:{rav}", fold=4, limit=16, progress=False, space="cpu",
                                   features={"hop_length": 320})
    hm = tuners.make_hypermodel(data, space="cpu", epochs=1)
    hp = kt.HyperParameters()
    hp.Fixed("feature", "logmel")
    hp.Fixed("speaker_norm", "speaker")
    hp.Fixed("augment_copies", 0)
    hp.Fixed("architecture", "cnn1d")
    hp.Fixed("filters", 32)
    model = hm.build(hp)
    assert tuple(model.inputs[0].shape[1:]) == (149, 64)
    described = hm.describe(hp)
    assert described["preprocessing"]["feature"] == "logmel"
    assert described["preprocessing"]["speaker_norm"] == "speaker"
    hist = hm.fit(hp, model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=1, verbose=0)
    assert "val_uar" in hist.history
    hp2 = kt.HyperParameters()
    hp2.Fixed("feature", "mfcc")
    assert tuple(hm.build(hp2).inputs[0].shape[1:]) == (149, 120)
    hp3 = kt.HyperParameters()  # statistics per window: logistic regression, its moments adapted in fit
    hp3.Fixed("feature", "functionals")
    hp3.Fixed("speaker_norm", "none")
    hp3.Fixed("augment_copies", 0)
    hp3.Fixed("vector_architecture", "linear")
    model = hm.build(hp3)
    assert tuple(model.inputs[0].shape[1:]) == (1, 996)
    hist = hm.fit(hp3, model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  epochs=1, verbose=0)
    assert "val_uar" in hist.history
    mean = model.get_layer("standardise").get_weights()[0]
    assert abs(float(mean.mean())) > 0.1  # adapted to the training windows, not the identity
    assert hm.describe(hp3)["preprocessing"]["n_fft"] == 512
    hp4 = kt.HyperParameters()  # shrinkage LDA: solved, one logged 'epoch', its checkpoint callback run
    for k, v in (("feature", "functionals"), ("speaker_norm", "none"), ("augment_copies", 0),
                 ("vector_architecture", "lda"), ("shrinkage", 0.4)):
        hp4.Fixed(k, v)
    model = hm.build(hp4)
    initial = model.get_layer("probabilities").get_weights()[0].copy()
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    hist = hm.fit(hp4, model, data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                  callbacks=[probe], epochs=1, verbose=0)
    assert set(hist.history) >= {"val_uar", "val_accuracy"} and len(seen) == 1 and "val_uar" in seen[0]
    assert hm.last_fit["epochs_run"] == 0 and list(hm.describe(hp4)["model_config"]["shrinkage"]) == [0.4]
    assert not np.allclose(model.get_layer("probabilities").get_weights()[0], initial)  # solved


def test_a_solved_trial_exports_solved_again_on_train_and_validation(shared_data, tmp_path):
    rav = corpus(shared_data, "ravdess_speech")
    data = search_data.load_speech_data(f"ravdess:{rav}", fold=4, limit=16, progress=False, space="cpu",
                                        features={"hop_length": 320})
    hm = tuners.make_hypermodel(data, space="cpu", epochs=1)
    fixed = kt.HyperParameters()  # one trial, the lda one: the search's own tuner class, its space pinned
    for k, v in (("feature", "functionals"), ("speaker_norm", "speaker"), ("prosody", "none"),
                 ("augment_copies", 0), ("vector_architecture", "lda"), ("shrinkage", 0.6)):
        fixed.Fixed(k, v)
    tuner = tuners._tuner_classes()["random"](hm, hyperparameters=fixed, max_trials=1,
                                              objective=kt.Objective("val_uar", direction="max"),
                                              directory=str(tmp_path), project_name="p")
    tuner.search(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=1, verbose=0)
    run = json.loads(next((tmp_path / "p").glob("trial_*/run.json")).read_text())
    assert run["status"] == "completed" and run["model_config"]["architecture"] == "lda"
    card = export.export_best(tuner, data, tmp_path / "out", retrain_on_all=True, verbose=0)
    assert card["training"]["trained_on"] == "train+validation"
    assert "solved again on train+validation" in card["metrics"]["search_validation"]["protocol"]
    assert card["training"]["epochs"] == 0
    model, _ = store.load(tmp_path / "out")
    x_tr, y_tr, x_va, y_va = hm.variants.arrays(hm.data_choice(tuner.oracle.get_best_trials(1)[0].hyperparameters))
    assert (model.predict(export.select_for(model, x_va), verbose=0).argmax(1) == y_va).mean() > 0.5


def _ferplus_and_fer2013(tmp_path, rng):
    """A tiny FER+ corpus (votes over neutral/happiness/surprise) and a FER2013 folder corpus."""
    from PIL import Image

    def face():
        return Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8))

    ferplus = tmp_path / "ferplus"
    number = 0
    for folder, n in (("FER2013Train", 12), ("FER2013Valid", 6)):
        d = ferplus / folder
        d.mkdir(parents=True)
        rows = []
        for i in range(n):
            name = f"fer{number:07d}.png"
            number += 1
            face().save(d / name)
            votes = [0] * 10
            votes[i % 3] = 7  # neutral, happiness, surprise in turn, each with a minority vote
            votes[(i + 1) % 3] = 3
            rows.append(f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n')
        (d / "label.csv").write_text("".join(rows))
    fer = tmp_path / "fer2013"
    for split, n in (("train", 3), ("validation", 2)):
        for label in ("happy", "neutral"):
            (fer / split / label).mkdir(parents=True)
            for i in range(n):
                face().save(fer / split / label / f"{i}.jpg")
    return ferplus, fer


def test_tune_face_learns_from_ferplus_votes_beside_added_corpora(tmp_path, capsys):
    """A search trains on what ``face train`` trains on: FER+ vote distributions, an ``--add-data``
    corpus's training faces as one-hot rows beside them, validation on FER+ alone; the export's
    retrain on train+validation stacks the validation labels as one-hot rows."""
    from emotion_keras.cli import main

    ferplus, fer = _ferplus_and_fer2013(tmp_path, np.random.default_rng(0))
    classes = ["happy", "neutral", "surprise"]
    data = search_data.load_face_data(f"ferplus-probability:{ferplus}", add_data=[f"fer2013:{fer}"],
                                      classes=classes, progress=False)
    assert data.y_train.shape == (12 + 6, 3) and np.allclose(data.y_train.sum(1), 1)
    assert (data.y_train.max(1) == 0.7).sum() == 12 and (data.y_train.max(1) == 1).sum() == 6
    assert data.y_val.shape == (6,) and data.data["add_data"] == [f"fer2013:{fer}"]
    _, y_all = data.train_and_val()
    assert y_all.shape == (24, 3) and np.allclose(y_all[18:].sum(1), 1) and set(np.unique(y_all[18:])) == {0, 1}

    out = tmp_path / "export"
    rc = main(["tune", "face", "--data", f"ferplus-probability:{ferplus}", "--add-data", f"fer2013:{fer}",
               "--classes", ",".join(classes), "--tuner", "random", "--space", "small", "--max-trials", "1",
               "--epochs", "1", "--patience", "0", "--project-dir", str(tmp_path / "p"), "--export", str(out),
               "--retrain-on-all", "--verbose", "0"])
    assert rc == 0, capsys.readouterr().err
    _, card = store.load(out)
    assert card["training"]["trained_on"] == "train+validation"
    assert card["data"]["add_data"] == [f"fer2013:{fer}"] and card["data"]["train_faces"] == 18
