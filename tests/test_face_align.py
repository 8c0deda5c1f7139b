"""Alignment puts the eyes level at the template, crops have the promised shapes, geometry is sane."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from conftest import corpus
from emotion_keras.preprocess.face_align import (GEOMETRY_DIM, GEOMETRY_NAMES, KEYPOINT_NAMES,
                                                  align_face, alignment_matrix, crop_box,
                                                  geometry_features, template_points,
                                                  transform_points)
from emotion_keras.preprocess.face_detect import FaceDetector
from emotion_keras.preprocess.images import load_image

KP = {"left_eye": (40.0, 52.0), "right_eye": (80.0, 48.0), "nose": (61.0, 70.0),
      "mouth_left": (45.0, 92.0), "mouth_right": (77.0, 89.0)}


def test_matrix_levels_eyes_and_fixes_eye_distance():
    for size, margin in ((48, 0.0), (64, 0.1), (112, 0.25)):
        m = alignment_matrix(KP, size, margin)
        pts = transform_points(m, [KP[k] for k in KEYPOINT_NAMES])
        tpl = template_points(size, margin)
        assert abs(pts[0, 1] - pts[1, 1]) < 1e-6  # eyes exactly level
        assert np.abs(pts - tpl).max() < 0.08 * size  # all points near the template
        # a similarity: uniform scale, no shear
        a = m[:, :2]
        assert np.allclose(a @ a.T, np.eye(2) * (a[0] ** 2).sum(), atol=1e-9)


def test_align_shapes_and_dtypes():
    img = np.random.default_rng(0).integers(0, 256, (140, 120, 3), dtype=np.uint8)
    for size in (48, 64, 96, 112):
        out = align_face(img, KP, size=size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
    grey = align_face(img, KP, size=48, grayscale=True)
    assert grey.shape == (48, 48, 1) and grey.dtype == np.uint8
    assert align_face(img[:, :, 0], KP, size=48).shape == (48, 48, 3)  # greyscale input
    with pytest.raises(ValueError):
        align_face(img, {"left_eye": (1, 2)}, size=48)


def test_rotated_real_face_comes_out_level(shared_data):
    photos = sorted((corpus(shared_data, "wild_faces") / "images").glob("*.jpg"))
    img = load_image(photos[10])
    h, w = img.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)  # tilt the head by 25 degrees
    tilted = cv2.warpAffine(img, rot, (w, h), borderMode=cv2.BORDER_REPLICATE)
    detector = FaceDetector()
    face = detector.detect(tilted)[0]
    eyes = np.array([face.keypoints["left_eye"], face.keypoints["right_eye"]])
    assert abs(math.degrees(math.atan2(*(eyes[1] - eyes[0])[::-1]))) > 15  # really tilted
    aligned = align_face(tilted, face.keypoints, size=112, margin=0.2)
    again = detector.detect(aligned)
    assert again, "no face found again in the aligned crop"
    kp = again[0].keypoints
    dx, dy = np.subtract(kp["right_eye"], kp["left_eye"])
    assert abs(math.degrees(math.atan2(dy, dx))) < 6  # level within a few degrees
    tpl = template_points(112, 0.2)
    assert abs(math.hypot(dx, dy) - (tpl[1, 0] - tpl[0, 0])) < 0.2 * (tpl[1, 0] - tpl[0, 0])


def test_crop_box_precropped_and_off_edge():
    face48 = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    out = crop_box(face48, (0, 0, 48, 48), size=48, grayscale=True)
    assert out.shape == (48, 48, 1) and np.array_equal(out[:, :, 0], face48)  # identity
    assert crop_box(face48, (0, 0, 48, 48), size=64).shape == (64, 64, 3)
    img = np.random.default_rng(2).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    for box in ((-20, -10, 60, 80), (120, 70, 60, 60), (10, 10, 30, 90)):
        for size in (32, 64, 200):
            assert crop_box(img, box, size=size, margin=0.1).shape == (size, size, 3)
    # a box fully inside maps its centre to the crop centre (solid colour patch check)
    img[40:60, 60:80] = (255, 0, 0)
    out = crop_box(img, (60, 40, 20, 20), size=40)
    assert (out[5:35, 5:35] == (255, 0, 0)).all()
    with pytest.raises(ValueError):
        crop_box(img, (0, 0, 0, 10), size=32)


def test_geometry_features():
    box = (20, 30, 80, 90)
    f = geometry_features(KP, box)
    assert f.shape == (GEOMETRY_DIM,) == (len(GEOMETRY_NAMES),) and f.dtype == np.float32
    assert np.isfinite(f).all()
    # invariant to moving and scaling the whole face (keypoints and box together)
    moved = {k: (2.5 * x + 100, 2.5 * y - 7) for k, (x, y) in KP.items()}
    moved_box = (2.5 * 20 + 100, 2.5 * 30 - 7, 2.5 * 80, 2.5 * 90)
    assert np.allclose(geometry_features(moved, moved_box), f, atol=1e-5)
    # roll shows up in "roll" only, not in the eye-frame coordinates
    ang = math.radians(20)
    c, s = math.cos(ang), math.sin(ang)
    rolled = {k: (c * x - s * y, s * x + c * y) for k, (x, y) in KP.items()}
    g = geometry_features(rolled, box)
    i = GEOMETRY_NAMES.index
    assert abs(g[i("roll")] - f[i("roll")] - ang) < 1e-5
    eye_part = slice(i("nose_eye_x"), i("mouth_right_eye_y") + 1)
    assert np.allclose(g[eye_part], f[eye_part], atol=1e-5)
    # a wider mouth gives a larger mouth-corner distance
    smile = dict(KP, mouth_left=(38.0, 90.0), mouth_right=(84.0, 87.0))
    d = i("dist_mouth_left_mouth_right")
    assert geometry_features(smile, box)[d] > f[d]
    # degenerate input (all points equal, empty box) still gives finite values
    same = {k: (5.0, 5.0) for k in KEYPOINT_NAMES}
    assert np.isfinite(geometry_features(same, (0, 0, 0, 0))).all()
