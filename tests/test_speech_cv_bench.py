"""The speech CV benchmark's card step: a row's 5-fold figure goes on the card it describes, nowhere else."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("speech_cv_bench", ROOT / "benchmarks" / "speech_cv_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(name="crnn", arch="crnn"):
    folds = [{"fold": i, "accuracy": 0.5 + i / 100, "uar": 0.5, "macro_f1": 0.4, "n": 240} for i in range(1, 6)]
    return {"name": name, "model": {"architecture": arch}, "protocol": "5 folds over actors 1-20",
            "accuracy": {"mean": 0.53, "std": 0.014}, "uar": {"mean": 0.5, "std": 0.0},
            "macro_f1": {"mean": 0.4, "std": 0.0}, "folds": folds}


@pytest.fixture
def model_dir(tmp_path):
    card = {"task": "speech", "model_config": {"architecture": "crnn"},
            "metrics": {"validation": {"accuracy": 0.6, "uar": 0.6, "protocol": "actors 17-20"}}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    return tmp_path


def test_card_cv5_adds_the_five_fold_figure_and_keeps_the_rest(model_dir):
    _bench().card_cv5(_row(), model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    cv5 = card["metrics"]["cv5"]
    assert cv5["accuracy"] == 0.53 and cv5["accuracy_std"] == 0.014 and cv5["n"] == 1200
    assert len(cv5["folds"]) == 5 and "5 folds over actors 1-20" in cv5["protocol"]
    assert card["metrics"]["validation"]["accuracy"] == 0.6  # the earlier split stays


@pytest.mark.parametrize("row", [_row(name="crnn (partial: folds 1, 2)"), _row(arch="cnn1d")])
def test_card_cv5_refuses_partial_rows_and_other_architectures(model_dir, row):
    with pytest.raises(SystemExit):
        _bench().card_cv5(row, model_dir)
    assert "cv5" not in json.loads((model_dir / "card.json").read_text())["metrics"]
