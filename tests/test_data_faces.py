"""Face corpus readers: the real folders (counts, labels, subjects, splits) and synthetic fixtures for
the corpora not shipped here (FER2013 Kaggle CSV, RAF-DB, JAFFE)."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from conftest import corpus
from emotion_keras.data.faces import (detect_kind, parse_spec, read_ckplus, read_csv, read_faces,
                                      read_fer2013, read_folder, read_jaffe, read_rafdb)
from emotion_keras.errors import InputError
from emotion_keras.labels import BASIC, LabelError


def _png(path, size=(48, 48), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(size, value, np.uint8))
    return path


# ---------------------------------------------------------------- real corpora

def test_fer2013_folder(shared_data):
    records = read_faces(corpus(shared_data, "fer2013"))
    splits = Counter(r.split for r in records)
    assert splits == {"train": 28709, "validation": 3589}
    assert {r.label for r in records} == set(BASIC)
    assert all(r.dataset == "fer2013" and r.meta["cropped"] and r.subject is None for r in records[:50])
    train = Counter(r.label for r in records if r.split == "train")
    assert train["happy"] == 7215 and train["disgust"] == 436
    assert all(r.path.name.startswith("PublicTest_") for r in records if r.split == "validation")


def test_ckplus_subjects(shared_data):
    root = corpus(shared_data, "ckplus48")
    records = read_faces(f"ckplus:{root}")
    assert len(records) == 981
    counts = Counter(r.label for r in records)
    assert counts["contempt"] == 54 and counts["angry"] == 135 and "neutral" not in counts
    assert len({r.subject for r in records}) == 118
    r = next(r for r in records if r.path.name.startswith("S010_004"))
    assert r.subject == "S010" and r.label == "angry" and r.meta["cropped"]
    assert detect_kind(root) == "ckplus"


def test_wild_faces_csv(shared_data):
    root = corpus(shared_data, "wild_faces")
    records = read_faces(root)  # folder with labels.csv -> CSV manifest
    assert len(records) == 370
    assert Counter(r.label for r in records)["fear"] == 10
    assert all(r.path.is_file() and not r.meta.get("cropped") for r in records)
    assert read_faces(f"csv:{root / 'labels.csv'}")[0].path == records[0].path


def test_folder_spec_on_split_folder(shared_data):
    records = read_faces(f"folder:{corpus(shared_data, 'fer2013') / 'validation'}")
    assert len(records) == 3589 and records[0].split is None


# ---------------------------------------------------------------- FER2013 Kaggle CSV

def _fer_csv(path, rows):
    lines = ["emotion,pixels,Usage"]
    for code, value, usage in rows:
        lines.append(f"{code},{' '.join([str(value)] * 2304)},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fer2013_kaggle_csv(tmp_path):
    path = _fer_csv(tmp_path / "fer2013.csv",
                    [(0, 10, "Training"), (3, 200, "PublicTest"), (6, 255, "PrivateTest")])
    records = read_faces(path)
    assert parse_spec(path)[0] == "fer2013"
    assert [r.label for r in records] == ["angry", "happy", "neutral"]
    assert [r.split for r in records] == ["train", "validation", "test"]
    assert records[1].array.shape == (48, 48) and records[1].array.dtype == np.uint8
    assert int(records[2].array[0, 0]) == 255 and records[0].path is None
    assert records[0].name == "fer2013#0"
    assert len(read_fer2013(tmp_path)) == 3  # a folder holding fer2013.csv


def test_fer2013_csv_errors(tmp_path):
    with pytest.raises(LabelError, match="9"):
        read_fer2013(_fer_csv(tmp_path / "a.csv", [(9, 1, "Training")]))
    bad = tmp_path / "b.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    with pytest.raises(InputError, match="2304"):
        read_fer2013(bad)
    with pytest.raises(InputError, match="Usage"):
        read_fer2013(_fer_csv(tmp_path / "c.csv", [(0, 1, "Holdout")]))


# ---------------------------------------------------------------- RAF-DB

def _rafdb(root, aligned=True):
    lines = ["train_00001.jpg 5", "train_00002.jpg 4", "test_0001.jpg 7", "test_0002.jpg 1"]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for line in lines:
        name = line.split()[0]
        stem = name[:-4]
        if aligned:
            _png(root / "Image" / "aligned" / f"{stem}_aligned.jpg", (100, 100))
        _png(root / "Image" / "original" / name, (300, 240))
    return root


def test_rafdb_aligned_and_original(tmp_path):
    root = _rafdb(tmp_path / "basic")
    records = read_faces(root)
    assert detect_kind(root) == "rafdb"
    assert [r.label for r in records] == ["sad", "happy", "neutral", "surprise"]
    assert [r.split for r in records] == ["train", "train", "test", "test"]
    assert records[0].path.name == "train_00001_aligned.jpg" and records[0].meta["cropped"]
    original = read_rafdb(root, aligned=False)
    assert original[0].path.name == "train_00001.jpg" and not original[0].meta.get("cropped")


def test_rafdb_missing_image_and_bad_code(tmp_path):
    root = _rafdb(tmp_path / "r1")
    (root / "Image" / "aligned" / "test_0001_aligned.jpg").unlink()
    with pytest.raises(InputError, match="test_0001_aligned.jpg"):
        read_rafdb(root)
    root2 = _rafdb(tmp_path / "r2")
    (root2 / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 8\n")
    with pytest.raises(LabelError, match="8"):
        read_rafdb(root2)


# ---------------------------------------------------------------- JAFFE

def test_jaffe(tmp_path):
    for name in ("KA.AN1.39.tiff", "KA.HA2.30.tiff", "YM.SU1.58.tiff", "README.txt"):
        if name.endswith(".tiff"):
            _png(tmp_path / name, (256, 256))
        else:
            (tmp_path / name).write_text("x")
    records = read_faces(f"jaffe:{tmp_path}")
    assert detect_kind(tmp_path) == "jaffe"
    assert [(r.subject, r.label) for r in records] == [("KA", "angry"), ("KA", "happy"), ("YM", "surprise")]
    assert all(r.dataset == "jaffe" and not r.meta.get("cropped") for r in records)
    _png(tmp_path / "KA.XX1.40.tiff")
    with pytest.raises(LabelError, match="XX"):
        read_jaffe(tmp_path)


# ---------------------------------------------------------------- generic folder and CSV

def test_folder_labels_and_unknown_label(tmp_path):
    _png(tmp_path / "happiness" / "a.png")
    _png(tmp_path / "Anger" / "b.png")
    records = read_folder(tmp_path)
    assert sorted(r.label for r in records) == ["angry", "happy"]
    _png(tmp_path / "boring_stuff_x" / "c.png")
    with pytest.raises(LabelError, match="boring_stuff_x"):
        read_folder(tmp_path)


def test_folder_with_split_subfolders(tmp_path):
    _png(tmp_path / "train" / "sad" / "a.png")
    _png(tmp_path / "val" / "sad" / "b.png")
    records = read_faces(f"folder:{tmp_path}")
    assert sorted(r.split for r in records) == ["train", "validation"]


def test_csv_manifest(tmp_path):
    _png(tmp_path / "images" / "x.png")
    _png(tmp_path / "sub" / "y.png")
    (tmp_path / "labels.csv").write_text("image,emotion,subject\nx.png,HAPPINESS,p1\nsub/y.png,sadness,p2\n")
    records = read_csv(tmp_path / "labels.csv")
    assert [(r.label, r.subject, r.path.name) for r in records] == [("happy", "p1", "x.png"), ("sad", "p2", "y.png")]
    assert parse_spec(tmp_path)[0] == "csv"
    (tmp_path / "labels.csv").write_text("image,label\nmissing1.png,happy\nmissing2.png,sad\n")
    with pytest.raises(InputError, match="2 listed images are missing"):
        read_csv(tmp_path / "labels.csv")
    (tmp_path / "labels.csv").write_text("file_name,feeling\nx.png,happy\n")
    with pytest.raises(InputError, match="expected columns"):
        read_csv(tmp_path / "labels.csv")


def test_missing_paths(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_faces(tmp_path / "nope")
    with pytest.raises(InputError):
        read_ckplus(tmp_path / "nope")
    with pytest.raises(InputError, match="no images"):
        read_folder(tmp_path)


def test_val_fraction_holds_out_part_of_training_and_leaves_the_validation_split(tmp_path, capsys):
    """``--val-fraction``: epochs are chosen on a stratified part of FER2013 Training, so PublicTest
    (the corpus's validation split) is neither trained on nor used to choose anything."""
    from emotion_keras.cli import main
    from emotion_keras.config import ConfigError
    from emotion_keras.pipelines.splits import load_face_split

    fer = tmp_path / "fer2013"
    for split, label, n in (("train", "happy", 20), ("train", "sad", 10), ("validation", "happy", 5)):
        for i in range(n):
            _png(fer / split / label / f"{i}.jpg", value=10 + i)
    split = load_face_split(f"fer2013:{fer}", val_fraction=0.2, seed=3)
    assert Counter(r.label for r in split.val) == {"happy": 4, "sad": 2}  # a fifth of each class
    assert {r.split for r in split.train + split.val} == {"train"} and len(split.train) == 24
    assert not {r.path for r in split.train} & {r.path for r in split.val}
    assert split.data["validation"] == "fraction"
    assert "FER2013 Training, stratified random 20% hold-out (6 images, seed 3)" in split.protocol
    assert "trained on the rest of FER2013 Training (24 images)" in split.protocol
    assert [r.path for r in load_face_split(f"fer2013:{fer}", val_fraction=0.2, seed=3).val] == \
        [r.path for r in split.val]  # the seed fixes it: a resumed run validates on the same faces
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_face_split(f"fer2013:{fer}", val_fraction=1.5)
    # face train and tune face pass it on
    from emotion_keras.cli import build_parser
    from emotion_keras.commands import face as face_cmd, tune as tune_cmd

    args = build_parser("face").parse_args(["face", "train", "--data", f"fer2013:{fer}", "--val-fraction", "0.2",
                                            "--seed", "3"])
    assert [r.path for r in face_cmd._split_from_args(args).val] == [r.path for r in split.val]
    args = build_parser("tune").parse_args(["tune", "face", "--data", f"fer2013:{fer}", "--val-fraction", "0.2",
                                            "--seed", "3", "--verbose", "0"])
    assert "stratified random 20% hold-out" in tune_cmd.load_data(args).protocol
    # one way to choose the validation set at a time
    with pytest.raises(SystemExit):
        main(["face", "train", "--data", f"fer2013:{fer}", "--val-fraction", "0.1", "--val-split", "validation"])
    assert "not allowed with argument" in capsys.readouterr().err
