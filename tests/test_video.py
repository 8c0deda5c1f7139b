"""Video input: frame sampling by time, rotation, downscaling, audio track, aligned windows, bad input,
and the audio-visual corpus readers (real CREMA-D FLV with VP6 video and MP3 audio)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import corpus
from emotion_keras.errors import InputError
from emotion_keras.preprocess import video as V
from video_fixtures import make_video


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    return {
        "av": make_video(d / "av.mp4", seconds=3.0),
        "silent": make_video(d / "silent.mp4", seconds=2.0, audio=False),
        "audio": make_video(d / "audio.m4a", seconds=3.0, video=False, container="mp4"),
        "rot": make_video(d / "rot.mp4", seconds=1.0, audio=False, rotation=-90),
        "vfr": make_video(d / "vfr.mp4", seconds=3.0, audio=False, vfr=True),
        "4k": make_video(d / "4k.mp4", seconds=0.4, fps=10, size=(3840, 2160), audio=False),
        "long_mkv": make_video(d / "long.mkv", seconds=6.0, size=(96, 64)),
        "long_mp4": make_video(d / "long.mp4", seconds=6.0, size=(96, 64)),
        "dir": d,
    }


def test_probe_reports_streams(media):
    info = V.probe(media["av"])
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (160, 120)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert info.audio_rate == 44100 and info.audio_channels == 2
    a = V.probe(media["audio"])
    assert a.has_audio and not a.has_video


def test_frames_sampled_by_presentation_time(media):
    frames = list(V.iter_frames(media["av"], fps=5))
    times = [f.time for f in frames]
    assert len(frames) == 15
    assert np.allclose(np.diff(times), 0.2, atol=0.02)
    assert frames[0].image.dtype == np.uint8 and frames[0].image.shape == (120, 160, 3)
    assert frames[0].image[2, 2, 0] > 200  # red corner top-left: colour order is RGB


def test_variable_frame_rate_sampled_on_time_grid(media):
    times = np.array([f.time for f in V.iter_frames(media["vfr"], fps=5)])
    # frames are 40 ms apart, then 120 ms apart: each pick is the first frame at/after k * 0.2 s
    grid = np.arange(len(times)) * 0.2
    assert np.all(times >= grid - 1e-6) and np.all(times - grid < 0.121)
    assert times[-1] > 2.5


def test_rotation_metadata_applied(media):
    info = V.probe(media["rot"])
    assert info.rotation in (-90, 270) and (info.width, info.height) == (120, 160)
    frame = next(V.iter_frames(media["rot"], fps=5))
    assert frame.image.shape == (160, 120, 3)  # portrait, as a phone would display it
    assert frame.image[2, -3, 0] > 200  # the top-left red square turned clockwise to top-right


def test_4k_downscaled_before_anything(media):
    frames = list(V.iter_frames(media["4k"], fps=5, max_side=1280))
    assert frames and frames[0].image.shape == (720, 1280, 3)


def test_audio_track_resampled_mono(media):
    y = V.load_audio_track(media["av"], 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(3 * 16000, abs=1600)
    spectrum = np.abs(np.fft.rfft(y[4000:20000]))
    assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) < 5  # the 440 Hz tone survived


def test_windows_aligned_frames_and_audio(media):
    wins = list(V.iter_windows(media["av"], V.VideoConfig(window=1.0, hop=0.5, fps=5)))
    assert [w.start for w in wins] == [0.0, 0.5, 1.0, 1.5, 2.0]
    for w in wins:
        assert all(w.start <= f.time < w.end for f in w.frames)
        assert len(w.frames) == 5 and w.audio.size == 16000
    clip = list(V.iter_windows(media["av"], V.VideoConfig(window=2.5, hop=1.0)))
    assert clip[0].end == 2.5 and clip[-1].end == pytest.approx(3.0, abs=0.05)


def test_video_only_and_audio_only_windows(media):
    silent = list(V.iter_windows(media["silent"]))
    assert silent and all(w.audio is None and w.frames for w in silent)
    audio = list(V.iter_windows(media["audio"]))
    assert audio and all(w.frames == [] and w.audio.size > 0 for w in audio)


def test_truncated_files(media, tmp_path):
    # mkv: the beginning decodes; the result is partial, with a warning
    data = media["long_mkv"].read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[:len(data) // 2])
    warnings = []
    wins = list(V.iter_windows(cut, warnings=warnings))
    assert wins and wins[-1].end < 5.0
    assert any("truncated" in w or "stopped" in w for w in warnings)
    # mp4 cut before its index cannot be opened at all: a clear InputError naming the file
    data = media["long_mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="cut.mp4"):
        V.probe(cut)


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        V.probe(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        V.probe(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match="notes.mp4"):
        list(V.iter_windows(text))


def test_long_video_streams_with_bounded_buffers(tmp_path):
    # 40 s of tiny video: frames come one at a time and windows keep only what they need
    path = make_video(tmp_path / "long.mkv", seconds=40.0, fps=10, size=(64, 48), sr=16000, channels=1)
    n, max_frames, max_audio = 0, 0, 0
    for w in V.iter_windows(path, V.VideoConfig(window=2.5, hop=1.0, fps=5)):
        n += 1
        max_frames = max(max_frames, len(w.frames))
        max_audio = max(max_audio, w.audio.size)
    assert n == 38 and max_frames <= 13 and max_audio <= 40000


def test_window_config_validation():
    from emotion_keras.config import ConfigError

    with pytest.raises(ConfigError):
        V.VideoConfig(window=0)
    assert V.window_starts(2.2, 2.5, 1.0) == [0.0]
    assert V.window_starts(5.0, 2.5, 1.0) == [0.0, 1.0, 2.0, 3.0]


# ------------------------------------------------------------------ real CREMA-D clips

def test_cremad_flv_vp6_and_mp3(shared_data):
    root = corpus(shared_data, "cremad_av") / "data"
    flv = root / "1001_DFA_ANG_XX.flv"
    info = V.probe(flv)
    assert info.video_codec.startswith("vp6") and info.audio_codec.startswith("mp3")
    assert (info.width, info.height) == (480, 360)
    wins = list(V.iter_windows(flv))
    assert len(wins) == 1 and 10 <= len(wins[0].frames) <= 12
    assert wins[0].audio.size == pytest.approx(info.duration * 16000, rel=0.05)
    mp3 = list(V.iter_windows(root / "1002_DFA_ANG_XX.mp3"))
    assert mp3 and all(not w.frames and w.audio.size for w in mp3)


def test_cremad_reader_and_pairing(shared_data, tmp_path):
    from emotion_keras.data.video import read_cremad_video, read_video

    recs = read_video(corpus(shared_data, "cremad_av") / "data")
    assert len(recs) == 6 and {r.subject for r in recs} == {"1001"}
    assert {r.label for r in recs} == {"angry", "disgust", "fear", "happy", "neutral", "sad"}
    # the corpus layout: VideoFlash/*.flv paired with AudioWAV/*.wav
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "VideoFlash" / "1003_IEO_HAP_HI.flv").write_bytes(b"x")
    (tmp_path / "AudioWAV" / "1003_IEO_HAP_HI.wav").write_bytes(b"x")
    (r,) = read_cremad_video(tmp_path)
    assert r.label == "happy" and r.meta["audio_path"].endswith("1003_IEO_HAP_HI.wav")


def test_ravdess_video_folder_and_csv_readers(tmp_path):
    from emotion_keras.data.video import read_video

    actor = tmp_path / "rav" / "Actor_12"
    actor.mkdir(parents=True)
    for name in ("01-01-05-01-02-01-12.mp4", "02-01-03-02-01-01-12.mp4", "01-01-02-01-01-01-12.mp4"):
        (actor / name).write_bytes(b"x")
    recs = read_video(tmp_path / "rav")
    assert [(r.label, r.subject) for r in recs] == [("calm", "12"), ("angry", "12")]
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "a.webm").write_bytes(b"x")
    csv = tmp_path / "clips.csv"
    csv.write_text("file,emotion,speaker\nhappy/a.webm,joy,s1\n")
    (r,) = read_video(csv)
    assert r.label == "happy" and r.subject == "s1"
    with pytest.raises(InputError):
        read_video(tmp_path / "nothing_here")


def test_ravdess_au_pairs(shared_data):
    from emotion_keras.data.video import read_ravdess_au

    root = corpus(shared_data, "ravdess_face_au")
    corpus(shared_data, "ravdess_speech")
    recs, au, cols = read_ravdess_au(root / "au.csv", actors=[1, 2])
    assert au.shape == (len(recs), 35) and len(cols) == 35 and len(recs) == 120
    assert {r.subject for r in recs} == {"1", "2"}
    assert all(r.path.exists() and r.path.parent.name == f"Actor_{int(r.subject):02d}" for r in recs)
