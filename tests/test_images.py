"""load_image / decode_image: every odd input gives its documented result (RGB uint8 or InputError)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import corpus
from emotion_keras.errors import InputError
from emotion_keras.preprocess.images import MAX_PIXELS, decode_image, load_image


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _png(arr) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def test_rgb_channel_order(tmp_path):
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR
    img = load_image(_write(tmp_path / "red.png", _png(bgr)))
    assert img.dtype == np.uint8 and img.shape == (4, 5, 3)
    assert (img[..., 0] == 255).all() and (img[..., 1:] == 0).all()


@pytest.mark.parametrize("problem, make, message", [
    ("missing", None, "not found"),
    ("empty", lambda p: _write(p, b""), "empty"),
    ("text", lambda p: _write(p, b"this is a text file, not a photo\n" * 20), "not a recognised image"),
    ("junk", lambda p: _write(p, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20 + b"\xff\xd9"),
     "not a recognised image"),
    ("directory", lambda p: p.mkdir() or p, "directory"),
])
def test_bad_files_raise_input_error(tmp_path, problem, make, message):
    path = tmp_path / f"{problem}.jpg"
    if make:
        make(path)
    with pytest.raises(InputError) as err:
        load_image(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert err.value.path == str(path)


def test_truncated_jpeg_and_png(tmp_path, shared_data):
    photo = sorted((corpus(shared_data, "wild_faces") / "images").glob("*.jpg"))[0]
    data = photo.read_bytes()
    with pytest.raises(InputError, match="truncated JPEG"):
        load_image(_write(tmp_path / "cut.jpg", data[: len(data) // 2]))
    # a camera trailer after the real end marker is not truncation
    assert load_image(_write(tmp_path / "trailer.jpg", data + b"\x00SAMSUNG-TRAILER" * 400)).ndim == 3
    png = _png(load_image(photo))
    with pytest.raises(InputError, match="corrupt"):
        load_image(_write(tmp_path / "cut.png", png[: len(png) // 2]))


def test_greyscale_becomes_three_equal_channels(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, grey)
        img = load_image(_write(tmp_path / f"g{ext}", buf.tobytes()))
        assert img.shape == (6, 10, 3)
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert np.array_equal(load_image(tmp_path / "g.png")[..., 0], grey)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 20, 255)   # opaque: kept
    rgba[0, 1] = (200, 10, 20, 0)     # transparent: white
    rgba[1, 0] = (0, 0, 0, 128)       # half black over white: mid grey
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    img = decode_image(buf.getvalue(), "a.png")
    assert img.shape == (2, 2, 3)
    assert tuple(img[0, 0]) == (200, 10, 20)
    assert tuple(img[0, 1]) == (255, 255, 255)
    assert 125 <= img[1, 0, 0] <= 129


def test_16bit_png_scaled_to_8bit(tmp_path):
    colour16 = np.zeros((3, 3, 3), np.uint16)
    colour16[..., 2] = 65535   # red (BGR order on disk)
    colour16[..., 0] = 257 * 40
    img = load_image(_write(tmp_path / "c16.png", _png(colour16)))
    assert img.dtype == np.uint8 and tuple(img[0, 0]) == (255, 0, 40)
    grey16 = np.full((3, 3), 257 * 100, np.uint16)
    assert (load_image(_write(tmp_path / "g16.png", _png(grey16))) == 100).all()


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((40, 60, 3), np.uint8)
    arr[:10, :20] = 255  # a white block in the top-left corner
    for orientation in (3, 6, 8):
        im = Image.fromarray(arr)
        exif = im.getexif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=95, exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        got = decode_image(buf.getvalue(), "o.jpg")
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3


def test_huge_jpeg_is_downscaled_quickly_and_huge_png_refused(tmp_path):
    big = np.zeros((8000, 8000), np.uint8)
    big[::40] = 255
    ok, jpg = cv2.imencode(".jpg", big)
    path = _write(tmp_path / "huge.jpg", jpg.tobytes())
    del big
    start = time.perf_counter()
    img = load_image(path)
    assert time.perf_counter() - start < 10
    assert img.shape == (4000, 4000, 3) and img.shape[0] * img.shape[1] <= MAX_PIXELS

    ok, png = cv2.imencode(".png", np.zeros((8000, 8000), np.uint8))
    with pytest.raises(InputError, match="too large"):
        load_image(_write(tmp_path / "huge.png", png.tobytes()))


def test_decompression_bomb_header_refused_without_decoding(tmp_path):
    # A PNG whose header claims 100000 x 100000 pixels (10 GP) but carries almost no data.
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    start = time.perf_counter()
    with pytest.raises(InputError, match="too large"):
        load_image(_write(tmp_path / "bomb.png", data))
    assert time.perf_counter() - start < 2


def test_decode_image_bytes_and_real_photo(shared_data):
    photo = sorted((corpus(shared_data, "wild_faces") / "images").glob("*.jpg"))[0]
    from_file = load_image(photo)
    from_bytes = decode_image(photo.read_bytes(), "upload.jpg")
    assert from_file.dtype == np.uint8 and from_file.ndim == 3 and from_file.shape[2] == 3
    assert np.array_equal(from_file, from_bytes)
    with pytest.raises(InputError, match="upload.bin"):
        decode_image(b"\x00\x01garbage", "upload.bin")
