"""The speech CV benchmark's card step: a row's 5-fold figure goes on the card it describes, nowhere else."""

import json

import pytest

from conftest import benchmark


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
    benchmark("speech_cv_bench").card_cv5(_row(), model_dir)
    card = json.loads((model_dir / "card.json").read_text())
    cv5 = card["metrics"]["cv5"]
    assert cv5["accuracy"] == 0.53 and cv5["accuracy_std"] == 0.014 and cv5["n"] == 1200
    assert len(cv5["folds"]) == 5 and "5 folds over actors 1-20" in cv5["protocol"]
    assert card["metrics"]["validation"]["accuracy"] == 0.6  # the earlier split stays


@pytest.mark.parametrize("row", [_row(name="crnn (partial: folds 1, 2)"), _row(arch="cnn1d")])
def test_card_cv5_refuses_partial_rows_and_other_architectures(model_dir, row):
    with pytest.raises(SystemExit):
        benchmark("speech_cv_bench").card_cv5(row, model_dir)
    assert "cv5" not in json.loads((model_dir / "card.json").read_text())["metrics"]


def test_inner_row_picks_each_folds_shrinkage_on_its_inner_speakers_only(tmp_path):
    """Per fold, the candidate with the best inner-validation UAR is reported, whatever its test score:
    the choice never looks at the fold it reports."""
    bench = benchmark("speech_cv_bench")
    name = "functionals+speaker+lda (shrinkage by inner validation)"
    candidates = bench.INNER[name]
    assert [bench.ROWS[c][1]["shrinkage"] for c in candidates] == list(bench.SHRINKAGES)
    for j, c in enumerate(candidates):
        for i in range(1, 6):
            fold = tmp_path / c / f"fold{i}"
            fold.mkdir(parents=True)
            val_uar = 0.9 if j == i % len(candidates) else 0.5  # fold i's inner speakers favour candidate i % 4
            test = 0.1 * (j + 1)  # the test scores favour the last candidate everywhere
            (fold / "test_result.json").write_text(json.dumps({
                "validation": {"uar": val_uar},
                "metrics": {"accuracy": test, "uar": test, "macro_f1": test, "n": 240},
                "per_file": {"accuracy": test / 2, "uar": test / 2}}))
            (fold / "train_result.json").write_text(json.dumps({"training": {"seconds": 0.5}}))
    trained = []
    row = bench.inner_row(name, tmp_path, "jax", trained.append)
    assert trained == candidates
    want = [bench.SHRINKAGES[i % 4] for i in range(1, 6)]
    assert row["chosen_shrinkage"] == want
    assert [f["accuracy"] for f in row["folds"]] == [round(0.1 * (i % 4 + 1), 4) for i in range(1, 6)]
    assert row["per_file"]["accuracy"]["mean"] == pytest.approx(row["accuracy"]["mean"] / 2, abs=1e-4)
    assert row["train_seconds"] == 10.0 and "inner validation speakers" in row["protocol"]
