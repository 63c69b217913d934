"""The one image reader: formats, channels, and every refusal (bombs, depth, truncation, non-files)."""

from __future__ import annotations

import io
import logging
import os
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from steelscan.core import images as images_module
from steelscan.core.errors import ImageError, SteelscanError
from steelscan.core.images import DEFAULT_MAX_PIXELS, image_size, read_image, read_image_bytes

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (24, 32), dtype=np.uint8)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny real JPEG whose SOF header is patched to declare width x height (a decompression bomb)."""
    data = bytearray(encode(GREY[:8, :8], "JPEG"))
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments to the start-of-frame marker
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR (with a valid CRC) declares width x height."""
    data = bytearray(encode(GREY[:8, :8], "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def refused(reason: str, call, *args, **kw) -> str:
    with pytest.raises(ImageError) as info:
        call(*args, **kw)
    assert info.value.reason == reason, str(info.value)
    message = str(info.value)
    assert "\n" not in message
    return message


# reading ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,suffix", [("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif"), ("JPEG", "jpg")])
def test_reads_every_format_grey_and_colour(tmp_path, fmt, suffix):
    lossless = fmt != "JPEG"
    grey = read_image(write(tmp_path, f"g.{suffix}", encode(GREY, fmt)))
    assert grey.dtype == np.uint8 and grey.shape == (24, 32) and grey.flags.writeable
    rgb = read_image(write(tmp_path, f"c.{suffix}", encode(RGB, fmt)), channels=3)
    assert rgb.shape == (24, 32, 3)
    if lossless:
        np.testing.assert_array_equal(grey, GREY)
        np.testing.assert_array_equal(rgb, RGB)  # RGB order, not OpenCV's BGR
    assert read_image(tmp_path / f"g.{suffix}", channels=None).shape == (24, 32)
    assert read_image(tmp_path / f"c.{suffix}", channels=None).shape == (24, 32, 3)
    assert image_size(tmp_path / f"c.{suffix}") == (24, 32)


def test_grey_from_colour_is_opencvs(tmp_path):
    cv2 = pytest.importorskip("cv2")
    smooth = cv2.GaussianBlur(RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8), (5, 5), 0)
    for name in ("s.png", "s.bmp", "s.jpg"):
        cv2.imwrite(str(tmp_path / name), smooth)
        ours, theirs = read_image(tmp_path / name), cv2.imread(str(tmp_path / name), cv2.IMREAD_GRAYSCALE)
        if name.endswith(".jpg"):  # libjpeg's Y channel in both
            np.testing.assert_array_equal(ours, theirs)
        else:  # the same weights; OpenCV rounds differently per format
            assert np.abs(ours.astype(int) - theirs).max() <= 1


def test_conversion_is_logged_once_per_pair(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(images_module, "_logged", set())
    rgb = write(tmp_path, "c.png", encode(RGB, "PNG"))
    grey = write(tmp_path, "g.png", encode(GREY, "PNG"))
    with caplog.at_level(logging.INFO, logger="steelscan.images"):
        for _ in range(3):
            assert read_image(rgb, channels=1).shape == (24, 32)
            out = read_image(grey, channels=3)
            assert out.shape == (24, 32, 3) and (out[..., 0] == out[..., 2]).all()
            read_image(grey, channels=1)  # no conversion: nothing logged
    lines = [r.getMessage() for r in caplog.records if r.name == "steelscan.images"]
    assert len(lines) == 2, lines
    assert "images are RGB; 1 channel requested: converting to grey" in lines[0]
    assert "images are grey; 3 channels requested: converting to RGB" in lines[1]


def test_palette_and_alpha_images(tmp_path):
    grey_palette = Image.fromarray(GREY).convert("P")  # a grey palette: the file's own channels are grey
    buf = io.BytesIO()
    grey_palette.save(buf, format="PNG")
    assert read_image_bytes(buf.getvalue(), channels=None).shape == (24, 32)
    rgba = encode(np.dstack([RGB, np.full((24, 32), 255, np.uint8)]), "PNG")
    np.testing.assert_array_equal(read_image_bytes(rgba, channels=None), RGB)  # alpha dropped


# refusals -------------------------------------------------------------------------------------------------------
def test_jpeg_bomb_is_refused_from_the_header(tmp_path):
    bomb = write(tmp_path, "bomb.jpg", jpeg_declaring(65000, 65000))
    assert bomb.stat().st_size < 1000
    message = refused("too_large", read_image, bomb)
    assert "bomb.jpg" in message and "4225000000 px" in message and f"limit is {DEFAULT_MAX_PIXELS} px" in message
    refused("too_large", image_size, bomb)  # the header alone already refuses it
    # under Pillow's own limit but over ours: refused by the header check, before any decoding
    message = refused("too_large", read_image, write(tmp_path, "b2.jpg", jpeg_declaring(9000, 9000)))
    assert "9000x9000 = 81000000 px" in message


def test_png_bomb_and_pillow_warnings_never_escape(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning raised as an exception: still ours
        refused("too_large", read_image, write(tmp_path, "big.png", png_declaring(40_000, 40_000)))
        refused("too_large", read_image, write(tmp_path, "mid.png", png_declaring(12_000, 12_000)))
        message = refused("too_large", read_image_bytes, png_declaring(3000, 3000), max_pixels=2_000_000, name="up")
    assert message.startswith("up is 3000x3000") and "limit is 2000000 px" in message


def test_deep_and_bit_level_images_are_refused(tmp_path):
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "g16.png"), GREY.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "c16.png"), RGB.astype(np.uint16) * 257)  # Pillow would open it as 8-bit RGB
    cv2.imwrite(str(tmp_path / "c16.tif"), RGB.astype(np.uint16) * 257)
    for name in ("g16.png", "c16.png", "c16.tif"):
        assert "16-bit" in refused("depth", read_image, tmp_path / name)
    Image.fromarray(GREY.astype(np.float32)).save(tmp_path / "f.tif")
    assert "float" in refused("depth", read_image, tmp_path / "f.tif")
    Image.fromarray(GREY > 128).save(tmp_path / "mask.png")
    assert "1-bit" in refused("depth", read_image, tmp_path / "mask.png")


def test_truncated_images_are_refused(tmp_path):
    jpeg = encode(RGB, "JPEG")
    assert "truncated JPEG" in refused("truncated", read_image, write(tmp_path, "cut.jpg", jpeg[:-2]))  # no EOI
    refused("truncated", read_image, write(tmp_path, "half.jpg", jpeg[: len(jpeg) // 2]))
    png = encode(RGB, "PNG")
    assert "truncated" in refused("truncated", read_image, write(tmp_path, "half.png", png[: len(png) - 40]))
    assert read_image(write(tmp_path, "padded.jpg", jpeg + b"\0" * 100)).shape == (24, 32)  # padding is fine


def test_empty_non_image_and_missing_files_are_refused(tmp_path):
    assert "0 bytes" in refused("empty", read_image, write(tmp_path, "empty.png", b""))
    refused("empty", image_size, tmp_path / "empty.png")
    message = refused("format", read_image, write(tmp_path, "text.png", b"hello, not an image"))
    assert "text.png" in message and "expected PNG, JPEG, BMP or TIFF" in message and "b'hello, n'" in message
    refused("format", read_image, write(tmp_path, "anim.gif", encode(GREY, "GIF")))  # not one of the four
    assert "gone.png" in refused("not_found", read_image, tmp_path / "gone.png")
    assert issubclass(ImageError, SteelscanError)


def test_directory_and_named_pipe_are_refused_without_hanging(tmp_path):
    assert "is a directory" in refused("not_a_file", read_image, tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result: list = []

    def attempt():
        for call in (read_image, image_size):
            try:
                call(fifo)
            except ImageError as exc:
                result.append(exc)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout=10)
    if t.is_alive():  # unblock the reader so the test run ends, then fail
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a named pipe hung")
    assert len(result) == 2 and all(e.reason == "not_a_file" and "named pipe" in str(e) for e in result)


def test_min_side_is_checked_from_the_header(tmp_path):
    tiny = write(tmp_path, "one.png", encode(GREY[:1, :1], "PNG"))
    assert read_image(tiny).shape == (1, 1)  # min_side defaults to 1
    message = refused("too_small", read_image, tiny, min_side=8)
    assert "one.png is 1x1 px" in message and "at least 8 px" in message
    assert read_image(write(tmp_path, "eight.png", encode(GREY[:8, :8], "PNG")), min_side=8).shape == (8, 8)


def test_bad_arguments_are_programming_errors():
    with pytest.raises(ValueError, match="channels"):
        read_image_bytes(encode(GREY, "PNG"), channels=2)
    with pytest.raises(ValueError, match="min_side"):
        read_image_bytes(encode(GREY, "PNG"), min_side=0)


def test_jpeg_ending_early_is_refused_even_with_its_end_marker(tmp_path):
    """A JPEG cut mid-scan with an end-of-image marker appended, or a 1x1 JPEG whose header was relabelled
    1600x256: libjpeg fills the missing blocks with grey and says nothing; the reader must refuse both."""
    frame = RNG.integers(0, 256, (256, 1600), dtype=np.uint8)
    jpeg = encode(frame, "JPEG")
    cut = jpeg[: len(jpeg) // 2] + b"\xff\xd9"
    assert "ends before its last" in refused("truncated", read_image_bytes, cut, name="cut.jpg")
    one = bytearray(encode(np.full((1, 1), 200, np.uint8), "JPEG"))
    i = one.find(b"\xff\xc0")
    one[i + 5 : i + 9] = struct.pack(">HH", 256, 1600)  # height, width
    refused("truncated", read_image, write(tmp_path, "relabelled.jpg", bytes(one)))
    for name, ok in {"cut-colour": encode(RGB, "JPEG", progressive=True)}.items():
        refused("truncated", read_image_bytes, ok[: len(ok) * 2 // 3] + b"\xff\xd9", name=name)
    # complete JPEGs whose last blocks are flat (or all of them) are still read, grey and colour alike
    flat = frame.copy()
    flat[-64:, -64:] = 90
    for array in (flat, np.zeros((256, 1600), np.uint8), np.full((24, 32, 3), 255, np.uint8), RGB):
        for kw in ({}, {"progressive": True}):
            data = encode(array, "JPEG", **kw)
            assert read_image_bytes(data, channels=None).shape == array.shape
            assert read_image_bytes(data, channels=1).shape == array.shape[:2]


def test_the_callers_pixel_limit_speaks_before_pillows(tmp_path):
    """Pillow refuses images past 2 x 89.5 Mpx itself; a caller allowing more must get its own limit's answer."""
    big = png_declaring(19_000, 10_000)  # 190 Mpx: past Pillow's own cap, within the caller's 200 Mpx
    refused("truncated", read_image_bytes, big, max_pixels=200_000_000)  # allowed, then found to have no pixels
    with warnings.catch_warnings():  # past our limit, Pillow may warn as well; our refusal is what counts
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        message = refused("too_large", read_image_bytes, png_declaring(30_000, 10_000), max_pixels=200_000_000)
    assert "300000000 px" in message and "limit is 200000000 px" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape either
        refused("truncated", read_image_bytes, png_declaring(10_000, 9_500), max_pixels=100_000_000)
