"""Load any user image as RGB uint8 (H, W, 3), or fail with an ``InputError`` that names the file.

Decoding is OpenCV's (``cv2.imdecode`` with ``IMREAD_UNCHANGED``, then normalised here) because it
keeps 16-bit and alpha data we can convert deliberately; Pillow only reads the header first (size,
format, EXIF orientation) so that oversized images are handled *before* any pixel is decoded.

What each odd input becomes:

* missing / empty / directory / unreadable file, text or other non-image bytes (whatever the
  extension): ``InputError``;
* corrupt or truncated data (including a JPEG cut before its end marker): ``InputError``;
* greyscale (8- or 16-bit): replicated to 3 channels;
* alpha (RGBA, grey+alpha): composited over white, so transparent backgrounds do not turn black;
* 16-bit: scaled to 8-bit (``round(v / 257)``); float images: ``[0, 1]`` scaled to ``[0, 255]``;
* EXIF orientation: applied (cheap: read from the header, then a rotate/flip of the array);
* more than ``MAX_PIXELS`` (50 MP): a JPEG is decoded at 1/2, 1/4 or 1/8 scale directly by libjpeg
  (``IMREAD_REDUCED_COLOR_*``, fast and small: an 8000x8000 JPEG loads as 4000x4000 in well under a
  second); any other format that large is refused, since it would be decoded at full size first,
  and so is anything past Pillow's decompression-bomb limit (about 179 MP) whatever its format.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from emotion_keras.errors import InputError

MAX_PIXELS = 50_000_000
"""Images with more pixels than this are downscaled while decoding (JPEG) or refused (others)."""

_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}

# EXIF orientation tag value -> operations on an (H, W, C) array that undo it.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def load_image(path) -> np.ndarray:
    """Read ``path`` and return it as RGB uint8 (H, W, 3); bad files raise ``InputError``."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from None
    return decode_image(data, path)


def decode_image(data: bytes, name="<upload>") -> np.ndarray:
    """Decode encoded image bytes (an upload, a file's contents) to RGB uint8 (H, W, 3).

    ``name`` is only used in error messages.
    """
    if not data:
        raise InputError(name, "empty file (0 bytes)")
    header = _read_header(data, name)
    fmt, width, height, orientation = header
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise InputError(name, "truncated JPEG (the file ends before the image data does)")

    flags = cv2.IMREAD_UNCHANGED
    if width and height and width * height > MAX_PIXELS:
        if fmt != "JPEG":
            raise InputError(name, f"image is too large ({width}x{height} = {width * height / 1e6:.0f} MP; "
                                   f"the limit is {MAX_PIXELS / 1e6:.0f} MP for {fmt or 'this'} images)")
        factor = next((f for f in (2, 4, 8) if width * height / f ** 2 <= MAX_PIXELS), None)
        if factor is None:
            raise InputError(name, f"image is too large ({width}x{height}) even at 1/8 scale")
        flags = _REDUCED_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise InputError(name, f"cannot decode image ({str(exc).strip().splitlines()[-1]})") from None
    if img is None:
        img = _decode_with_pillow(data, name) if fmt else None
        if img is None:
            if fmt:
                raise InputError(name, f"corrupt or unsupported {fmt} image data")
            raise InputError(name, "not a recognised image file (unknown or corrupt format)")
        bgr = False
    else:
        bgr = True
    img = _to_rgb_uint8(img, name, bgr=bgr)
    if orientation in _ORIENT:
        img = np.ascontiguousarray(_ORIENT[orientation](img))
    return img


def _read_header(data: bytes, name):
    """(format, width, height, exif orientation) from the header only; Nones when Pillow can't tell."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format, im.size
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:  # a damaged EXIF block is not worth refusing the image for
                    orientation = 1
    except Image.DecompressionBombError as exc:  # > 2 x Pillow's limit (about 179 MP)
        raise InputError(name, f"image is too large ({exc})") from None
    except Exception:
        return None, None, None, 1
    return fmt, width, height, orientation


def _jpeg_complete(data: bytes) -> bool:
    """A whole JPEG has an end-of-image marker (FFD9) after its last start-of-scan (FFDA).

    Entropy-coded scan data never contains either marker (0xFF bytes are stuffed), so a file cut
    anywhere in its last scan has no EOI after that scan; an EXIF thumbnail's EOI comes earlier, and
    trailers appended by some cameras after the real EOI do not matter.
    """
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


def _decode_with_pillow(data: bytes, name):
    """Formats OpenCV cannot read but Pillow can (e.g. GIF): first frame as RGB(A)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info
                                         else "RGB"))
    except Exception:
        return None


def _to_rgb_uint8(img: np.ndarray, name, bgr: bool) -> np.ndarray:
    """Any decoded array (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) -> RGB uint8."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(name, f"unexpected image shape {img.shape}")
    img = _to_uint8(img, name)
    channels = img.shape[2]
    alpha = None
    if channels in (2, 4):
        alpha = img[:, :, -1:].astype(np.float32) / 255.0
        img = img[:, :, :-1]
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 3:
        if bgr:
            img = img[:, :, ::-1]
    else:
        raise InputError(name, f"unsupported number of channels ({channels})")
    if alpha is not None:
        if alpha.min() < 1.0:
            img = (img.astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray, name) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype == np.int8:
        return (img.astype(np.int16) + 128).astype(np.uint8)
    if img.dtype == np.int16:
        return ((img.astype(np.int32) + 32768 + 128) // 257).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if f.max(initial=0.0) <= 1.0 + 1e-6 else 1.0
        return np.clip(f * scale + 0.5, 0, 255).astype(np.uint8)
    raise InputError(name, f"unsupported pixel type {img.dtype}")
