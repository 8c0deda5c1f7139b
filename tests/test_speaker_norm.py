"""Speaker normalisation: per-group statistics, padding untouched, running = batch at the end."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_keras.config import ConfigError
from emotion_keras.preprocess import speaker_norm as sn
from emotion_keras.preprocess.audio import SpeechFeatureConfig


def _windows(rng, n, offset, scale, pad=0):
    x = rng.normal(offset, scale, size=(n, 10, 3)).astype(np.float32)
    if pad:
        x[:, -pad:] = 0.0  # zero-padded tail, as window_feature leaves short clips
    return x


def test_groups_standardised_separately_and_padding_kept():
    rng = np.random.default_rng(0)
    a, b = _windows(rng, 6, 5.0, 2.0, pad=3), _windows(rng, 4, -3.0, 0.5)
    x = np.concatenate([a, b])
    out = sn.normalise_groups(x, ["s1"] * 6 + ["s2"] * 4)
    for part in (out[:6, :7], out[6:]):  # valid frames of each speaker: mean 0, std 1 per feature
        v = part.reshape(-1, 3)
        assert np.allclose(v.mean(0), 0, atol=1e-5) and np.allclose(v.std(0), 1, atol=1e-4)
    assert np.all(out[:6, 7:] == 0)  # padding neither counted nor changed


def test_speaker_offset_removed_emotion_difference_kept():
    """Two speakers with different voices, each with a 'loud' and a 'quiet' emotion: after
    per-speaker normalisation the emotions line up across speakers, the speakers do not differ."""
    rng = np.random.default_rng(1)
    x, groups, emo = [], [], []
    for spk, offset in (("a", 0.0), ("b", 10.0)):
        for e, shift in ((0, -1.0), (1, 1.0)):
            x.append(rng.normal(offset + shift, 0.1, size=(5, 4, 2)))
            groups += [spk] * 5
            emo += [e] * 5
    x, emo, groups = np.concatenate(x), np.asarray(emo), np.asarray(groups)
    out = sn.normalise_groups(x, groups)
    means = {(g, e): out[(groups == g) & (emo == e)].mean() for g in "ab" for e in (0, 1)}
    assert means[("a", 0)] == pytest.approx(means[("b", 0)], abs=0.05)
    assert means[("a", 1)] - means[("a", 0)] > 1.5


def test_running_normaliser_ends_at_file_statistics_and_vectors():
    rng = np.random.default_rng(2)
    x = _windows(rng, 8, 2.0, 3.0)
    run = sn.RunningNormaliser()
    run(x[:5])
    last = run(x[5:])
    assert np.allclose(last, sn.normalise_file(x)[5:], atol=1e-4)
    v = rng.normal(50, 10, size=(20, 14))  # prosody vectors: all rows valid
    assert np.allclose(sn.normalise_file(v).mean(0), 0, atol=1e-5)


def test_config_validates_modes():
    assert SpeechFeatureConfig(speaker_norm="speaker").speaker_norm == "speaker"
    assert "speaker_norm" not in SpeechFeatureConfig().cache_dict()  # applied after the cache
    for bad in ({"speaker_norm": "global"}, {"prosody": "opensmile"}, {"vad": "silero"}):
        with pytest.raises(ConfigError):
            SpeechFeatureConfig(**bad)


def test_prior_shrinks_short_files_towards_the_typical_speaker():
    rng = np.random.default_rng(3)
    x = np.concatenate([_windows(rng, 20, 0.0, 1.0), _windows(rng, 20, 4.0, 1.0)])
    prior = sn.speaker_prior(x, ["a"] * 20 + ["b"] * 20)
    assert np.allclose(prior["mean"], 2.0, atol=0.1) and np.allclose(prior["var"], 1.0, atol=0.15)
    clip = _windows(rng, 1, 3.0, 1.0)  # 10 frames: mostly the prior
    short = sn.normalise_file(clip, prior)
    assert short.mean() == pytest.approx(1.0, abs=0.3)  # (3 - 2) / 1: its offset kept, as an emotion
    long = sn.normalise_file(np.repeat(clip, 2000, axis=0), prior)  # 20,000 frames: mostly itself
    assert abs(long.mean()) < 0.2
    run = sn.RunningNormaliser(prior)
    assert np.allclose(run(clip), short, atol=1e-5)


def test_a_few_clips_keep_their_mean_but_borrow_the_typical_speakers_variance():
    """Enrolment from a handful of vectors: the speaker's own offset is kept, their variance is
    pulled towards the typical speaker's in proportion to how little was heard."""
    rng = np.random.default_rng(4)
    prior = {"mean": [0.0] * 5, "var": [4.0] * 5}
    few = rng.normal(10.0, 1.0, size=(4, 5))  # 4 vectors of a speaker with a large offset, unit spread
    mean, std = sn.group_stats(few, prior)
    assert np.allclose(mean, few.mean(0), atol=1e-5)  # the offset is the speaker's, not shrunk
    w = sn.PRIOR_WINDOWS
    expected = np.sqrt((4 * few.var(0) + w * 4.0) / (4 + w))
    assert np.allclose(std, expected, atol=1e-4) and np.all(std > 1.5)  # mostly the prior's 2.0
    many = rng.normal(10.0, 1.0, size=(4000, 5))
    assert np.allclose(sn.group_stats(many, prior)[1], 1.0, atol=0.05)  # a long enrolment: its own
    assert np.allclose(sn.group_stats(few)[1], few.std(0), atol=1e-5)  # no prior: no shrinkage
    out = sn.normalise_groups(np.concatenate([few, many]), ["a"] * 4 + ["b"] * 4000, prior)
    assert np.allclose(out[:4].mean(0), 0, atol=1e-5) and np.all(out[:4].std(0) < 0.8)
    enrolled = sn.enrolment(few, prior)
    assert enrolled["weight"] == 4 and np.allclose(np.sqrt(enrolled["var"]), expected, atol=1e-4)
