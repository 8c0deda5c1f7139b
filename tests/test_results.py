"""results.py: discovery and reading of cards, comparisons, evaluations, curves and tuner trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emotion_keras import results
from emotion_keras.evaluate import metrics

CLASSES = ["angry", "happy", "neutral"]


def _card(task: str, name: str, **extra) -> dict:
    m = metrics([0, 1, 2, 2, 1], [0, 1, 2, 1, 1], CLASSES)
    return {"task": task, "name": name, "classes": CLASSES, "inputs": {"image": [48, 48, 1]},
            "metrics": {"test": {**m, "protocol": "FER2013 PublicTest, 5 images"}},
            "history": {"loss": [1.2, 0.9, 0.7], "val_uar": [0.4, 0.5, 0.55]},
            "train_seconds": 12.5, "backend": "jax", "parameters": 1234, "size_bytes": 2_500_000,
            "date": "2026-11-24T20:00:00+00:00", **extra}


def write_tree(root: Path) -> dict[str, Path]:
    """A results tree shaped like the CLI's: saved_models, runs and a KerasTuner-style project."""
    models = root / "saved_models"
    (models / "face").mkdir(parents=True)
    (models / "face" / "card.json").write_text(json.dumps(_card("face", "shipped-face")))
    run = root / "runs" / "face" / "small_cnn"
    run.mkdir(parents=True)
    (run / "card.json").write_text(json.dumps(_card("face", "small_cnn")))
    (run / "history.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss,val_uar\n"
                                     "0,0.3,1.5,0.25,1.6,0.3\n1,0.5,1.1,0.4,1.3,0.45\n")
    ev = metrics([0, 1, 2], [0, 2, 2], CLASSES)
    (run / "evaluation.json").write_text(json.dumps({**ev, "protocol": "held-out subjects"}))
    (run / "resume").mkdir()
    (run / "resume" / "card.json").write_text("{}")  # resume state is never read
    (root / "runs" / "face" / "comparison.json").write_text(json.dumps(
        {"protocol": "FER2013 PublicTest", "models": [
            {"name": "small_cnn", "metrics": {"uar": 0.5, "accuracy": 0.6}, "seconds": 3.0},
            {"name": "attention", "metrics": {"uar": 0.55, "accuracy": 0.58}, "seconds": 5.0}]}))
    broken = root / "runs" / "speech" / "broken"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text("{not json")
    return {"models": models, "runs": root / "runs", "tuning": root / "tuning_runs"}


def test_discover_reads_every_kind_of_file(tmp_path):
    paths = write_tree(tmp_path)
    res = results.discover([paths["models"], paths["runs"], paths["tuning"]])
    assert {c.name for c in res.cards} == {"shipped-face", "small_cnn"}
    assert len(res.comparisons) == 1 and len(res.evaluations) == 1 and len(res.histories) == 1
    # the broken card is reported by path, not raised
    assert len(res.problems) == 1 and "broken" in res.problems[0]
    meta, rows = res.comparisons[0][1], res.comparisons[0][2]
    assert meta == {"protocol": "FER2013 PublicTest"}
    assert [r["name"] for r in rows] == ["small_cnn", "attention"]
    assert rows[1]["metrics.uar"] == 0.55
    hist = res.histories[0][1]
    assert hist[1]["val_uar"] == 0.45 and hist[0]["epoch"] == 0.0


def test_saved_cards_are_told_apart_from_runs(tmp_path, monkeypatch):
    paths = write_tree(tmp_path)
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(paths["models"]))
    res = results.discover([paths["models"], paths["runs"]])
    sources = {c.name: c.source for c in res.cards}
    assert sources == {"shipped-face": "saved", "small_cnn": "run"}


def test_models_table_has_one_row_per_model_and_split(tmp_path):
    paths = write_tree(tmp_path)
    res = results.discover([paths["models"], paths["runs"]])
    rows = results.models_table(res)
    assert len(rows) == 3  # two cards with one split each, one evaluation report
    card_row = next(r for r in rows if r["name"] == "small_cnn" and r["source"] != "evaluation")
    assert card_row["uar"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert card_row["size_MB"] == 2.5 and card_row["train_seconds"] == 12.5
    assert card_row["protocol"].startswith("FER2013")
    ev_row = next(r for r in rows if r["source"] == "evaluation")
    assert ev_row["task"] == "face" and ev_row["protocol"] == "held-out subjects"


def test_confusions_and_history_from_cards(tmp_path):
    paths = write_tree(tmp_path)
    res = results.discover([paths["models"], paths["runs"]])
    cms = results.confusions(res)
    assert len(cms) == 3
    for cm in cms:
        assert len(cm["matrix"]) == len(cm["classes"]) == 3
    assert cms[0]["per_class_recall"]["angry"] == 1.0
    hist = results.card_history(res.cards[0])
    assert [r["epoch"] for r in hist] == [0, 1, 2] and hist[2]["val_uar"] == 0.55


def test_evaluation_repeating_its_card_is_not_counted_twice(tmp_path):
    run = tmp_path / "runs" / "face" / "m"
    run.mkdir(parents=True)
    card = _card("face", "m")
    (run / "card.json").write_text(json.dumps(card))
    (run / "evaluation.json").write_text(json.dumps({"task": "face", "name": "m", "split": "test",
                                                     **card["metrics"]["test"]}))
    res = results.discover([tmp_path])
    assert len(results.models_table(res)) == 1 and len(results.confusions(res)) == 1


def test_comparison_shapes():
    assert results.comparison_rows([{"a": 1, "m": {"uar": 0.5}}]) == ({}, [{"a": 1, "m.uar": 0.5}])
    meta, rows = results.comparison_rows({"cnn": {"uar": 0.4}, "vit": {"uar": 0.6}, "split": "test"})
    assert meta == {"split": "test"} and rows == [{"name": "cnn", "uar": 0.4}, {"name": "vit", "uar": 0.6}]
    assert results.comparison_rows("nonsense") == ({}, [])
    # matrices stay out of tables; lists of labels become text
    assert results.flatten({"cm": [[1, 0], [0, 1]], "classes": ["a", "b"]}) == {"classes": "a, b"}


def test_empty_and_missing_roots(tmp_path):
    res = results.discover([tmp_path / "nowhere", tmp_path])
    assert res.empty and res.problems == []


def test_default_roots_honour_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_KERAS_MODELS", str(tmp_path / "m"))
    monkeypatch.setenv("EMOTION_KERAS_RESULTS", str(tmp_path / "extra"))
    roots = results.default_roots()
    assert roots[0] == (tmp_path / "m").resolve()
    assert (tmp_path / "extra").resolve() in roots
    assert any(r.name == "tuning_runs" for r in roots)
    assert (results.REPO / "docs" / "benchmarks").resolve() in roots  # the shipped comparisons


def test_real_kerastuner_trials_are_read(tmp_path):
    """Files written by KerasTuner itself, so a format change in KerasTuner breaks this test."""
    kt = pytest.importorskip("keras_tuner")
    project = tmp_path / "tuning_runs" / "face" / "search"
    scores = {"00": (0.4, 8, "conv"), "01": (0.6, 16, "attention"), "02": (0.5, 32, "conv")}
    for tid, (score, filters, block) in scores.items():
        hp = kt.HyperParameters()
        hp.Int("filters", 8, 32, step=8, default=filters)
        hp.Choice("block", ["conv", "attention"], default=block)
        hp.Float("lr", 1e-4, 1e-2, sampling="log", default=1e-3)
        trial = kt.engine.trial.Trial(hp, trial_id=tid, status="COMPLETED")
        trial.metrics.register("val_uar", direction="max")
        trial.metrics.register("loss", direction="min")
        for step, frac in enumerate((0.5, 1.0)):
            trial.metrics.update("val_uar", score * frac, step=step)
            trial.metrics.update("loss", 2.0 - score * frac, step=step)
        trial.score, trial.best_step = score, 1
        (project / f"trial_{tid}").mkdir(parents=True)
        trial.save(str(project / f"trial_{tid}" / "trial.json"))
        # tuning.search's own record beside it (shape of tuning/search.py _write_run)
        (project / f"trial_{tid}" / "run.json").write_text(json.dumps({
            "trial_id": tid, "status": "completed", "seconds": 10.0 + filters,
            "device": {"backend": "jax", "device": "cpu", "count": 1, "name": "cpu"},
            "fit": {"history": {"loss": [1.0, 0.8], "val_uar": [score / 2, score]}, "best_epoch": 2}}))
    (project / "search.json").write_text(json.dumps({
        "task": "face", "tuner": "random", "objective": "val_uar", "direction": "max", "max_trials": 3,
        "protocol": "FER2013 train / PublicTest",
        "sessions": [{"seconds": 30.5, "backend": "jax", "device": "cpu"},
                     {"seconds": 12.0, "backend": "tensorflow", "device": "gpu"}]}))
    res = results.discover([tmp_path / "tuning_runs"])
    assert len(res.tuning) == 1
    proj = res.tuning[0]
    assert proj.path == project.resolve() and proj.objective == "val_uar" and proj.direction == "max"
    assert proj.best()["trial_id"] == "01"
    rows = results.trials_table(proj)
    assert [r["trial"] for r in rows] == ["00", "01", "02"]
    assert rows[1]["hp.filters"] == 16 and rows[1]["hp.block"] == "attention"
    assert rows[1]["metric.val_uar"] == pytest.approx(0.6) and rows[1]["metric.loss"] == pytest.approx(1.4)
    assert rows[1]["seconds"] == 26.0 and rows[1]["device"] == "jax/cpu"
    assert proj.trials[1]["history"][1] == {"epoch": 1.0, "loss": 0.8, "val_uar": 0.6}
    assert proj.summary() == {"task": "face", "tuner": "random", "objective": "val_uar", "max_trials": 3,
                              "protocol": "FER2013 train / PublicTest", "sessions": 2,
                              "search_seconds": 42.5, "backends": "jax/cpu, tensorflow/gpu"}


def test_objective_direction_from_search_record(tmp_path):
    project = tmp_path / "p"
    for tid, score in (("0", 0.9), ("1", 0.5)):
        (project / f"trial_{tid}").mkdir(parents=True)
        (project / f"trial_{tid}" / "trial.json").write_text(json.dumps(
            {"trial_id": tid, "score": score, "status": "COMPLETED",
             "hyperparameters": {"values": {"lr": score}}, "metrics": {"metrics": {}}}))
    (project / "search.json").write_text(json.dumps({"objective": "val_loss", "direction": "min"}))
    proj = results.discover([tmp_path]).tuning[0]
    assert proj.objective == "val_loss" and proj.best()["trial_id"] == "1"
