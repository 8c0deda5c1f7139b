import numpy as np

from emotion_keras.evaluate import metrics, write_report


def test_metrics_known_values(tmp_path):
    y = [0, 0, 0, 0, 1, 1, 2, 2]
    p = [0, 0, 0, 1, 1, 1, 2, 0]
    m = metrics(y, p, ["angry", "happy", "sad", "neutral"])
    assert m["accuracy"] == 6 / 8
    assert np.isclose(m["uar"], (3 / 4 + 1 + 1 / 2) / 3)  # neutral absent: not counted as 0
    assert m["absent_classes"] == ["neutral"]
    assert m["confusion_matrix"][0] == [3, 1, 0, 0]
    paths = write_report({**m, "protocol": "toy"}, tmp_path)
    assert paths["png"].stat().st_size > 1000 and paths["json"].exists()


def test_metrics_accepts_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert metrics([0, 1], probs, ["a", "b"])["accuracy"] == 1.0
