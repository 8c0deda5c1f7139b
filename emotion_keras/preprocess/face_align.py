"""Face alignment (similarity transform to a canonical 5-point template), plain crops, geometry features.

Alignment puts the eyes exactly level (the rotation comes from the eye line, so a tilted head never
reaches the classifier tilted) and fixes scale and position by least squares over all five points,
which keeps the zoom stable when a turned head shortens the eye distance. The template is defined on
a unit square with the whole face inside (forehead to chin); ``margin`` adds context around it.

Images are RGB uint8 (H, W, 3) (greyscale (H, W) also accepted); outputs are uint8 (size, size, 3),
or (size, size, 1) with ``grayscale=True`` so they stack straight into a model's ``"image"`` input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Canonical positions on a unit square (x right, y down); "left_eye" is the eye on the image's left.
# Proportions are the median MTCNN landmark shape of the wild_faces photos (in eye distances: nose
# 0.57 below the eye line, mouth corners 1.13 below and 0.42 either side of the centre), scaled to
# an eye distance of 0.38 with the mouth at 80 % height: at margin 0 the framing matches the tight
# FER2013 / CK+ crops the face models are trained on; a margin adds forehead, chin and background.
TEMPLATE = np.array([[0.31, 0.37],    # left_eye
                     [0.69, 0.37],    # right_eye
                     [0.50, 0.587],   # nose
                     [0.34, 0.80],    # mouth_left
                     [0.66, 0.80]],   # mouth_right
                    dtype=np.float64)


def keypoints_array(keypoints) -> np.ndarray:
    """(5, 2) float64 from a keypoint dict, a ``Face`` (its ``.keypoints``) or a (5, 2) sequence."""
    if hasattr(keypoints, "keypoints"):
        keypoints = keypoints.keypoints
    if isinstance(keypoints, dict):
        missing = [k for k in KEYPOINT_NAMES if k not in keypoints]
        if missing:
            raise ValueError(f"keypoints lack {', '.join(missing)}")
        pts = np.array([keypoints[k] for k in KEYPOINT_NAMES], dtype=np.float64)
    else:
        pts = np.asarray(keypoints, dtype=np.float64)
    if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"expected 5 finite (x, y) keypoints, got array of shape {pts.shape}")
    return pts


def template_points(size: int, margin: float = 0.0) -> np.ndarray:
    """The canonical 5 points in a ``size`` x ``size`` output with ``margin`` (fraction per side)."""
    return ((TEMPLATE - 0.5) / (1.0 + 2.0 * margin) + 0.5) * size


def alignment_matrix(keypoints, size: int = 64, margin: float = 0.0) -> np.ndarray:
    """2x3 similarity matrix taking image points to the aligned output (see module doc)."""
    src = keypoints_array(keypoints)
    dst = template_points(size, margin)
    eye_vec = src[1] - src[0]
    if np.hypot(*eye_vec) < 1e-6:
        angle = 0.0
    else:
        angle = -math.atan2(eye_vec[1], eye_vec[0])  # rotate the eye line onto the horizontal
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    p = src @ rot.T
    pc, qc = p - p.mean(0), dst - dst.mean(0)
    denom = float((pc ** 2).sum())
    scale = float((pc * qc).sum()) / denom if denom > 1e-9 else 1.0
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    t = dst.mean(0) - scale * p.mean(0)
    return np.hstack([scale * rot, t[:, None]])


def transform_points(matrix: np.ndarray, points) -> np.ndarray:
    """Apply a 2x3 affine matrix to (n, 2) points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, keypoints, size: int = 64, margin: float = 0.0,
               grayscale: bool = False) -> np.ndarray:
    """Warp the face given by five keypoints onto the canonical template; uint8 output.

    ``size`` is the output side (48, 64, 96, 112, ...); ``margin`` the extra context per side as a
    fraction of the template square; out-of-image areas repeat the edge pixels (no black wedges).
    """
    img = _as_uint8_image(image)
    matrix = alignment_matrix(keypoints, size, margin)
    out = cv2.warpAffine(img, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return _finish(out, grayscale)


def crop_box(image: np.ndarray, box, size: int = 64, grayscale: bool = False,
             margin: float = 0.0) -> np.ndarray:
    """Square crop around an (x, y, w, h) box, resized to ``size``: the fallback without keypoints.

    The square has side ``max(w, h) * (1 + 2 * margin)`` around the box centre; parts outside the
    image repeat the edge. With ``box=(0, 0, W, H)`` this just squares and resizes a pre-cropped face.
    """
    img = _as_uint8_image(image)
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"empty box {tuple(box)}")
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    k = size / side
    # Map the square [cx - side/2, cx + side/2] onto [0, size] (pixel centres: -0.5 .. size - 0.5).
    off = 0.5 * (k - 1.0)  # pixel-centre convention of warpAffine
    matrix = np.array([[k, 0.0, (side / 2.0 - cx) * k + off], [0.0, k, (side / 2.0 - cy) * k + off]])
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:
        x0, y0 = int(math.floor(cx - side / 2)), int(math.floor(cy - side / 2))
        s = int(math.ceil(side))
        top, left = max(0, -y0), max(0, -x0)
        bottom = max(0, y0 + s - img.shape[0])
        right = max(0, x0 + s - img.shape[1])
        region = img[max(0, y0):y0 + s, max(0, x0):x0 + s]
        if top or left or bottom or right:
            region = cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_REPLICATE)
        out = cv2.resize(region, (int(size), int(size)), interpolation=cv2.INTER_AREA)
    else:
        out = cv2.warpAffine(img, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    return _finish(out, grayscale)


def _as_uint8_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _finish(out: np.ndarray, grayscale: bool) -> np.ndarray:
    if grayscale:
        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None]
    return out


# ------------------------------------------------------------------------------ geometry features
_PAIRS = [(i, j) for i in range(5) for j in range(i + 1, 5) if (i, j) != (0, 1)]

GEOMETRY_NAMES: tuple[str, ...] = (
    # 10: each keypoint relative to the face box, x in box widths and y in box heights from its corner
    *(f"{k}_box_{a}" for k in KEYPOINT_NAMES for a in ("x", "y")),
    # 6: nose and mouth corners in the eye frame (origin eye midpoint, unit eye distance, eyes level)
    *(f"{k}_eye_{a}" for k in KEYPOINT_NAMES[2:] for a in ("x", "y")),
    # 9: pairwise distances / eye distance (all pairs but eye-eye, which is 1 by definition)
    *(f"dist_{KEYPOINT_NAMES[i]}_{KEYPOINT_NAMES[j]}" for i, j in _PAIRS),
    # 4: head roll (rad), mouth line angle relative to the eye line (rad),
    #    yaw proxy (nose nearer one eye), pitch proxy (nose height between eye and mouth lines)
    "roll", "mouth_tilt", "yaw_proxy", "pitch_proxy",
    # 2: box height / width, eye distance / box width
    "box_aspect", "eye_dist_box",
)
GEOMETRY_DIM = len(GEOMETRY_NAMES)  # 31
"""Length of ``geometry_features``; order and meaning in ``GEOMETRY_NAMES``."""


def geometry_features(keypoints, box) -> np.ndarray:
    """Scale-, position- and roll-normalised face geometry as a float32 vector of ``GEOMETRY_DIM``.

    Cheap, interpretable cues (mouth width and opening relative to the eyes, eye-mouth distances,
    head pose proxies) that a model can take as its ``"geometry"`` input next to the pixels. Values
    are finite and clipped to [-10, 10] even for degenerate keypoints.
    """
    pts = keypoints_array(keypoints)
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    rel_box = ((pts - [x, y]) / [w, h]).ravel()

    eye_vec = pts[1] - pts[0]
    eye_dist = float(np.hypot(*eye_vec))
    unit = eye_dist if eye_dist > 1e-3 * max(w, h) else 0.4 * w  # degenerate eyes: typical ratio
    roll = math.atan2(eye_vec[1], eye_vec[0]) if eye_dist > 1e-6 else 0.0
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    eye_frame = ((pts - (pts[0] + pts[1]) / 2.0) @ rot.T) / unit
    dists = np.array([np.hypot(*(pts[i] - pts[j])) / unit for i, j in _PAIRS])

    mouth_vec = eye_frame[4] - eye_frame[3]
    mouth_tilt = math.atan2(mouth_vec[1], mouth_vec[0]) if np.hypot(*mouth_vec) > 1e-6 else 0.0
    yaw = (np.hypot(*(pts[2] - pts[0])) - np.hypot(*(pts[2] - pts[1]))) / unit
    mouth_y = (eye_frame[3, 1] + eye_frame[4, 1]) / 2.0
    pitch = eye_frame[2, 1] / mouth_y if abs(mouth_y) > 1e-3 else 0.0

    feats = np.concatenate([rel_box, eye_frame[2:].ravel(), dists,
                            [roll, mouth_tilt, yaw, pitch, h / w, eye_dist / w]])
    feats = np.nan_to_num(feats, nan=0.0, posinf=10.0, neginf=-10.0)
    return np.clip(feats, -10.0, 10.0).astype(np.float32)
