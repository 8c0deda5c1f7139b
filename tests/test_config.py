import pytest

from emotion_keras.config import ConfigError, TrainConfig


def test_round_trip_and_unknown_keys(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=16)
    cfg.save(tmp_path / "t.json")
    assert TrainConfig.load(tmp_path / "t.json") == cfg
    with pytest.raises(ConfigError, match="unknown keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="monitor"):
        TrainConfig(monitor="uar")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        TrainConfig.load(bad)
