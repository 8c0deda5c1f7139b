"""Face preprocessing: crop path, detection path with the no-face and unreadable reports, the cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import corpus
from emotion_keras.config import ConfigError
from emotion_keras.data.faces import read_faces
from emotion_keras.data.records import Record
from emotion_keras.preprocess.face_align import GEOMETRY_DIM
from emotion_keras.preprocess.faces import FacePrepConfig, prepare_faces, resize_crop


def test_config_validation():
    with pytest.raises(ConfigError, match="size"):
        FacePrepConfig(size=32)
    with pytest.raises(ConfigError, match="detect"):
        FacePrepConfig(detect="sometimes")
    cfg = FacePrepConfig.from_dict({"size": 64, "grayscale": False})
    assert cfg.shape == (64, 64, 3)
    assert FacePrepConfig.from_dict(cfg.to_dict()) == cfg


def test_resize_crop_modes():
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[:, :40] = 255
    grey = resize_crop(rgb, FacePrepConfig(size=48))
    assert grey.shape == (48, 48, 1) and grey.dtype == np.uint8
    colour = resize_crop(rgb[..., 0], FacePrepConfig(size=64, grayscale=False))
    assert colour.shape == (64, 64, 3)


def test_ckplus_crops_and_cache(shared_data, tmp_path):
    records = read_faces(corpus(shared_data, "ckplus48"))[::20]
    cfg = FacePrepConfig()
    first = prepare_faces(records, cfg, cache_dir=tmp_path, progress=False)
    assert not first.from_cache
    assert first.images.shape == (len(records), 48, 48, 1) and first.images.dtype == np.uint8
    assert first.labels == [r.label for r in records]
    assert first.subjects == [r.subject for r in records]
    assert first.no_face == [] and first.failed == []
    # The crop is the file, resized: a 48x48 CK+ image comes back unchanged.
    assert np.array_equal(first.images[0, ..., 0], cv2.imread(str(records[0].path), cv2.IMREAD_GRAYSCALE))
    second = prepare_faces(records, cfg, cache_dir=tmp_path, progress=False)
    assert second.from_cache and np.array_equal(second.images, first.images)
    assert second.subjects == first.subjects
    other = prepare_faces(records, cfg.replace(size=64), cache_dir=tmp_path, progress=False)
    assert not other.from_cache and other.images.shape[1:] == (64, 64, 1)
    assert len(list(tmp_path.glob("faces-*.npz"))) == 2


def test_array_records_with_geometry(tmp_path):
    records = [Record(label="happy", array=np.full((48, 48), i * 40, np.uint8), dataset="fer2013",
                      meta={"cropped": True, "row": i}) for i in range(3)]
    out = prepare_faces(records, FacePrepConfig(geometry=True), cache_dir=tmp_path, progress=False)
    assert out.geometry.shape == (3, GEOMETRY_DIM) and not out.geometry.any()
    assert not out.geometry_valid.any()  # crops carry no landmarks: zeros, flagged
    assert set(out.inputs()) == {"image", "geometry"}
    assert out.names == ["fer2013#0", "fer2013#1", "fer2013#2"]


def test_wild_photos_no_face_and_unreadable(shared_data, tmp_path, capsys):
    """Real photos go through detection; photos without a face and a corrupt file are listed."""
    wild = read_faces(corpus(shared_data, "wild_faces"))
    photos = [r for r in wild if min(cv2.imread(str(r.path)).shape[:2]) > 200][:4]
    # A real photo of the corpus where MTCNN finds no face (face turned away, blurred).
    hard = next(r for r in wild if r.path.name == "Jackie_Chan_0006.jpg")
    blank = tmp_path / "blank.jpg"
    noise = np.random.default_rng(0).integers(90, 110, (300, 300, 3), dtype=np.uint8)
    cv2.imwrite(str(blank), cv2.GaussianBlur(noise, (9, 9), 3))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    records = photos + [hard, Record(label="happy", path=blank, dataset="t"),
                        Record(label="sad", path=corrupt, dataset="t")]
    out = prepare_faces(records, FacePrepConfig(geometry=True), cache_dir=tmp_path, progress=True)
    assert out.no_face == [str(hard.path), str(blank)]
    assert [f for f, _ in out.failed] == [str(corrupt)]
    assert len(out) == len(photos) and out.names == [r.name for r in photos]
    assert out.geometry_valid.all() and np.isfinite(out.geometry).all() and out.geometry.any()
    err = capsys.readouterr().err
    assert "no face found in 2 image" in err and "blank.jpg" in err and "corrupt.jpg" in err
    # detect="never": every file is a crop; the no-face photo is kept (resized whole).
    never = prepare_faces(records[-2:-1], FacePrepConfig(detect="never"), cache_dir=tmp_path, progress=False)
    assert len(never) == 1 and never.no_face == []
