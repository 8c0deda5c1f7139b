"""Speech corpus readers: real RAVDESS and CREMA-D folders, synthetic TESS/SAVEE/EmoDB/folder/CSV."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from conftest import corpus
from emotion_keras.data.records import group_kfold, group_split
from emotion_keras.data.speech import (parse_spec, read_csv, read_emodb, read_folder, read_ravdess,
                                       read_savee, read_speech, read_tess, select_classes)
from emotion_keras.errors import InputError
from emotion_keras.labels import LabelError


def _wav(path, seconds=0.5, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), sr)
    return path


# ---------------------------------------------------------------- real corpora

def test_ravdess_real(shared_data):
    root = corpus(shared_data, "ravdess_speech")
    records = read_speech(root)  # kind guessed from the file names
    assert len(records) == 1200
    assert {r.dataset for r in records} == {"ravdess"}
    assert len({r.subject for r in records}) == 20
    counts = Counter(r.label for r in records)
    assert set(counts) == {"neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"}
    assert counts["neutral"] == 80 and counts["calm"] == 160
    r = next(x for x in records if x.path.name == "03-01-05-02-01-01-12.flac")
    assert (r.label, r.subject, r.meta["intensity"], r.meta["gender"]) == ("angry", "12", "strong", "female")
    assert len(read_ravdess(root, include_calm=False)) == 1040
    assert len(read_speech(f"ravdess:{root}", include_calm=False)) == 1040


def test_cremad_real_mp3_and_wav(shared_data):
    root = corpus(shared_data, "cremad_av")
    mp3 = read_speech(f"cremad:{root / 'data'}")  # the FLV videos are not audio files: not listed
    assert len(mp3) == 6 and {r.path.suffix for r in mp3} == {".mp3"} and {r.subject for r in mp3} == {"1002"}
    wav = read_speech(root / "resampled")
    assert len(wav) == 12 and {r.subject for r in wav} == {"1001", "1002"}
    assert set(r.label for r in wav) == {"angry", "disgust", "fear", "happy", "neutral", "sad"}


def test_cremad_csv_manifest_skips_missing_rows(shared_data):
    root = corpus(shared_data, "cremad_av")
    with pytest.warns(UserWarning, match="missing"):
        records = read_speech(root / "label.csv")
    assert len(records) == 12
    assert {r.subject for r in records} == {"1001", "1002"}  # speakers parsed from CREMA-D names
    assert all(r.path.is_file() for r in records)


# ---------------------------------------------------------------- synthetic corpora

def test_tess(tmp_path):
    for spk in ("OAF", "YAF"):
        for emo in ("angry", "ps", "neutral"):
            _wav(tmp_path / f"{spk}_{emo}" / f"{spk}_back_{emo}.wav")
    records = read_speech(tmp_path)
    assert parse_spec(tmp_path)[0] == "tess"
    assert len(records) == 6 and {r.subject for r in records} == {"OAF", "YAF"}
    assert Counter(r.label for r in records) == {"angry": 2, "surprise": 2, "neutral": 2}
    assert len(read_tess(tmp_path)) == 6


def test_savee_flat_and_nested(tmp_path):
    _wav(tmp_path / "flat" / "DC_a01.wav")
    _wav(tmp_path / "flat" / "JE_sa15.wav")
    _wav(tmp_path / "nested" / "KL" / "su03.wav")
    flat = read_savee(tmp_path / "flat")
    assert {(r.subject, r.label) for r in flat} == {("DC", "angry"), ("JE", "sad")}
    nested = read_speech(f"savee:{tmp_path / 'nested'}")
    assert [(r.subject, r.label) for r in nested] == [("KL", "surprise")]


def test_emodb_with_and_without_boredom(tmp_path):
    for name in ("03a01Fa.wav", "08b02La.wav", "16a05Wb.wav"):
        _wav(tmp_path / name)
    records = read_speech(tmp_path)
    assert {(r.subject, r.label) for r in records} == {("03", "happy"), ("08", "boredom"), ("16", "angry")}
    assert {r.label for r in read_emodb(tmp_path, include_boredom=False)} == {"happy", "angry"}


def test_label_folders_and_bad_folder(tmp_path):
    _wav(tmp_path / "ok" / "happiness" / "a.wav")
    _wav(tmp_path / "ok" / "Angry" / "1001_DFA_ANG_XX.wav")
    records = read_folder(tmp_path / "ok")
    assert {r.label for r in records} == {"happy", "angry"}
    assert {r.subject for r in records} == {None, "1001"}  # speaker only where the name says it
    _wav(tmp_path / "bad" / "happy" / "a.wav")
    _wav(tmp_path / "bad" / "lunch" / "b.wav")
    with pytest.raises(LabelError, match="lunch"):
        read_folder(tmp_path / "bad")


def test_csv_manifest(tmp_path):
    _wav(tmp_path / "audio" / "a.wav")
    _wav(tmp_path / "audio" / "b.flac")
    (tmp_path / "m.csv").write_text("file,emotion,speaker,split\naudio/a.wav,sadness,s1,train\n"
                                    "audio/b,fearful,s2,test\n")
    records = read_csv(tmp_path / "m.csv")
    assert [(r.label, r.subject, r.split, r.path.suffix) for r in records] == [
        ("sad", "s1", "train", ".wav"), ("fear", "s2", "test", ".flac")]
    (tmp_path / "bad.csv").write_text("file,emotion\naudio/a.wav,meh\n")
    with pytest.raises(LabelError, match="meh"):
        read_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="path column"):
        read_csv(tmp_path / "cols.csv")


def test_bad_specs(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_speech(tmp_path / "nope")
    with pytest.raises(InputError, match="unknown corpus kind"):
        read_speech("voxceleb:/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no audio"):
        read_speech(tmp_path / "empty")
    with pytest.raises(InputError, match="no ravdess"):
        read_speech(f"ravdess:{tmp_path / 'empty'}")


def test_several_specs_prefix_speakers(tmp_path):
    _wav(tmp_path / "emodb" / "03a01Fa.wav")
    _wav(tmp_path / "rav" / "Actor_03" / "03-01-03-01-01-01-03.wav")
    records = read_speech(f"emodb:{tmp_path / 'emodb'},ravdess:{tmp_path / 'rav'}")
    assert sorted(r.subject for r in records) == ["emodb:03", "ravdess:03"]  # two people, two groups


def test_grouped_splits_never_share_a_speaker(shared_data):
    records = read_speech(corpus(shared_data, "ravdess_speech"))
    for seed in range(3):
        train, val = group_split(records, 0.2, seed=seed)
        assert not {r.subject for r in train} & {r.subject for r in val}
        assert len({r.subject for r in val}) == 4
    folds = group_kfold(records, 5)
    assert [sorted({int(r.subject) for r in val}) for _, val in folds] == [
        [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]
    for train, val in folds:
        assert not {r.subject for r in train} & {r.subject for r in val}
    assert len(select_classes(records, ["anger", "happy"])) == 320
