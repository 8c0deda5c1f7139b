"""Numpy MTCNN: real-photo detection rate, API contract, min_face_size, backend independence,
and agreement with the ``mtcnn`` package itself (TensorFlow backend only: it crashes under JAX)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import corpus
from emotion_keras.preprocess.face_detect import KEYPOINT_NAMES, Face, FaceDetector
from emotion_keras.preprocess.images import load_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


@pytest.fixture(scope="module")
def wild_photos(shared_data):
    files = sorted((corpus(shared_data, "wild_faces") / "images").glob("*.jpg"))
    assert len(files) >= 40
    return files


@pytest.fixture(scope="module")
def video_frame(shared_data):
    """A real 640x480 photo with one face: a CREMA-D frame (480x360) scaled up."""
    import av

    clip = corpus(shared_data, "cremad_av") / "data" / "1001_DFA_ANG_XX.flv"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 20:
                rgb = frame.to_ndarray(format="rgb24")
                break
    return cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)


def test_detection_rate_on_wild_photos(detector, wild_photos):
    sample = wild_photos[::9][:40]
    found = [bool(detector.detect(load_image(p))) for p in sample]
    rate = sum(found) / len(sample)
    print(f"\nwild_faces detection rate: {rate:.3f} ({sum(found)}/{len(sample)})")
    assert rate >= 0.85


def test_face_contract(detector, wild_photos):
    img = load_image(wild_photos[0])
    faces = detector.detect(img)
    assert faces and all(isinstance(f, Face) for f in faces)
    assert [f.confidence for f in faces] == sorted((f.confidence for f in faces), reverse=True)
    h, w = img.shape[:2]
    for f in faces:
        x, y, bw, bh = f.box
        assert all(isinstance(v, int) for v in f.box)
        assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
        assert 0.0 < f.confidence <= 1.0
        assert tuple(f.keypoints) == KEYPOINT_NAMES
        assert all(isinstance(c, float) for pt in f.keypoints.values() for c in pt)
        assert f.keypoints["left_eye"][0] < f.keypoints["right_eye"][0]
        d = f.to_dict()
        assert d["box"] == list(f.box) and set(d["keypoints"]) == set(KEYPOINT_NAMES)
    # greyscale input is accepted and finds the same face
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert detector.detect(grey)


def test_no_face_and_bad_shapes(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((200, 300, 3), 127, np.uint8)) == []
    assert detector.detect(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((5, 5, 3), np.uint8)) == []
    with pytest.raises(ValueError):
        detector.detect(np.zeros((10, 10, 2), np.uint8))


def test_min_face_size_and_max_side(video_frame):
    base = FaceDetector().detect(video_frame)
    assert len(base) == 1
    face_w = base[0].box[2]
    assert 80 < face_w < 250
    # min_face_size really bounds the search (it is ignored by mtcnn 1.0.0)
    assert FaceDetector(min_face_size=int(face_w * 2)).detect(video_frame) == []
    assert len(FaceDetector(min_face_size=int(face_w * 0.8)).detect(video_frame)) == 1
    # a 3x larger copy is downscaled to max_side and the box is scaled back to its coordinates
    big = cv2.resize(video_frame, (1920, 1440), interpolation=cv2.INTER_LINEAR)
    faces = FaceDetector(max_side=640).detect(big)
    assert len(faces) == 1
    assert np.allclose(np.array(faces[0].box), 3 * np.array(base[0].box), atol=12)
    eye = np.array(faces[0].keypoints["left_eye"])
    assert np.allclose(eye, 3 * np.array(base[0].keypoints["left_eye"]), atol=9)


def test_no_keras_or_tensorflow_import(tmp_path, wild_photos):
    """The detector never touches Keras, so results cannot depend on the backend."""
    code = (
        "import sys, json\n"
        "from emotion_keras.preprocess.images import load_image\n"
        "from emotion_keras.preprocess.face_detect import FaceDetector\n"
        f"faces = FaceDetector().detect(load_image({str(wild_photos[3])!r}))\n"
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'mtcnn') if m in sys.modules]\n"
        "print(json.dumps({'bad': bad, 'faces': [f.to_dict() for f in faces]}))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bad"] == []
    here = [f.to_dict() for f in FaceDetector().detect(load_image(wild_photos[3]))]
    assert result["faces"] == here  # identical under this test run's backend and a keras-free process


def test_matches_mtcnn_package(request, wild_photos):
    backend = os.environ.get("KERAS_BACKEND") or request.getfixturevalue("backend")
    if backend != "tensorflow":
        pytest.skip("the mtcnn package's tf.keras networks crash under the JAX backend")
    mtcnn = pytest.importorskip("mtcnn")
    reference = mtcnn.MTCNN()
    mine = FaceDetector(min_face_fraction=0.0, pad_retry=False, max_side=10_000)
    ious, kp_errors, disagree = [], [], []
    for path in wild_photos[::37][:8]:
        img = load_image(path)
        ours = mine.detect(img)
        theirs = reference.detect_faces(img, min_face_size=20, threshold_pnet=0.6,
                                        threshold_rnet=0.7, threshold_onet=0.7)
        if bool(ours) != bool(theirs):  # borderline photos can fall either side of a threshold
            disagree.append(path.name)
        if not (ours and theirs):
            continue
        a, b = np.array(ours[0].box, float), np.array(theirs[0]["box"], float)
        inter = (max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
                 * max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])))
        ious.append(inter / (a[2] * a[3] + b[2] * b[3] - inter))
        pa = np.array([ours[0].keypoints[k] for k in KEYPOINT_NAMES])
        pb = np.array([theirs[0]["keypoints"][k] for k in KEYPOINT_NAMES], float)
        kp_errors.append(np.abs(pa - pb).max() / b[2])  # relative to the face width
        assert abs(ours[0].confidence - theirs[0]["confidence"]) < 0.1
    print(f"\nvs mtcnn: IoU min {min(ious):.3f} median {np.median(ious):.3f}; "
          f"keypoint error / face width max {max(kp_errors):.3f}")
    assert len(disagree) <= 1, disagree
    assert len(ious) >= 6
    assert min(ious) > 0.8 and np.median(ious) > 0.9
    assert max(kp_errors) < 0.08 and np.median(kp_errors) < 0.04


def test_several_faces_in_one_photo(detector, wild_photos):
    """A 2x2 mosaic of four 320x320 portraits (640x640): four separate faces, one per tile."""
    tiles = [cv2.resize(load_image(p), (320, 320), interpolation=cv2.INTER_AREA)
             for p in wild_photos[:40:10]]
    mosaic = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    faces = detector.detect(mosaic)
    cells = sorted({(int((f.box[0] + f.box[2] / 2) // 320), int((f.box[1] + f.box[3] / 2) // 320))
                    for f in faces})
    assert len(faces) == 4 and cells == [(0, 0), (0, 1), (1, 0), (1, 1)]
