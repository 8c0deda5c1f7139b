"""FER+ reader: the paper's two label modes, the left-out faces, and named errors for bad files."""

import numpy as np
import pytest
from conftest import corpus
from PIL import Image

from emotion_keras.data.faces import detect_kind, read_faces
from emotion_keras.data.ferplus import majority_label, read_ferplus_split, soft_targets, vote_distribution
from emotion_keras.errors import InputError

#        neu hap sur sad ang dis fea con unk nf
VOTES = {"fer0000000.png": [4, 0, 0, 1, 3, 2, 0, 0, 0, 0],   # 4 of 9 after the single vote: no majority
         "fer0000001.png": [9, 0, 0, 1, 0, 0, 0, 0, 0, 0],   # neutral
         "fer0000002.png": [0, 6, 2, 0, 0, 0, 0, 0, 2, 0],   # happy 6 of 10
         "fer0000003.png": [1, 0, 0, 0, 0, 0, 0, 0, 9, 0],   # unknown
         "fer0000004.png": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
         "fer0000005.png": [0, 0, 0, 0, 0, 0, 0, 7, 0, 3]}   # contempt


def _corpus(tmp_path, rows=None, folder="FER2013Train"):
    d = tmp_path / folder
    d.mkdir(parents=True)
    rows = rows or VOTES
    for name in rows:
        Image.fromarray(np.full((48, 48), 100, np.uint8)).save(d / name)
    (d / "label.csv").write_text("".join(f'{n},"(0, 0, 48, 48)",{",".join(map(str, v))}\n'
                                         for n, v in rows.items()))
    return d


def test_majority_rule_drops_single_votes_and_unclear_faces():
    assert majority_label([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) == (None, "no clear majority")
    assert majority_label([5, 0, 0, 1, 3, 1, 0, 0, 0, 0]) == ("neutral", "")  # 5 of 8 once singles go
    assert majority_label([1, 0, 0, 0, 0, 0, 0, 0, 9, 0]) == (None, "unknown")
    assert majority_label([0] * 9 + [10]) == (None, "not a face")
    dist, _ = vote_distribution([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])
    assert dist == pytest.approx({"neutral": 4 / 9, "angry": 3 / 9, "disgust": 2 / 9})


def test_reader_modes_and_left_out_counts(tmp_path):
    d = _corpus(tmp_path)
    recs, left = read_ferplus_split(d, "train", "majority")
    assert [(r.path.name, r.label) for r in recs] == [("fer0000001.png", "neutral"), ("fer0000002.png", "happy"),
                                                      ("fer0000005.png", "contempt")]
    assert left == {"no clear majority": 1, "unknown": 1, "not a face": 1}
    soft, left = read_ferplus_split(d, "train", "probability")
    assert len(soft) == 4 and left == {"unknown": 1, "not a face": 1}
    first = soft[0]
    assert first.label == "neutral" and first.meta["soft"]["angry"] == pytest.approx(3 / 9)
    # validation faces are majority-labelled whatever the mode
    val, _ = read_ferplus_split(d, "validation", "probability")
    assert all("soft" not in r.meta for r in val)
    assert detect_kind(tmp_path) == "ferplus"
    assert {r.split for r in read_faces(f"ferplus-probability:{tmp_path}")} == {"train"}


def test_soft_targets_renormalise_over_model_classes(tmp_path):
    recs, _ = read_ferplus_split(_corpus(tmp_path), "train", "probability")
    classes = ["angry", "disgust", "neutral"]
    kept = [r for r in recs if r.label in classes]
    y = soft_targets(kept, [r.name for r in kept], classes)
    assert y.shape == (2, 3) and np.allclose(y.sum(1), 1)
    assert y[0] == pytest.approx([3 / 9, 2 / 9, 4 / 9])
    assert y[1] == pytest.approx([0, 0, 1])  # 9 neutral + a single sad vote dropped


def test_training_targets_are_votes_where_the_corpus_has_them_else_indices(tmp_path):
    from emotion_keras.data.ferplus import training_targets
    from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces

    recs, _ = read_ferplus_split(_corpus(tmp_path), "train", "probability")
    classes = ["angry", "disgust", "neutral"]
    kept = [r for r in recs if r.label in classes]
    faces = prepare_faces(kept, FacePrepConfig(), progress=False)
    assert training_targets(kept, faces, classes) == pytest.approx(soft_targets(kept, faces.names, classes))
    for r in kept:
        r.meta.pop("soft")  # the same faces, hard-labelled (as FER2013 or CK+ are)
    y = training_targets(kept, faces, classes)
    assert y.ndim == 1 and y.tolist() == [classes.index(lab) for lab in faces.labels]


def test_malformed_row_and_missing_image_name_the_line(tmp_path):
    d = _corpus(tmp_path)
    with open(d / "label.csv", "a") as f:
        f.write('fer0000009.png,"(0, 0, 48, 48)",1,2,x,0,0,0,0,0,0,0\n')
    with pytest.raises(InputError, match=r"label.csv.*line 7.*not integers"):
        read_ferplus_split(d, "train")
    d2 = _corpus(tmp_path / "b", {"fer0000001.png": [9, 0, 0, 1, 0, 0, 0, 0, 0, 0]})
    with open(d2 / "label.csv", "a") as f:
        f.write('missing.png,"(0, 0, 48, 48)",9,0,0,1,0,0,0,0,0,0\n')
    with pytest.raises(InputError, match=r"line 2.*'missing.png' not found"):
        read_ferplus_split(d2, "train")
    with pytest.raises(InputError, match="expected 12 fields"):
        (d2 / "label.csv").write_text("fer0000001.png,1,2\n")
        read_ferplus_split(d2, "train")


def test_real_ferplus(shared_data):
    root = corpus(shared_data, "ferplus")
    recs = read_faces(f"ferplus:{root}")
    splits = {s: [r for r in recs if r.split == s] for s in ("train", "validation")}
    assert 24_000 < len(splits["train"]) < 28_558 and 3_000 < len(splits["validation"]) < 3_579
    assert {r.label for r in recs} == {"angry", "contempt", "disgust", "fear", "happy", "neutral", "sad",
                                       "surprise"}


def test_added_corpus_trains_beside_ferplus_votes_and_never_validates(tmp_path):
    """``--add-data``: FER2013's own labels train beside FER+ votes; FER2013's PublicTest (FER+'s
    FER2013Valid faces) stays out of training, and the hard labels become one-hot targets."""
    from emotion_keras.pipelines.splits import load_face_split

    ferplus = tmp_path / "ferplus"
    _corpus(ferplus, {"fer0000001.png": [9, 0, 0, 1, 0, 0, 0, 0, 0, 0],
                      "fer0000002.png": [0, 6, 2, 0, 0, 0, 0, 0, 2, 0]})
    _corpus(ferplus, {"fer0000010.png": [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]}, folder="FER2013Valid")
    fer = tmp_path / "fer2013"
    for split, label, n in (("train", "happy", 2), ("train", "neutral", 1), ("validation", "happy", 3)):
        (fer / split / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((48, 48), 90 + i, np.uint8)).save(fer / split / label / f"{i}.jpg")

    split = load_face_split(f"ferplus-probability:{ferplus}", add_data=[f"fer2013:{fer}"])
    assert sorted((r.dataset, r.split) for r in split.train) == [("fer2013", "train")] * 3 + [("ferplus", "train")] * 2
    assert [(r.dataset, r.path.name) for r in split.val] == [("ferplus", "fer0000010.png")]
    assert "FER2013Train + FER2013 Training (5 images)" in split.protocol
    assert split.data["add_data"] == [f"fer2013:{fer}"] and split.data["corpus"] == "FER2013 + FER+"
    classes = ["happy", "neutral", "surprise"]
    y = soft_targets(split.train, [r.name for r in split.train], classes)
    by_name = dict(zip((r.path.name for r in split.train), y))
    assert by_name["fer0000002.png"] == pytest.approx([6 / 8, 0, 2 / 8])  # votes, the unknown ones dropped
    assert by_name["0.jpg"].tolist() in ([1, 0, 0], [0, 1, 0]) and np.allclose(y.sum(1), 1)
    # a corpus with nothing but held-out splits adds nothing, and says so by name
    only_val = tmp_path / "only_val"
    _corpus(only_val, {"fer0000010.png": [0, 8, 2, 0, 0, 0, 0, 0, 0, 0]}, folder="FER2013Valid")
    with pytest.raises(InputError, match="only_val.*no training records to add"):
        load_face_split(f"ferplus-probability:{ferplus}", add_data=[f"ferplus:{only_val}"])


def test_match_faces_finds_each_face_in_its_jpeg_copy_and_no_stranger():
    import io

    from emotion_keras.data.ferplus import match_faces

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (30, 48, 48), dtype=np.uint8)
    order = rng.permutation(30)[:25]  # 25 of them, shuffled and JPEG-coded, as FER2013's folders hold them

    def jpeg(x):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, format="JPEG", quality=90)
        return np.asarray(Image.open(buf))

    reference = np.stack([jpeg(faces[i]) for i in order])
    at = match_faces(faces[..., None], reference)
    assert [order[j] if j >= 0 else -1 for j in at] == [i if i in order else -1 for i in range(30)]
