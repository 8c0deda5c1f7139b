"""emotion_keras.tuning.compat: KerasTuner's private API in one place, checked against its version;
the top-level tuning/ entry points re-export the package's search."""

import warnings

import pytest

kt = pytest.importorskip("keras_tuner")


def test_installed_keras_tuner_is_one_the_patches_were_written_for():
    from emotion_keras.tuning import compat

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.check_version() == kt.__version__


def test_another_version_warns_once_naming_the_module(monkeypatch):
    from emotion_keras.tuning import compat

    monkeypatch.setattr(kt, "__version__", "9.0.0")
    monkeypatch.setattr(compat, "_warned", False)
    with pytest.warns(UserWarning, match="emotion_keras/tuning/compat.py"):
        compat.check_version()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_version()  # once per process


def test_tuners_reach_private_hooks_through_compat_only():
    import inspect

    from emotion_keras.tuning import compat, tuners

    cls = tuners._tuner_classes()["random"]
    assert issubclass(cls, compat.PrivateHooks) and issubclass(cls, kt.RandomSearch)
    assert "keras_tuner.src" not in inspect.getsource(tuners)


def test_top_level_entry_points_are_the_package_code():
    from emotion_keras.tuning import data, export, tuners
    from tuning import search

    assert search.run_search is tuners.run_search and search.export_best is export.export_best
    assert search.load_speech_data is data.load_speech_data
