"""MTCNN face detection in plain numpy + OpenCV, so it behaves the same under every Keras backend.

The ``mtcnn`` 1.0.0 package builds its three networks as tf.keras models, which breaks when Keras
runs on JAX and costs a TensorFlow import. Here the same cascade (Zhang et al. 2016) runs on the
package's shipped weights with numpy convolutions (im2col + BLAS matmul), and nothing imports Keras:

1. downscale the photo so its long side is at most ``max_side`` (boxes are scaled back at the end);
2. P-Net, fully convolutional, over an image pyramid whose first level maps the smallest wanted face
   to P-Net's 12 px window (``min_face_size`` really bounds the pyramid, unlike mtcnn 1.0.0);
   per-level and cross-level NMS, box regression, squaring;
3. R-Net on 24x24 crops of all proposals in one batch: rescoring, regression, NMS;
4. O-Net on 48x48 crops in one batch: final score, box and five landmarks, NMS by min-area overlap.

Photos whose face fills the frame (pre-cropped heads, passport-style shots) give MTCNN no context
and are often missed; when nothing is found on such a small image it is retried once with a grey
border (``pad_retry``).

The weights are read once, read-only, from the installed ``mtcnn`` package (``assets/weights``,
joblib files of numpy arrays, as trusted as that package's code) without importing the package
(its ``__init__`` imports TensorFlow); nothing is downloaded.

Speed (``benchmarks/face_detect_bench.py``, docs/benchmarks/face_detect.md): about 20 ms of CPU for
a 640x480 photo with the defaults. BLAS and OpenCV run single-threaded during ``detect`` (see
``_single_threaded``). Results match the ``mtcnn`` package to a few pixels (tests/test_face_detect.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """One detected face, in the coordinates of the image given to ``detect``.

    ``box`` is clipped to the image; ``keypoints`` are not (a face cut by the border can have a
    mouth corner just outside). "left_eye" is the eye on the image's left side.
    """

    box: tuple[int, int, int, int]  # x, y, w, h (clipped to the image)
    confidence: float
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able form used by the CLI and recognisers."""
        return {"box": [int(v) for v in self.box], "confidence": float(self.confidence),
                "keypoints": {k: [float(x), float(y)] for k, (x, y) in self.keypoints.items()}}


# ----------------------------------------------------------------------------------------- weights
_WEIGHTS: dict[str, list[np.ndarray]] = {}
_LOCK = threading.Lock()


def weights_dir() -> Path:
    spec = importlib.util.find_spec("mtcnn")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'mtcnn' package (which ships the MTCNN weights) is not installed; "
                           "pip install mtcnn==1.0.0")
    return Path(list(spec.submodule_search_locations)[0]) / "assets" / "weights"


def _load_weights(net: str) -> list[np.ndarray]:
    with _LOCK:
        if net not in _WEIGHTS:
            import joblib  # a dependency of mtcnn; the files are joblib-pickled lists of arrays

            path = weights_dir() / f"{net}.lz4"
            if not path.is_file():
                raise RuntimeError(f"MTCNN weights not found at {path}")
            arrays = joblib.load(path)
            _WEIGHTS[net] = _prepare(arrays)
        return _WEIGHTS[net]


@contextlib.contextmanager
def _single_threaded():
    """Run BLAS and OpenCV on one thread for the duration of a detection.

    The matmuls here are small (tens of output channels); multi-threaded OpenBLAS spends more time
    spinning up and waiting than computing, and on a busy 2-core machine it was 10-20x slower.
    """
    global _POOL_CONTROLLER
    limiter = contextlib.nullcontext()
    if _POOL_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _POOL_CONTROLLER = ThreadpoolController()
        except Exception:  # no threadpoolctl: still correct, only slower on busy machines
            _POOL_CONTROLLER = False
    if _POOL_CONTROLLER:
        limiter = _POOL_CONTROLLER.limit(limits=1, user_api="blas")
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with limiter:
            yield
    finally:
        cv2.setNumThreads(cv_threads)


_POOL_CONTROLLER = None


# ------------------------------------------------------------------------------------- layer maths
# Activations are kept channels-first, batch second: (C, N, H, W). Then im2col is a stack of
# whole (N, oh, ow) planes (large contiguous copies, unlike NHWC's 3- to 16-float runs) and each
# convolution is one (Cout x K) @ (K x N*oh*ow) BLAS matmul.

def _prepare(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Reshape the Keras-ordered weights once: conv kernels HWIO -> (Cout, kh*kw*Cin)."""
    out = []
    for a in arrays:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == 4:
            kh, kw, cin, cout = a.shape
            a = np.ascontiguousarray(a.reshape(kh * kw * cin, cout).T).reshape(cout, kh, kw, cin)
        out.append(a)
    return out


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'valid' stride-1 convolution of (C, N, H, W) by a prepared (Cout, kh, kw, Cin) kernel."""
    cout, kh, kw, cin = w.shape
    _, n, h, wd = x.shape
    oh, ow = h - kh + 1, wd - kw + 1
    if kh == 1 and kw == 1:
        cols = x.reshape(cin, -1)
    else:
        cols = np.concatenate([x[:, :, i:i + oh, j:j + ow] for i in range(kh) for j in range(kw)]
                              ).reshape(kh * kw * cin, -1)
    out = w.reshape(cout, -1) @ cols
    out += b[:, None]
    return out.reshape(cout, n, oh, ow)


def _prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """max(x, 0) + alpha * min(x, 0) per channel (axis 0), in place on the fresh layer output."""
    a = alpha.reshape((-1,) + (1,) * (x.ndim - 1))
    neg = np.minimum(x, 0)
    np.maximum(x, 0, out=x)
    neg *= a
    x += neg
    return x


def _maxpool(x: np.ndarray, k: int, s: int, same: bool) -> np.ndarray:
    """Max pooling over (H, W) with TensorFlow's 'same'/'valid' output sizes ('same' pads with -inf)."""
    c, n, h, w = x.shape
    if same:
        oh, ow = -(-h // s), -(-w // s)
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)),
                       constant_values=-np.inf)
    else:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = None
    for i in range(k):
        for j in range(k):
            v = x[:, :, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s]
            out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out


def _face_prob(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of the 'face' class from 2-way logits on axis 0."""
    return 1.0 / (1.0 + np.exp(logits[0] - logits[1]))


def _pnet(x: np.ndarray):
    """x: (3, 1, H, W) -> regression (4, H', W'), face probability (H', W')."""
    w = _load_weights("pnet")
    x = _prelu(_conv(x, w[0], w[1]), w[2])
    x = _maxpool(x, 2, 2, same=True)
    x = _prelu(_conv(x, w[3], w[4]), w[5])
    x = _prelu(_conv(x, w[6], w[7]), w[8])
    reg = _conv(x, w[9], w[10])[:, 0]
    prob = _face_prob(_conv(x, w[11], w[12])[:, 0])
    return reg, prob


def _flatten(x: np.ndarray) -> np.ndarray:
    """(C, N, H, W) -> (N, W*H*C): the networks' Permute((2, 1, 3)) + Flatten over NHWC."""
    return np.ascontiguousarray(x.transpose(1, 3, 2, 0)).reshape(x.shape[1], -1)


def _dense_prelu(x: np.ndarray, w: np.ndarray, b: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    y = x @ w
    y += b
    neg = np.minimum(y, 0)
    np.maximum(y, 0, out=y)
    neg *= alpha
    y += neg
    return y


def _rnet(x: np.ndarray):
    """x: (3, N, 24, 24) -> regression (N, 4), face probability (N,)."""
    w = _load_weights("rnet")
    x = _prelu(_conv(x, w[0], w[1]), w[2])
    x = _maxpool(x, 3, 2, same=True)
    x = _prelu(_conv(x, w[3], w[4]), w[5])
    x = _maxpool(x, 3, 2, same=False)
    x = _prelu(_conv(x, w[6], w[7]), w[8])
    x = _dense_prelu(_flatten(x), w[9], w[10], w[11])
    return x @ w[12] + w[13], _face_prob((x @ w[14] + w[15]).T)


def _onet(x: np.ndarray):
    """x: (3, N, 48, 48) -> regression (N, 4), landmarks (N, 10: x1..x5, y1..y5), probability (N,)."""
    w = _load_weights("onet")
    x = _prelu(_conv(x, w[0], w[1]), w[2])
    x = _maxpool(x, 3, 2, same=True)
    x = _prelu(_conv(x, w[3], w[4]), w[5])
    x = _maxpool(x, 3, 2, same=False)
    x = _prelu(_conv(x, w[6], w[7]), w[8])
    x = _maxpool(x, 2, 2, same=True)
    x = _prelu(_conv(x, w[9], w[10]), w[11])
    x = _dense_prelu(_flatten(x), w[12], w[13], w[14])
    return x @ w[15] + w[16], x @ w[17] + w[18], _face_prob((x @ w[19] + w[20]).T)


# -------------------------------------------------------------------------------------- box maths
def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        overlap = inter / np.maximum(denom, 1e-12)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each (x1, y1, x2, y2) box to a square around its centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + 0.5 * (w - side)
    y1 = boxes[:, 1] + 0.5 * (h - side)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the networks' offsets, which are fractions of the box size (size = x2 - x1 + 1)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg * np.stack([w, h, w, h], axis=1)


def _crops(planar: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Normalised bilinear samples of each box at size x size, as (3, n, size, size) for the nets.

    ``planar`` is the uint8 image as (3, H, W). Sample points run from corner to corner of the box
    (like ``tf.image.crop_and_resize`` in the reference); points outside the image read as 0 after
    normalisation. Vectorised over all boxes: one gather per bilinear corner.
    """
    _, h, w = planar.shape
    t = np.arange(size, dtype=np.float32) / (size - 1)
    b = boxes.astype(np.float32)
    ys = b[:, 1:2] + t[None] * (b[:, 3:4] - b[:, 1:2])  # (n, size)
    xs = b[:, 0:1] + t[None] * (b[:, 2:3] - b[:, 0:1])
    inside = ((ys >= 0) & (ys <= h - 1))[:, :, None] & ((xs >= 0) & (xs <= w - 1))[:, None, :]
    y0f, x0f = np.floor(ys), np.floor(xs)
    fy = (ys - y0f)[None, :, :, None]
    fx = (xs - x0f)[None, :, None, :]
    y0 = np.clip(y0f.astype(np.int64), 0, h - 1)
    x0 = np.clip(x0f.astype(np.int64), 0, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)[:, :, None]
    x1 = np.minimum(x0 + 1, w - 1)[:, None, :]
    y0, x0 = y0[:, :, None], x0[:, None, :]
    top = planar[:, y0, x0] * (1 - fx) + planar[:, y0, x1] * fx
    bottom = planar[:, y1, x0] * (1 - fx) + planar[:, y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    out -= 127.5
    out *= 1.0 / 128.0
    out *= inside[None]
    return out


# --------------------------------------------------------------------------------------- detector
class FaceDetector:
    """MTCNN cascade; ``detect(rgb_uint8) -> list[Face]`` sorted by confidence (best first).

    ``min_face_size``: smallest face (longer box side) to report, in pixels of the image given to
    ``detect``; it sets the pyramid's first level and is then enforced on the final boxes.
    ``min_face_fraction``: also ignore faces smaller than this fraction of the image's shorter side
    (0.0 disables); the larger of the two limits wins. The default 0.08 (38 px in a 640x480 photo)
    keeps faces big enough to classify and makes detection about 2.5x faster than a fixed 20 px.
    Faces are never searched below P-Net's 12 px window in the (possibly downscaled) working image,
    i.e. below ``12 * long_side / max_side`` original pixels.
    ``thresholds``: P-Net, R-Net, O-Net face-probability thresholds.
    ``max_side``: longer side of the working image; bigger photos are downscaled first (speed).
    ``pad_retry``: retry small images with no detection once with a border added (see module doc).
    """

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7), max_side: int = 640,
                 min_face_fraction: float = 0.08, scale_factor: float = 0.709,
                 nms_thresholds=(0.5, 0.7, 0.7, 0.7), pad_retry: bool = True,
                 pad_retry_max_side: int = 400):
        if len(thresholds) != 3:
            raise ValueError("thresholds must be three values (P-Net, R-Net, O-Net)")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError("scale_factor must be in (0, 1)")
        self.min_face_size = float(min_face_size)
        self.min_face_fraction = float(min_face_fraction)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.max_side = int(max_side)
        self.scale_factor = float(scale_factor)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.pad_retry = bool(pad_retry)
        self.pad_retry_max_side = int(pad_retry_max_side)
        for net in ("pnet", "rnet", "onet"):
            _load_weights(net)  # fail now, clearly, rather than on the first image

    # -- public ------------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image (H, W, 3); greyscale (H, W) is accepted too."""
        img = _as_rgb(image)
        with _single_threaded():
            return self._detect_padded(img)

    def _detect_padded(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        faces = self._detect_array(img)
        if not faces and self.pad_retry and max(h, w) <= self.pad_retry_max_side:
            pad = int(round(0.3 * max(h, w)))
            grey = int(np.median(img))
            padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                        value=(grey, grey, grey))
            faces = [_shift(f, -pad, -pad, w, h) for f in self._detect_array(padded)]
            faces = [f for f in faces if f.box[2] > 1 and f.box[3] > 1]
        return faces

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.detect(image)

    # -- internals ---------------------------------------------------------------------------
    def _detect_array(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        work = img if scale == 1.0 else cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        min_face = max(self.min_face_size, self.min_face_fraction * min(h, w))
        boxes, points, scores = self._cascade(work, max(min_face * scale, 12.0))
        faces = []
        for b, p, s in zip(boxes / scale, points / scale, scores):
            if max(b[2] - b[0], b[3] - b[1]) < min_face:
                continue  # P-Net's coarsest window can still catch a smaller face: make the limit hard
            x1, y1 = max(0.0, b[0]), max(0.0, b[1])
            x2, y2 = min(float(w), b[2]), min(float(h), b[3])
            xi, yi = int(round(x1)), int(round(y1))
            box = (xi, yi, max(0, int(round(x2)) - xi), max(0, int(round(y2)) - yi))
            kp = {name: (float(p[i]), float(p[i + 5])) for i, name in enumerate(KEYPOINT_NAMES)}
            faces.append(Face(box=box, confidence=float(s), keypoints=kp))
        faces.sort(key=lambda f: -f.confidence)
        return faces

    def _cascade(self, img: np.ndarray, min_face: float):
        empty = (np.empty((0, 4)), np.empty((0, 10)), np.empty(0))
        planar = np.ascontiguousarray(img.transpose(2, 0, 1))  # (3, H, W) uint8 for the crops
        level = None
        h, w = img.shape[:2]
        t1, t2, t3 = self.thresholds
        nms_scale, nms_pnet, nms_rnet, nms_onet = self.nms_thresholds

        # Stage 1: P-Net over the pyramid.
        proposals = []
        scale = 12.0 / min_face
        while min(h, w) * scale >= 12:
            sh, sw = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            if level is None:  # first level from the photo, then each from the one before (5x faster)
                level = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
                level -= 127.5
                level *= 1.0 / 128.0
            else:
                level = cv2.resize(level, (sw, sh), interpolation=cv2.INTER_AREA)
            reg, prob = _pnet(np.ascontiguousarray(level.transpose(2, 0, 1))[:, None])
            ys, xs = np.nonzero(prob > t1)
            if ys.size:
                score = prob[ys, xs]
                # the 12x12 window at output cell (y, x) covers input [2x, 2x + 12) at this scale
                bx = np.stack([2 * xs, 2 * ys, 2 * xs + 12, 2 * ys + 12], axis=1) / scale
                cand = np.concatenate([bx, reg[:, ys, xs].T, score[:, None]], axis=1)
                proposals.append(cand[_nms(cand[:, :4], score, nms_scale)])
            scale *= self.scale_factor
        if not proposals:
            return empty
        cand = np.concatenate(proposals)
        cand = cand[_nms(cand[:, :4], cand[:, 8], nms_pnet)]
        side = (cand[:, 2] - cand[:, 0])[:, None]
        boxes = _square(cand[:, :4] + cand[:, 4:8] * np.concatenate([side] * 4, axis=1))

        # Stage 2: R-Net on 24x24 crops, all proposals in one batch.
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] > 1)]
        if not len(boxes):
            return empty
        reg, prob = _rnet(_crops(planar, boxes, 24))
        keep = prob > t2
        boxes, reg, prob = boxes[keep], reg[keep], prob[keep]
        if not len(boxes):
            return empty
        boxes = _regress(boxes, reg)
        keep = _nms(boxes, prob, nms_rnet)
        boxes = _square(boxes[keep])

        # Stage 3: O-Net on 48x48 crops: final score, box and landmarks.
        reg, marks, prob = _onet(_crops(planar, boxes, 48))
        keep = prob > t3
        boxes, reg, marks, prob = boxes[keep], reg[keep], marks[keep], prob[keep]
        if not len(boxes):
            return empty
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.concatenate([marks[:, :5] * bw + boxes[:, 0:1] - 1,
                                 marks[:, 5:] * bh + boxes[:, 1:2] - 1], axis=1)
        boxes = _regress(boxes, reg)
        keep = _nms(boxes, prob, nms_onet, method="min")
        return boxes[keep], points[keep], prob[keep]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.max(initial=0) <= 1.0:
            img = img * 255.0
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _shift(face: Face, dx: float, dy: float, w: int, h: int) -> Face:
    """Move a face found on a padded image back into the original image's coordinates."""
    x, y, bw, bh = face.box
    x1, y1 = max(0, x + dx), max(0, y + dy)
    x2, y2 = min(w, x + bw + dx), min(h, y + bh + dy)
    kp = {k: (px + dx, py + dy) for k, (px, py) in face.keypoints.items()}
    return Face(box=(int(x1), int(y1), int(max(0, x2 - x1)), int(max(0, y2 - y1))),
                confidence=face.confidence, keypoints=kp)
