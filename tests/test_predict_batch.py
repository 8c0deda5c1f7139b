"""``predict DIR|GLOB``: folders walked and globs expanded lazily, images batched across files with
the same results as one at a time, the JSON-lines contract kept, and memory bounded over many files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emotion_keras.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_face(tmp_path_factory) -> Path:
    from test_dashboard import _face_model

    d = tmp_path_factory.mktemp("tiny") / "face"
    _face_model(d)
    return d


def _crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{i:05d}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (16, 16), dtype=np.uint8))
        paths.append(p)
    return paths


def test_folder_glob_and_errors_keep_the_json_lines_contract(tiny_face, tmp_path, capsys):
    _crops(tmp_path / "photos" / "sub", 5)
    (tmp_path / "photos" / "notes.txt").write_text("not media: skipped when walking a folder")
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"hidden: skipped")
    bad = tmp_path / "photos" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    code = main(["predict", str(tmp_path / "photos"), str(tmp_path / "photos" / "sub" / "img0000[12].png"),
                 str(tmp_path / "missing.png"), str(ROOT / "samples" / "face.jpg"), "--json",
                 "--model-dir", str(tiny_face), "--batch-size", "4"])
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]
    names = [Path(r["file"]).name for r in lines]
    assert names == ["broken.jpg", "img00000.png", "img00001.png", "img00002.png", "img00003.png",
                     "img00004.png", "img00001.png", "img00002.png", "missing.png", "face.jpg"]
    assert code == 1 and "2 of 10 file(s) failed" in out.err
    assert set(lines[0]) == {"file", "error"} and set(lines[8]) == {"file", "error"}
    assert all(len(r["faces"]) == 1 and r["faces"][0]["cropped"] for r in lines[1:8])
    assert len(lines[9]["faces"]) == 1 and "keypoints" in lines[9]["faces"][0]


def test_batched_equals_one_at_a_time(tiny_face, tmp_path):
    from emotion_keras.recognizers.face import FaceEmotionRecognizer

    paths = _crops(tmp_path, 7) + [ROOT / "samples" / "face.jpg"]
    rec = FaceEmotionRecognizer(tiny_face)
    batched = list(rec.predict_files(paths, batch_size=3))
    single = [rec.predict_file(p) for p in paths]
    assert [b["file"] for b in batched] == [str(p) for p in paths]
    for b, s in zip(batched, single):
        assert [f["box"] for f in b["faces"]] == [f["box"] for f in s["faces"]]
        for fb, fs in zip(b["faces"], s["faces"]):
            assert max(abs(fb["probabilities"][k] - fs["probabilities"][k]) for k in fb["probabilities"]) <= 2e-4


MEASURE = r"""
import json, sys, tracemalloc
from emotion_keras.commands.predict import Recognizers, expand_inputs, predict_all
recognizers = Recognizers(sys.argv[1])
list(predict_all(expand_inputs([sys.argv[2]]), recognizers))  # warm up (model load, compilation)
out = []
for pattern in sys.argv[2:]:
    tracemalloc.start()
    n = sum("faces" in r for r in predict_all(expand_inputs([pattern]), recognizers, batch_size=32))
    out.append([n, tracemalloc.get_traced_memory()[1]])
    tracemalloc.stop()
print(json.dumps(out))
"""


@pytest.mark.once  # the streaming is the recogniser's Python code, the same under each backend
def test_memory_stays_bounded_over_many_files(tiny_face, tmp_path):
    """Python-heap peak while streaming 3,000 files is about that of 300: nothing accumulates
    (measured in a fresh process, away from pytest's own log capture)."""
    import os
    import subprocess

    _crops(tmp_path / "many", 3000, seed=1)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(tiny_face), str(tmp_path / "many" / "img00[0-2]*.png"),
                          str(tmp_path / "many")], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    (n_small, small), (n_large, large) = json.loads(out.stdout.strip().splitlines()[-1])
    assert (n_small, n_large) == (300, 3000)
    assert large < 1.5 * small + 1_000_000, (small, large)
