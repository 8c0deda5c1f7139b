"""The recipe ablation's report: each row's change is measured against the row without its component."""

import json
import os
import time

import pytest

from conftest import benchmark

pytestmark = pytest.mark.once  # a report writer: the backend plays no part


def _row(name, ferplus, public, crop=False, best_epoch=3):
    score = lambda acc: {"accuracy": acc, "uar": acc - 0.1, "macro_f1": acc - 0.2}  # noqa: E731
    row = {"name": name, "change": f"+ {name}", "train_seconds": 60.0, "best_epoch": best_epoch,
           "ferplus_valid_flip": score(ferplus - 0.01), "fer2013_publictest_flip": score(public - 0.01)}
    if crop:
        row["ferplus_valid_ten_crop"], row["fer2013_publictest_ten_crop"] = score(ferplus), score(public)
    return row


def test_changes_compare_with_the_row_without_the_component(tmp_path):
    bench = benchmark("face_ablation")
    rows = [_row("majority", 0.60, 0.50), _row("crop40", 0.70, 0.55, crop=True),
            _row("ema", 0.72, 0.56, crop=True), _row("mixup", 0.71, 0.58, crop=True),
            _row("cutmix", 0.69, 0.52, crop=True), _row("sgd", 0.75, 0.59, crop=True, best_epoch=None)]
    (tmp_path / "sgd").mkdir()  # a row saved before best_epoch was recorded: read from its card
    (tmp_path / "sgd" / "card.json").write_text(json.dumps({"history": {"val_accuracy": [0.2, 0.6, 0.5]}}))
    report = bench.write(tmp_path, rows, 1000, 4, 200, doc=tmp_path)
    table = {line.split(" | ")[0].strip("| "): line.split(" | ")
             for line in (tmp_path / "face_ablation.md").read_text().splitlines() if line.startswith("| ")}
    assert table["majority"][5] == ""  # the first row has nothing to compare with
    assert table["crop40"][5] == "+11.0 / +6.0"  # its ten-crop score against the flip-only row before
    assert table["mixup"][5] == "-1.0 / +2.0"
    assert table["cutmix"][5] == "-3.0 / -4.0"  # against ema, the row before mixup, not against mixup
    assert table["sgd"][5] == "+4.0 / +1.0"  # against the AdamW row with mixup
    assert table["sgd"][6] == "2" and table["majority"][6] == "3"
    text = (tmp_path / "face_ablation.md").read_text()
    assert "one standard error of an accuracy on 200 faces is 3.5 / 3.5 points" in text  # at 0.59 and 0.49
    assert json.loads((tmp_path / "face_ablation.json").read_text())["rows"] == report["rows"] == rows


def test_other_seeds_report_their_spread(tmp_path):
    bench = benchmark("face_ablation")
    rows = [_row("majority", 0.60, 0.50), _row("crop40", 0.70, 0.55, crop=True)]
    repeats = [dict(_row("majority", 0.62, 0.47), seed=1), dict(_row("majority", 0.59, 0.50), seed=2),
               dict(_row("crop40", 0.69, 0.56, crop=True), seed=2)]
    bench.write(tmp_path, rows, 1000, 4, 200, doc=tmp_path, repeats=repeats)
    text = (tmp_path / "face_ablation.md").read_text()
    section = text[text.index("## Training seed"):]
    assert "| row | seed 0 | seed 1 | seed 2 | spread (points) |" in section
    assert "| majority | 0.590 / 0.490 | 0.610 / 0.460 | 0.580 / 0.490 | 3.0 / 3.0 |" in section
    assert "| crop40 | 0.700 / 0.550 |  | 0.690 / 0.560 | 1.0 / 1.0 |" in section  # seed 1 not run for it
    assert "--only majority,crop40 --seeds 0,1,2`" in section
    # the seed repeats never enter the main table or its changes
    assert text.count("| majority |") == 2 and "| crop40 | + crop40 |" in text


def test_a_partial_rerun_keeps_every_finished_row(tmp_path):
    bench = benchmark("face_ablation")
    for corpus in ("ferplus", "fer2013"):
        (tmp_path / "data" / corpus).mkdir(parents=True)
    out = tmp_path / "runs"
    for i, (name, *_) in enumerate(bench.ROWS):  # every row finished already: nothing trains
        (out / name).mkdir(parents=True)
        (out / name / "result.json").write_text(json.dumps(_row(name, 0.6 + i / 100, 0.5)))
    (out / "majority-seed1").mkdir()
    (out / "majority-seed1" / "result.json").write_text(json.dumps(dict(_row("majority", 0.61, 0.5), seed=1)))
    report = bench.run(tmp_path / "data", out, 1000, 4, 200, only=["crop40"], seeds=[0], doc=tmp_path)
    assert [r["name"] for r in report["rows"]] == [name for name, *_ in bench.ROWS]
    assert [(r["name"], r["seed"]) for r in report["repeats"]] == [("majority", 1)]


def test_a_rebuilt_report_dates_the_rows_not_the_rebuild(tmp_path):
    bench = benchmark("face_ablation")
    for corpus in ("ferplus", "fer2013"):
        (tmp_path / "data" / corpus).mkdir(parents=True)
    out = tmp_path / "runs"
    (out / "majority").mkdir(parents=True)
    (out / "majority" / "result.json").write_text(json.dumps(_row("majority", 0.6, 0.5)))
    then = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1))  # an unstamped row: its file's time
    os.utime(out / "majority" / "result.json", (then, then))
    (out / "crop40").mkdir()
    (out / "crop40" / "result.json").write_text(json.dumps(dict(
        _row("crop40", 0.7, 0.55, crop=True), measured="2026-02-01T10:00:00+0000", load_average=[1.5, 1, 1])))
    report = bench.run(tmp_path / "data", out, 1000, 4, 200, only=["nothing"], seeds=[0], doc=tmp_path)
    assert report["date"] == "2026-02-01T10:00:00+0000"
    text = (tmp_path / "face_ablation.md").read_text()
    assert f"Rows trained {time.strftime(bench.STAMP, time.localtime(then))} to 2026-02-01T10:00:00+0000" in text
    assert "load average at the end of a row: 1.5-1.5" in text
