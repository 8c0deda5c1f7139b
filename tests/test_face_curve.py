"""The accuracy-against-time report: a run's stages add up on one clock, and the report names its runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.once  # a report writer: the backend plays no part


def _run(path: Path, epochs: list[tuple[float, float, float]], protocol: str) -> Path:
    """A finished run directory: ``history.csv`` rows of (epoch seconds, val accuracy, train accuracy)."""
    path.mkdir(parents=True)
    lines = ["epoch,accuracy,epoch_seconds,loss,val_accuracy,val_uar"]
    lines += [f"{i},{acc},{sec},1.0,{val},{val - 0.02}" for i, (sec, val, acc) in enumerate(epochs)]
    (path / "history.csv").write_text("\n".join(lines) + "\n")
    (path / "card.json").write_text(json.dumps({"metrics": {"validation": {"protocol": protocol}}}))
    return path


def test_stages_share_one_clock_and_the_report_names_its_runs(tmp_path):
    first = _run(tmp_path / "w32", [(60, 0.50, 0.55), (120, 0.60, 0.65)], "stage-one protocol")
    second = _run(tmp_path / "w32-restart", [(90, 0.61, 0.70)], "PublicTest (3,589 images)")
    out = tmp_path / "report" / "curve"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "face_curve.py"), "--run-dir", str(first),
                    str(second), "--label", "a run and its restart", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# Accuracy against training time: a run and its restart")
    assert "From `w32` and `w32-restart` by" in md  # the runs, not the label
    assert "Validation: PublicTest (3,589 images)." in md  # the last stage's, whose model it is
    assert "| 1 | 2 | 3.0 | 0.6000 | 0.5800 | 0.6500 |" in md
    assert "| 2 | 1 | 4.5 | 0.6100 | 0.5900 | 0.7000 |" in md  # 90 s after the first stage's 3 minutes
    assert out.with_suffix(".png").stat().st_size > 0


def test_held_out_table_estimates_the_minutes_a_target_needs(tmp_path, monkeypatch):
    """Each stage's model on face_eval.py's sets, and the minutes a target needs at the stages' slope
    (accuracy linear in ln minutes): 0.70 at 100 min and 0.75 at 200 min reach 0.80 at 400 min."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import face_curve
    import face_eval

    scores = {"s1": {"ferplus_valid": 0.86, "fer2013_publictest": 0.66, "ckplus48": 0.70, "wild_faces": 0.50},
              "s2": {"ferplus_valid": 0.87, "fer2013_publictest": 0.66, "ckplus48": 0.75, "wild_faces": 0.49}}

    def fake_sets(model, data, tta, out, balance=None, sweep=()):
        for key, _, _, label in face_eval.SETS:
            yield key, label, {"accuracy": scores[model.name][key]}, data / key

    monkeypatch.setattr(face_eval, "evaluate_sets", fake_sets)
    assert face_curve.minutes_to_reach([(100, 0.70), (200, 0.75)], 0.80) == pytest.approx(400)
    assert face_curve.minutes_to_reach([(100, 0.70), (200, 0.70)], 0.80) is None  # flat: no estimate
    assert face_curve.minutes_to_reach([(100, 0.70)], 0.80) is None  # one point: no slope
    md = "\n".join(face_curve.held_out_table([(tmp_path / "s1", 100.0), (tmp_path / "s2", 200.0)], "flip", tmp_path))
    assert "| 2 | `s2` | 200 | 0.870 | 0.660 | 0.750 | 0.490 |" in md
    assert "| CK+48 (cross-corpus) | 0.80 | 0.750 | +5.0 points | 400 |" in md
    assert "| FER+ FER2013Valid, majority labels | 0.85 | 0.870 | +1.0 points | reached (100) |" in md
    assert "| FER2013 PublicTest, original labels | 0.70 | 0.660 | +0.0 points | no estimate: not rising |" in md
    assert "no estimate: not rising" in md.split("wild_faces web photos")[-1]  # falling
