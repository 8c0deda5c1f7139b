import numpy as np
import pytest

from emotion_keras.data.records import Record, fingerprint, group_kfold, group_split, subjects_of


def _records(n_subjects=10, per=6):
    return [Record(label="happy" if i % 2 else "sad", subject=f"{s:02d}", array=np.full(2, s * per + i))
            for s in range(1, n_subjects + 1) for i in range(per)]


def test_group_split_never_shares_a_subject():
    tr, te = group_split(_records(), test_size=0.2, seed=3)
    assert set(subjects_of(tr)).isdisjoint(subjects_of(te))
    assert len(subjects_of(te)) == 2 and len(tr) + len(te) == 60


def test_group_kfold_holds_each_subject_out_once_in_order():
    folds = group_kfold(_records(20, 2), k=5)
    held = [subjects_of(te) for _, te in folds]
    assert held[0] == ["01", "02", "03", "04"] and held[-1] == ["17", "18", "19", "20"]
    assert sorted(s for h in held for s in h) == [f"{i:02d}" for i in range(1, 21)]
    for tr, te in folds:
        assert set(subjects_of(tr)).isdisjoint(subjects_of(te))


def test_split_without_subjects_is_an_error():
    with pytest.raises(ValueError, match="no subject"):
        group_split([Record(label="sad"), Record(label="happy", subject="1")])


def test_fingerprint_changes_with_content_and_label():
    recs = _records(2, 2)
    fp = fingerprint(recs)
    assert fp == fingerprint(_records(2, 2))
    recs[0].label = "angry"
    assert fingerprint(recs) != fp
