"""One colour and one label per emotion across the dashboard (apps/palette.py), and the Results
page's calibration and robustness tab."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import palette  # noqa: E402
from emotion_keras.labels import CANONICAL  # noqa: E402


from test_dashboard import app_env, models_dir  # noqa: E402,F401  (fixtures)


def _color_scale(spec: dict) -> dict:
    return spec["encoding"]["color"]["scale"]


def test_every_emotion_has_its_own_fixed_colour():
    colours = [palette.color(e) for e in CANONICAL]
    assert len(set(colours)) == len(CANONICAL)
    # the scale maps an emotion to the same colour whichever subset a chart shows
    for subset in (["sad", "happy"], ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "calm"]):
        scale = palette.scale(subset).to_dict()
        assert dict(zip(scale["domain"], scale["range"])) == {e: palette.color(e) for e in scale["domain"]}
    assert palette.rgb("angry") == (0xd6, 0x28, 0x28)


def test_bars_label_every_emotion_and_colour_by_emotion():
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    df = pd.DataFrame({"emotion": classes, "probability": [0.1, 0.05, 0.1, 0.4, 0.15, 0.1, 0.1]})
    spec = palette.bars(df, classes, top="happy").to_dict()
    axis = spec["encoding"]["y"]["axis"]
    assert axis["labelOverlap"] is False and axis["labelLimit"] == 0
    assert spec["encoding"]["y"]["sort"] == classes
    assert spec["height"] == {"step": palette.ROW_PX}  # room for every label, however many
    scale = _color_scale(spec)
    assert dict(zip(scale["domain"], scale["range"]))["happy"] == palette.color("happy")
    faceted = palette.bars(df.assign(modality="face"), classes, row="modality", row_sort=["face"]).to_dict()
    assert faceted["encoding"]["row"]["field"] == "modality"


def test_face_page_chart_uses_the_palette(app_env):
    from test_dashboard import _face_crop, _run

    at = _run("views/face.py")
    at.file_uploader(key="face_upload").upload("me.png", _face_crop(), "image/png")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    scale = _color_scale(spec)
    assert dict(zip(scale["domain"], scale["range"])) == {e: palette.color(e) for e in scale["domain"]}
    assert spec["encoding"]["y"]["axis"]["labelOverlap"] is False


def test_results_page_shows_calibration_and_robustness(app_env, tmp_path):
    from streamlit.testing.v1 import AppTest

    from emotion_keras.calibration import plot_reliability, reliability
    from test_dashboard import APP, TIMEOUT

    model = tmp_path / "models" / "face"
    model.mkdir(parents=True)
    rel = reliability([[0.8, 0.2], [0.6, 0.4]], [0, 1])
    plot_reliability(rel["bins"], model / "calibration_reliability.png")
    (model / "card.json").write_text(json.dumps({
        "task": "face", "name": "calibrated-face", "classes": ["happy", "sad"], "metrics": {},
        "calibration": {"method": "temperature", "temperature": 1.3, "ece_before": 0.09, "ece_after": 0.03,
                        "ece_noise_floor": 0.02, "n": 2, "fitted_on": "test split"},
        "robustness": {"p": {"protocol": "p", "clean": {"accuracy": 0.5, "uar": 0.5, "ece": 0.1},
                             "rows": [{"perturbation": "blur", "strength": 2.0, "unit": "sigma",
                                       "accuracy": 0.25, "uar": 0.25, "ece": 0.2, "accuracy_drop": 0.25}]}}}))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    at.text_area(key="results_roots").set_value(str(tmp_path / "models")).run()
    assert not at.exception, [e.value for e in at.exception]
    frames = [df.value for df in at.dataframe]
    cal = next(f for f in frames if "ece_noise_floor" in f)
    assert list(cal["temperature"]) == [1.3] and list(cal["ece"]) == [0.03]
    rob = next(f for f in frames if "perturbation" in f)
    assert list(rob["perturbation"]) == ["clean", "blur"]
    models = frames[0]
    assert list(models["ece"]) == [0.03]
    assert len(at.image) >= 1  # the reliability diagram
