"""Functionals (one vector of statistics per window) and the linear / mlp models over them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import corpus
from emotion_keras.config import ConfigError
from emotion_keras.models.speech import SpeechModelConfig, adapt, build_speech_model, fit_lda
from emotion_keras.preprocess import functionals, prosody, speaker_norm
from emotion_keras.preprocess.audio import SpeechFeatureConfig, waveform_inputs

SR = 16000


def _tone(hz: float, seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_one_vector_per_window_whose_statistics_mean_what_they_say():
    cfg = SpeechFeatureConfig(feature="functionals", n_mfcc=20, n_fft=512)
    names = functionals.names(cfg.n_mfcc, cfg.n_mels)
    assert cfg.input_shape == (1, len(names)) == (1, functionals.dim(20, 64))
    low, _ = waveform_inputs(_tone(300), cfg)
    high, _ = waveform_inputs(_tone(3000), cfg)
    quiet, _ = waveform_inputs(_tone(300, amp=0.03), cfg)
    assert low["features"].shape == (1, *cfg.input_shape) and np.isfinite(low["features"]).all()
    col = {n: i for i, n in enumerate(names)}
    f = lambda x, name: float(x["features"][0, 0, col[name]])  # noqa: E731
    assert f(low, "centroid_mean") < 0.5 < 2.5 < f(high, "centroid_mean")  # kHz
    assert f(quiet, "rms_db_mean") == pytest.approx(f(low, "rms_db_mean") - 20.0, abs=0.5)
    assert f(low, "active_fraction") == pytest.approx(1.0)
    # a clip longer than a window: one vector per window, as for frame features
    many, spans = waveform_inputs(np.concatenate([_tone(300, 4.0), _tone(3000, 4.0)]), cfg, trim=False)
    assert many["features"].shape[0] == len(spans) > 2


def test_contour_and_movement_follow_the_waveform():
    cfg = SpeechFeatureConfig(feature="functionals", n_mfcc=20, n_fft=512, trim_db=0)
    col = {n: i for i, n in enumerate(functionals.names(cfg.n_mfcc, cfg.n_mels))}
    t = np.arange(2 * SR) / SR
    rising = (np.linspace(0.01, 0.5, len(t)) * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    steady, pulsing = _tone(300), _tone(300) * (0.55 + 0.45 * np.sign(np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    f = lambda y, name: float(waveform_inputs(y, cfg)[0]["features"][0, 0, col[name]])  # noqa: E731
    first, middle, last = (f(rising, f"rms_db_{third}") for third in functionals.THIRDS)
    assert first + 5 < middle < last - 2  # a 34 dB crescendo, in thirds
    band = int(np.argmax(waveform_inputs(steady, cfg)[0]["features"][0, 0, [col[f"mel{i}_mean"] for i in range(64)]]))
    assert f(pulsing, f"mel{band}_d1_absmean") > 5 * f(steady, f"mel{band}_d1_absmean")  # 4 Hz bursts move
    assert f(pulsing, "mfcc0_iqr") > f(steady, "mfcc0_iqr")


def test_lda_solves_the_gaussian_posterior_and_reloads(tmp_path):
    """The solved classifier's softmax is the posterior of Gaussian classes with the pooled covariance
    (checked against scipy's densities); full shrinkage is the nearest class mean."""
    import keras
    from scipy.special import softmax
    from scipy.stats import multivariate_normal

    from emotion_keras.models import store
    from emotion_keras.models.io import model_feed

    rng = np.random.default_rng(1)
    n, d = 300, 6
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 2.0 * np.eye(3, d)[y] * 3.0 + 10.0
    feed = {"features": x[:, None, :].astype("float32")}
    model = build_speech_model(SpeechModelConfig(architecture="lda", shrinkage=0.0, dropout=0.3), 3, (1, d))
    adapt(model, feed)
    prior = fit_lda(model, feed, y, shrinkage=0.0, balanced=False)
    assert np.allclose(prior, np.bincount(y) / n)
    z = np.asarray(keras.Model(model.inputs, model.get_layer("embedding").output).predict(feed, verbose=0), float)
    means = np.stack([z[y == k].mean(0) for k in range(3)])
    cov = sum((z[y == k] - means[k]).T @ (z[y == k] - means[k]) for k in range(3)) / (n - 3)
    log_post = np.stack([multivariate_normal(means[k], cov).logpdf(z) + np.log(prior[k]) for k in range(3)], 1)
    p = np.asarray(model.predict(model_feed(model, feed), verbose=0))
    assert np.allclose(p, softmax(log_post, axis=1), atol=1e-3)
    assert (p.argmax(1) == y).mean() > 0.9
    fit_lda(model, feed, y, shrinkage=1.0)  # identity covariance, equal priors: the nearest mean
    nearest = np.argmin(((z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (np.asarray(model.predict(feed, verbose=0)).argmax(1) == nearest).all()
    store.save(model, tmp_path / "lda", {"task": "speech", "name": "lda", "classes": ["a", "b", "c"]})
    again, _ = store.load(tmp_path / "lda")  # safe mode: plain Normalization and Dense layers
    assert np.allclose(np.asarray(again.predict(feed, verbose=0)), np.asarray(model.predict(feed, verbose=0)),
                       atol=1e-5)
    with pytest.raises(ValueError, match="every class"):
        fit_lda(model, feed, np.zeros(n, int), 0.5)
    # several shrinkages (the default): one solved head each, their posteriors averaged
    both = build_speech_model(SpeechModelConfig(architecture="lda", shrinkage=(0.0, 1.0)), 3, (1, d))
    adapt(both, feed)
    fit_lda(both, feed, y, both_cfg := (0.0, 1.0))
    singles = []
    for s in both_cfg:
        fit_lda(model, feed, y, s)
        singles.append(np.asarray(model.predict(feed, verbose=0)))
    assert np.allclose(np.asarray(both.predict(feed, verbose=0)), np.mean(singles, 0), atol=1e-5)
    assert SpeechModelConfig(architecture="lda").shrinkage == (0.2, 0.4, 0.6, 0.8)
    with pytest.raises(ValueError, match="no solvable head"):
        fit_lda(both, feed, y, 0.5)  # a two-head model is not solved with one value
    with pytest.raises(ConfigError, match="shrinkage"):
        SpeechModelConfig(architecture="lda", shrinkage=(0.5, 1.5))


def test_vector_models_standardise_with_training_moments_and_reload_in_safe_mode(tmp_path):
    from emotion_keras.models import store
    from emotion_keras.models.io import model_feed

    rng = np.random.default_rng(0)
    x = {"features": rng.normal(5.0, 2.0, (64, 1, 30)).astype("float32"),
         "prosody": rng.normal(-3.0, 10.0, (64, 14)).astype("float32")}
    for arch in ("linear", "mlp"):
        model = build_speech_model(SpeechModelConfig(architecture=arch, embedding_dim=8, prosody_dim=14,
                                                     l2=0.01), 3, (1, 30))
        adapt(model, x)
        import keras

        std = keras.Model(model.inputs, model.get_layer("join_prosody").output)
        z = np.asarray(std.predict(model_feed(std, x), verbose=0))
        assert z.shape == (64, 44) and np.allclose(z.mean(0), 0, atol=1e-3) and np.allclose(z.std(0), 1, atol=1e-2)
        assert len(model.losses) == (1 if arch == "linear" else 2)  # the L2 penalties
        p = np.asarray(model.predict(model_feed(model, x), verbose=0))
        store.save(model, tmp_path / arch, {"task": "speech", "name": arch, "classes": ["a", "b", "c"]})
        again, _ = store.load(tmp_path / arch)  # safe mode; the adapted moments travel as weights
        assert np.allclose(np.asarray(again.predict(model_feed(again, x), verbose=0)), p, atol=1e-5)


def test_sequence_models_refuse_one_vector_per_window():
    with pytest.raises(ConfigError, match="'linear', 'mlp' or 'lda'"):
        build_speech_model(SpeechModelConfig(architecture="cnn1d"), 3, (1, 300))
    with pytest.raises(ConfigError, match="feature must be one of logmel, mfcc, functionals"):
        SpeechFeatureConfig(feature="egemaps")


def test_a_single_vector_leans_on_the_prior_by_about_a_minute_of_windows():
    prior = {"mean": [0.0, 0.0], "var": [1.0, 1.0]}
    one = np.array([[[3.0, -3.0]]], np.float32)  # one window of one vector
    out = speaker_norm.normalise_file(one, prior)
    w = speaker_norm.PRIOR_WINDOWS
    mean = 3.0 / (w + 1)
    var = (9.0 + w * 1.0) / (w + 1) - mean ** 2
    assert out[0, 0, 0] == pytest.approx((3.0 - mean) / np.sqrt(var), rel=1e-4)
    frames = np.ones((1, 50, 2), np.float32)  # frame features keep the frame weight
    assert speaker_norm.prior_weight(frames) == speaker_norm.PRIOR_FRAMES
    assert speaker_norm.prior_weight(one) == speaker_norm.prior_weight(one[:, 0]) == w


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """Logistic regression on functionals, angry vs sad from actors 1-6, validated on actors 7-8:
    one model without and one with speaker normalisation; and shrinkage LDA with it and the builtin
    prosody input, as the shipped model."""
    from emotion_keras.cli import main

    ravdess = corpus(shared_data, "ravdess_speech")
    out = tmp_path_factory.mktemp("functionals")
    for norm, arch in (("none", "linear"), ("speaker", "linear"), ("speaker", "lda")):
        code = main(["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "1,2,3,4,5,6,7,8",
                     "--classes", "angry,sad", "--val-speakers", "7,8", "--speaker-norm", norm,
                     "--feature-config", json.dumps({"feature": "functionals", "n_mfcc": 13, "n_fft": 512}),
                     "--model-config", json.dumps({"architecture": arch, "l2": 0.05, "dropout": 0.0}),
                     "--epochs", "30", "--batch-size", "16", "--learning-rate", "0.003", "--patience", "0",
                     "--verbose", "0", "--run-dir", str(out / f"run-{norm}-{arch}"),
                     "--out", str(out / (norm if arch == "linear" else arch)),
                     "--prosody", "builtin" if arch == "lda" else "none"])
        assert code == 0
    return ravdess, out


def test_functionals_and_logistic_regression_learn_on_new_speakers(trained):
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    ravdess, out = trained
    card = json.loads((out / "none" / "card.json").read_text())
    assert card["inputs"] == {"features": [1, functionals.dim(13, 64)]}
    assert card["metrics"]["validation"]["accuracy"] >= 0.8, card["metrics"]["validation"]  # chance 0.5
    clip = next((ravdess / "Actor_08").glob("03-01-05-*"))  # an angry clip of a held-out actor
    res = SpeechEmotionRecognizer(out / "none").predict_file(clip)
    assert set(res["probabilities"]) == {"angry", "sad"}
    lda = json.loads((out / "lda" / "card.json").read_text())  # solved: no epochs, nothing chosen
    assert lda["training"]["epochs_run"] == 0 and lda["model_config"]["architecture"] == "lda"
    assert lda["inputs"] == {"features": [1, functionals.dim(13, 64)], "prosody": [prosody.DIM]}
    assert "solved in closed form" in lda["metrics"]["validation"]["protocol"]
    assert lda["metrics"]["validation"]["accuracy"] >= 0.8, lda["metrics"]["validation"]
    assert SpeechEmotionRecognizer(out / "lda").predict_file(clip)["emotion"] in ("angry", "sad")


def test_enrolling_a_speaker_normalises_with_their_statistics(trained, tmp_path, capsys):
    from emotion_keras.cli import main
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    ravdess, out = trained
    actor8 = sorted((ravdess / "Actor_08").glob("03-01-0[45]-*"))  # sad and angry, labels unused
    from emotion_keras.preprocess import audio, speaker_norm

    rec = SpeechEmotionRecognizer(out / "speaker")
    raw = [audio.waveform_inputs(audio.load_audio(p, 16000), rec.config, p)[0]["features"] for p in actor8]
    alone = rec.normalise({"features": raw[0]})["features"]  # shrunk towards the typical speaker
    assert rec.enrol(actor8) == sum(map(len, raw))  # windows heard
    assert rec.predict_file(actor8[0])["emotion"] in ("angry", "sad")
    # the enrolled statistics are the speaker's mean and their variance shrunk towards the typical
    # speaker's (PRIOR_WINDOWS windows of it), pooled with the file's own windows
    speaker, file = np.concatenate(raw).astype(np.float64), raw[0].astype(np.float64)
    n, w = len(speaker), speaker_norm.PRIOR_WINDOWS
    typical_var = np.asarray(rec.preprocessor.speaker_norm_prior["features"]["var"])
    m_s = speaker.mean(0)
    v_s = (n * speaker.var(0) + w * typical_var) / (n + w)
    mean = (file.sum(0) + n * m_s) / (len(file) + n)
    std = np.sqrt((np.square(file).sum(0) + n * (v_s + m_s ** 2)) / (len(file) + n) - mean ** 2)
    enrolled = rec.normalise({"features": raw[0]})["features"]
    assert np.allclose(enrolled, (file - mean) / np.maximum(std, speaker_norm.EPS), atol=1e-3)
    assert not np.allclose(enrolled, alone, atol=0.1)

    assert main(["predict", "--speech-model-dir", str(out / "speaker"), "--enrol", str(ravdess / "Actor_08"),
                 str(actor8[0]), "--json"]) == 0
    captured = capsys.readouterr()
    assert "enrolled one speaker: 60 clip(s)" in captured.err  # the whole folder, every emotion
    assert json.loads(captured.out.strip().splitlines()[-1])["file"] == str(actor8[0])
    # a model without speaker normalisation refuses, before any file is classified
    assert main(["predict", "--speech-model-dir", str(out / "none"), "--enrol", str(actor8[0]),
                 str(actor8[0]), "--json"]) == 2
    assert "trained without speaker normalisation" in capsys.readouterr().err


def test_evaluate_says_how_a_speaker_normalised_model_was_normalised(trained, capsys):
    from emotion_keras.cli import main

    ravdess, out = trained
    for extra, says in (([], "enrolment"), (["--per-clip"], "each clip standardised alone")):
        assert main(["speech", "evaluate", "--model", str(out / "speaker"), "--data", f"ravdess:{ravdess}",
                     "--speakers", "7,8", "--classes", "angry,sad", "--out", str(out / f"eval{len(extra)}"),
                     "--json", *extra]) == 0
        assert says in json.loads(capsys.readouterr().out)["protocol"]


def test_robustness_normalises_perturbed_clips_as_the_clean_ones(trained, monkeypatch, tmp_path):
    """A perturbation that changes nothing scores exactly the clean clips, enrolled or one clip at a
    time: the perturbed clips go through the same speaker normalisation (and the clean figure is not
    an artefact of the cache)."""
    from emotion_keras import perturb
    from emotion_keras.pipelines.speech import evaluate_speech

    ravdess, out = trained
    monkeypatch.setitem(perturb.SPEECH, "gain", ((0.0,), "dB"))
    for per_clip in (False, True):
        rep = evaluate_speech(out / "speaker", f"ravdess:{ravdess}", speakers="7,8", progress=False,
                              out=tmp_path / str(per_clip), perturb=["gain"], per_clip=per_clip)
        (row,) = rep["robustness"]["rows"]
        assert row["accuracy"] == pytest.approx(rep["accuracy"]) and row["uar"] == pytest.approx(rep["uar"])
        assert rep["accuracy"] >= 0.75, rep  # angry vs sad; chance 0.5


def test_fusion_sees_a_speaker_normalised_lda_as_the_recogniser_gives_it(trained):
    """The fusion head's training embeddings of a speaker-normalised, several-head ``lda`` speech
    model are the recogniser's for an unenrolled clip, and its probabilities come back from them."""
    from emotion_keras.models import store
    from emotion_keras.pipelines.fusion import _speech_probs, speech_embeddings
    from emotion_keras.pipelines.splits import read_speech_records
    from emotion_keras.preprocess import audio
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    ravdess, out = trained
    assert len(SpeechModelConfig.from_dict(store.read_card(out / "lda")["model_config"]).shrinkage) > 1
    records = read_speech_records(f"ravdess:{ravdess}", ["angry", "sad"], limit_speakers="8")[:3]
    got = speech_embeddings(out / "lda", records, progress=False)
    rec = SpeechEmotionRecognizer(out / "lda")
    want = [rec.embeddings(rec.waveform_inputs(audio.load_audio(r.path, 16000), r.path)[0])[0] for r in records]
    np.testing.assert_allclose(got["embedding"], np.concatenate(want), atol=2e-2)  # the cache keeps float16
    np.testing.assert_allclose(_speech_probs(out / "lda", got["embedding"]), got["probs"], atol=1e-5)


def test_augmented_training_gets_its_own_default_run_directory(trained, monkeypatch, tmp_path, capsys):
    """Without --run-dir the run directory is named by the run's settings: adding --augment-copies is
    another run, not 'already finished'."""
    from emotion_keras.cli import main

    ravdess, _ = trained
    monkeypatch.chdir(tmp_path)
    args = ["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "5,6,7,8", "--classes", "angry,sad",
            "--val-speakers", "7,8", "--feature-config", json.dumps({"feature": "functionals", "n_mfcc": 13,
                                                                     "n_fft": 512}),
            "--model-config", json.dumps({"architecture": "lda", "shrinkage": 0.6})]
    assert main(args) == 0 and main([*args, "--augment-copies", "1"]) == 0
    assert "already holds a finished run" not in capsys.readouterr().err
    runs = sorted((tmp_path / "runs" / "speech").iterdir())
    assert len(runs) == 2 and all((r / "train_result.json").exists() for r in runs), runs


def test_a_videos_windows_are_normalised_with_the_speech_heard_so_far(trained):
    """Video analysis keeps one running speaker normalisation per file: a window is standardised with
    the statistics of every window before it (and its own), not with its own 2.5 s alone."""
    from conftest import ROOT
    from emotion_keras.preprocess import audio
    from emotion_keras.recognizers.face import FaceEmotionRecognizer
    from emotion_keras.recognizers.multimodal import MultimodalEmotionRecognizer
    from emotion_keras.recognizers.speech import SpeechEmotionRecognizer

    ravdess, out = trained
    speech = SpeechEmotionRecognizer(out / "speaker")
    mm = MultimodalEmotionRecognizer(face=FaceEmotionRecognizer(ROOT / "saved_models" / "face"), speech=speech)
    y = np.concatenate([audio.load_audio(p, 16000) for p in sorted((ravdess / "Actor_08").glob("03-01-0[45]-*"))[:2]])
    first, second = y[: 3 * 16000], y[len(y) - 3 * 16000:]
    running = {}
    mm._speech(first, 16000, running)
    got = mm._speech(second, 16000, running)
    raw = [audio.waveform_inputs(w, speech.config, "<window>", speech.preprocessor.basis)[0] for w in (first, second)]
    norm = speaker_norm.RunningNormaliser(speech.preprocessor.speaker_norm_prior["features"])
    norm(raw[0]["features"])
    emb, _ = speech.embeddings({"features": norm(raw[1]["features"])})
    np.testing.assert_allclose(got["embedding"], emb.mean(0), atol=1e-4)
    assert not np.allclose(got["embedding"], mm._speech(second, 16000)["embedding"], atol=1e-3)


def test_lda_cross_validation_says_nothing_was_chosen(trained, tmp_path):
    from emotion_keras.cli import main

    ravdess, _ = trained
    assert main(["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "1,2,3,4,5,6,7,8,9,10",
                 "--classes", "angry,sad", "--folds", "5", "--speaker-norm", "speaker",
                 "--feature-config", json.dumps({"feature": "functionals", "n_mfcc": 13, "n_fft": 512}),
                 "--model-config", json.dumps({"architecture": "lda", "shrinkage": 0.6}),
                 "--verbose", "0", "--run-dir", str(tmp_path / "cv"), "--out", str(tmp_path / "all")]) == 0
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert "nothing chosen on any fold" in report["protocol"] and len(report["folds"]) == 5
    assert report["accuracy"]["mean"] >= 0.75, report  # angry vs sad on 2 new actors a fold; chance 0.5

    # --out: one model solved on all 10 actors, the 5-fold figure and an out-of-fold temperature on its card
    from emotion_keras.models import store
    from emotion_keras.models.speech import SpeechModelConfig, adapt, build_speech_model, fit_lda
    from emotion_keras.pipelines.speech import training_windows
    from emotion_keras.pipelines.splits import read_speech_records
    from emotion_keras.preprocess.audio import SpeechFeatureConfig

    net, card = store.load(tmp_path / "all")
    assert card["data"]["train_speakers"] == [f"{i:02d}" for i in range(1, 11)] and card["data"]["train_clips"] == 160
    assert card["metrics"]["cv5"]["accuracy"] == report["accuracy"]["mean"] and "per_file" in card["metrics"]["cv5"]
    assert card["calibration"]["n"] == 160 and "out-of-fold" in card["calibration"]["fitted_on"]
    cfg = SpeechFeatureConfig.from_dict(card["preprocessing"])
    records = read_speech_records(f"ravdess:{ravdess}", ["angry", "sad"], limit_speakers="1,2,3,4,5,6,7,8,9,10")
    ws, prior = training_windows(records, cfg, progress=False)
    assert card["speaker_norm_prior"] == prior
    twin = build_speech_model(SpeechModelConfig.from_dict(card["model_config"]), card["classes"], cfg.input_shape)
    adapt(twin, ws.inputs())
    fit_lda(twin, ws.inputs(), ws.targets(card["classes"]), 0.6)
    np.testing.assert_allclose(net.predict(ws.inputs(), verbose=0), twin.predict(ws.inputs(), verbose=0), atol=1e-4)
    # a trained architecture has no epoch to refit with: refused before any fold runs
    code = main(["speech", "train", "--data", f"ravdess:{ravdess}", "--speakers", "1,2,3", "--classes", "angry,sad",
                 "--folds", "3", "--architecture", "crnn", "--run-dir", str(tmp_path / "crnn"),
                 "--out", str(tmp_path / "crnn-all")])
    assert code == 2 and not (tmp_path / "crnn").exists()
