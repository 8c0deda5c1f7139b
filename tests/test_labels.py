import pytest

from emotion_keras import labels


def test_aliases_map_to_canonical():
    assert labels.canonical("Anger") == "angry"
    assert labels.canonical("happiness") == "happy"
    assert labels.canonical("fearful") == "fear"
    assert labels.canonical("surprised") == "surprise"
    assert labels.canonical("sadness") == "sad"
    assert labels.canonical("calm") == "calm"


def test_corpus_codes_are_complete_and_canonical():
    for table in (labels.FER2013_CODES, labels.RAFDB_CODES, labels.JAFFE_CODES, labels.RAVDESS_CODES,
                  labels.CREMAD_CODES, labels.SAVEE_CODES, labels.EMODB_CODES):
        for name in table.values():
            assert name in labels.CANONICAL
    assert labels.map_labels(["1", "7"], labels.RAFDB_CODES) == ["surprise", "neutral"]


def test_unmappable_labels_are_named():
    with pytest.raises(labels.LabelError, match="extra1.*none|none.*extra1"):
        labels.map_labels(["anger", "extra1", "none"], source="cremad")


def test_class_list_keeps_canonical_order_and_to_indices_checks():
    classes = labels.class_list(["neutral", "anger", "happy"], include=["calm"])
    assert classes == ["angry", "happy", "neutral", "calm"]
    assert labels.to_indices(["happy", "calm"], classes).tolist() == [1, 3]
    with pytest.raises(labels.LabelError):
        labels.to_indices(["sad"], classes)
