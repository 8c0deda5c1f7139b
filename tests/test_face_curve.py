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
