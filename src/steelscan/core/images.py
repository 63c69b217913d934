"""The one image reader of the package: files and uploaded bytes -> uint8 arrays, refusing bad ones early.

    read_image(path, channels=1)        uint8 [H, W] (channels=1), [H, W, 3] RGB (channels=3), or the file's own
    read_image_bytes(data, channels=1)  the same for bytes already in memory (the service's uploads)
    image_size(path)                    (H, W) from the header alone

Formats: PNG, JPEG, BMP, TIFF, recognised by content, not by file name. Every refusal is an `ImageError` on one
line that names the file and says what was expected and what arrived; its `reason` attribute is one of
`REASONS`, so the service can answer the right HTTP status. In order:

  not a regular file (directories, named pipes, devices are refused without being read, so nothing hangs)
  -> empty -> not PNG/JPEG/BMP/TIFF content -> pixel count from the header alone, before any pixel is decoded
  (decompression bombs never expand) -> smaller than `min_side` -> more than 8 bits per sample (16-bit,
  32-bit integer, float: refused, never silently rescaled: a 12-bit camera in a 16-bit container would come out
  nearly black) or 1 bit (refused: a 1-bit image is a mask or a thresholded picture, not a camera frame; the
  usual cause is a folder of masks given for a folder of images) -> truncated (a JPEG without its end-of-image
  marker, which OpenCV would decode silently into grey rows; any other stream that ends early) -> decode ->
  a JPEG whose entropy data ends before its last block (cut mid-scan with an end marker appended, or a small
  JPEG relabelled larger: libjpeg fills the rest with flat grey and only warns).

The caller's `max_pixels` is the limit that speaks: Pillow's own bomb cap (89.5 Mpx, refusing at twice that) is
raised to it where it is larger, so an image the caller allows is never refused by Pillow first.

Decoding is Pillow's alone, so the header that was checked is the header that is decoded, and RGB comes out
in RGB order (OpenCV's would be BGR). Colour to grey uses the ITU-R 601 weights (0.299, 0.587, 0.114); a colour
JPEG read as grey is libjpeg's own Y channel, the very bytes OpenCV's IMREAD_GRAYSCALE gave (other formats may
differ from OpenCV's by one grey level: it rounds differently per format). Pixels come as stored: EXIF
orientation is not applied, and a multi-page TIFF gives its first page. A conversion between the file's
channels and the requested ones is logged once per process per (from, to) pair at INFO on `steelscan.images`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from steelscan.core.errors import ImageError

log = logging.getLogger("steelscan.images")

FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # the file names every reader lists
DEFAULT_MAX_PIXELS = 1 << 26  # 64 Mpx: a 16384 x 4096 line-scan frame; 192 MB as RGB
MIN_MODEL_SIDE = 8  # the smallest side of an image given to a model (classify, detect, segment): 1x1 is a mistake
REASONS = ("not_found", "not_a_file", "unreadable", "empty", "format", "too_large", "too_small", "depth",
           "truncated")
_HEADER_SLACK_BYTES = 16 << 20  # metadata, thumbnails, ICC profiles beyond the pixels themselves
_EXPECTED = "a PNG, JPEG, BMP or TIFF image"
# Pillow modes of 8-bit samples; everything else is refused by `_depth_problem`.
_GREY_MODES = ("L", "LA", "La")
_COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
_PALETTE_MODES = ("P", "PA")
_DEEP_MODES = {"1": "1-bit (black and white)", "F": "32-bit float", "I": "32-bit integer"}
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"))
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
# Entropy-coded bytes (no 0x00 or 0xFF, so no stuffing or marker) put before a JPEG's end marker: a complete
# stream never decodes them, one that ends early decodes them instead of libjpeg's flat grey fill
_JPEG_FILL = bytes(np.random.default_rng(7).integers(1, 255, 4096, dtype=np.uint8))
_pillow_cap_lock = threading.Lock()

_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _error(reason: str, message: str) -> ImageError:
    exc = ImageError(message)
    exc.reason = reason  # type: ignore[attr-defined]
    return exc


def _open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file. O_NONBLOCK: opening a named pipe must not wait for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _error("not_found", f"image not found: {path} (expected {_EXPECTED} file)") from None
    except OSError as exc:  # the user's path: permission, a loop of links, a name too long...
        raise _error("unreadable", f"cannot read image {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise _error("not_a_file", f"{path} is {kind}: expected {_EXPECTED} file")
    return fd


def _raise_pillow_cap(max_pixels: int) -> None:
    """Pillow's cap up to the caller's limit (never down: other threads may rely on the higher one)."""
    with _pillow_cap_lock:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def _open_header(stream, name: str, max_pixels: int) -> Image.Image:
    """Pillow's lazy open: the header only, no pixels decoded."""
    _raise_pillow_cap(max_pixels)
    try:
        return Image.open(stream, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fired before ours could (sizes past its limit); say it in our words
        m = _BOMB_PIXELS.search(str(exc))
        got = f"declares {m.group(1)} px" if m else "declares more pixels than Pillow will open"
        raise _error("too_large", f"{name} {got} (a decompression bomb?); the limit is {max_pixels} px") from None
    except (Image.UnidentifiedImageError, OSError):
        stream.seek(0)
        head = stream.read(8)
        size = stream.seek(0, io.SEEK_END)
        fmt = next((f for sig, f in _SIGNATURES if head.startswith(sig)), None)
        if fmt is not None:
            raise _error("truncated", f"{name} starts as a {fmt} file but its header cannot be read ({size} bytes): "
                                      "expected a complete file; it is truncated or corrupt") from None
        raise _error("format", f"{name}: expected PNG, JPEG, BMP or TIFF content, got {size} bytes starting "
                               f"{head!r}") from None


def _depth_problem(im: Image.Image, data: bytes | None) -> str | None:
    """What is wrong with the sample depth, from the header alone; None for 8-bit samples."""
    mode = im.mode
    if mode.startswith("I;16"):
        return "16-bit"
    if mode in _DEEP_MODES:
        return _DEEP_MODES[mode]
    if mode not in _GREY_MODES + _COLOUR_MODES + _PALETTE_MODES:
        return f"mode {mode}"
    # Pillow opens 16-bit colour PNG/TIFF as 8-bit RGB, dropping the low byte: read the depth from the header
    if im.format == "PNG" and data is not None and len(data) > 24 and data[24] == 16:
        return "16-bit"
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,) if bits else ()
        if any(b > 8 for b in bits):
            return f"{max(bits)}-bit"
    return None


def _truncated_jpeg(data: bytes) -> bool:
    """A JPEG whose end-of-image marker is missing (a copy cut short). Trailers and padding after it are fine."""
    return data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].rstrip(b"\x00")


def _flat_tail(a: np.ndarray) -> bool:
    """Whether the image's last 8x8 block (where a JPEG that ends early has only libjpeg's fill) is flat in
    luma; colour is judged by its luma, as chroma upsampling blurs block edges."""
    h, w = a.shape[:2]
    block = a[(h - 1) // 8 * 8 :, (w - 1) // 8 * 8 :].astype(np.float32)
    if block.ndim == 3:
        block = block[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if block.shape[2] >= 3 else block[..., 0]
    return float(block.max() - block.min()) <= 2


def _jpeg_ends_early(im: Image.Image, data: bytes) -> bool:
    """A JPEG with its end marker but too little scan data: decode it again with `_JPEG_FILL` before the marker;
    a complete stream ignores the extra bytes, a short one decodes them. Only where the last block is flat
    (baseline) or for progressive files (their later scans refine, so an early end leaves no flat block)."""
    a = np.asarray(im)
    if not im.info.get("progressive") and not _flat_tail(a):
        return False
    end = data.rfind(b"\xff\xd9")
    again = Image.open(io.BytesIO(data[:end] + _JPEG_FILL + data[end:]), formats=("JPEG",))
    if again.mode != im.mode:
        again.draft(im.mode, again.size)  # the first decode's draft (libjpeg's grey)
    try:
        again.load()
    except (OSError, SyntaxError, ValueError, EOFError):
        return True
    return again.size != im.size or not np.array_equal(np.asarray(again), a)


def _grey_palette(im: Image.Image) -> bool:
    pal = im.getpalette() or []
    return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))


def _describe(im: Image.Image) -> tuple[str, bool]:
    """The file's channels in words ('grey', 'grey+alpha', 'RGB', 'RGBA', 'CMYK', ...) and whether it is grey."""
    mode = im.mode
    if mode in _PALETTE_MODES:
        grey = _grey_palette(im)
        alpha = mode == "PA" or "transparency" in im.info
        return ("grey" if grey else "RGB") + ("+alpha" if grey and alpha else "A" if alpha else ""), grey
    if mode in _GREY_MODES:
        return ("grey" if mode == "L" else "grey+alpha"), True
    return {"RGBa": "RGBA", "RGBX": "RGB"}.get(mode, mode), False


def _log_conversion(src: str, dst: str, name: str) -> None:
    key = (src, dst)
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    n = 1 if dst == "grey" else 3
    log.info("images are %s; %d channel%s requested: converting to %s (first: %s; logged once)",
             src, n, "" if n == 1 else "s", dst, name)


def _check_args(channels: int | None, max_pixels: int, min_side: int) -> None:
    if channels not in (1, 3, None):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if max_pixels < 1 or min_side < 1:
        raise ValueError(f"max_pixels and min_side must be >= 1, got {max_pixels} and {min_side}")


def read_image_bytes(data: bytes, channels: int | None = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
                     min_side: int = 1, name: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 [H, W] (channels=1), [H, W, 3] RGB (channels=3) or the image's own
    (channels=None: grey [H, W], colour [H, W, 3]). `name` names the image in errors and logs."""
    _check_args(channels, max_pixels, min_side)
    if not data:
        raise _error("empty", f"{name} is empty (0 bytes): expected {_EXPECTED} file")
    im = _open_header(io.BytesIO(data), name, max_pixels)
    w, h = im.size
    if w * h > max_pixels:
        raise _error("too_large", f"{name} is {w}x{h} = {w * h} px; the limit is {max_pixels} px")
    if min(w, h) < min_side:
        raise _error("too_small", f"{name} is {w}x{h} px; expected at least {min_side} px on each side")
    depth = _depth_problem(im, data)
    if depth is not None:
        hint = ("a 1-bit image is usually a mask: is this the image folder?" if depth.startswith("1-bit")
                else "convert it to 8 bits per sample first")
        raise _error("depth", f"{name} is a {depth} {im.format} image (mode {im.mode}): expected an 8-bit grey or "
                              f"colour image; {hint}")
    if im.format == "JPEG" and _truncated_jpeg(data):
        raise _error("truncated", f"{name} is a truncated JPEG ({w}x{h}, {len(data)} bytes, no end-of-image "
                                  "marker): expected a complete file; copy it again")
    src, grey = _describe(im)
    dst = ("grey" if grey else "RGB") if channels is None else "grey" if channels == 1 else "RGB"
    if dst == "grey" and not grey and im.format == "JPEG" and im.mode in ("RGB", "YCbCr"):
        im.draft("L", im.size)  # libjpeg decodes its Y channel: the bytes OpenCV's IMREAD_GRAYSCALE gave
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's ways of saying the stream is bad
        raise _error("truncated", f"{name} is truncated or corrupt ({im.format}, {w}x{h}): "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if im.size != (w, h):  # a header that disagrees with its own pixels
        raise _error("truncated", f"{name}: the header says {w}x{h}, the pixels are {im.size[0]}x{im.size[1]}")
    if im.format == "JPEG" and _jpeg_ends_early(im, data):
        raise _error("truncated", f"{name} is a JPEG whose data ends before its last {w}x{h} pixels (the rest "
                                  "would decode as flat grey): expected a complete file; copy it again")
    want = "L" if dst == "grey" else "RGB"
    if im.mode in ("CMYK", "YCbCr") and want == "L":
        im = im.convert("RGB")  # Pillow converts these to grey only by way of RGB
    out = np.array(im if im.mode == want else im.convert(want), dtype=np.uint8)  # a writable copy
    if src != dst:
        _log_conversion(src, dst, name)
    return out


def read_image(path: str | Path, channels: int | None = 1, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int = 1) -> np.ndarray:
    """An image file -> uint8 [H, W] (channels=1), [H, W, 3] RGB (channels=3) or the file's own (None).

    Raises ImageError (one line, naming the file) for anything but an 8-bit PNG/JPEG/BMP/TIFF of at most
    `max_pixels` pixels and at least `min_side` pixels on each side.
    """
    _check_args(channels, max_pixels, min_side)
    path = Path(path)
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        limit = 8 * max_pixels + _HEADER_SLACK_BYTES  # 8 bytes per pixel covers uncompressed 16-bit RGBA
        if size > limit:
            raise _error("too_large", f"{path} is {size} bytes; an image of at most {max_pixels} px is never "
                                      f"more than {limit} bytes")
        try:
            data = f.read()
        except OSError as exc:
            raise _error("unreadable", f"cannot read image {path}: {exc.strerror or exc}") from None
    return read_image_bytes(data, channels, max_pixels, min_side, name=str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file from its header alone; no pixel is decoded. ImageError as `read_image`."""
    path = Path(path)
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size == 0:
            raise _error("empty", f"{path} is empty (0 bytes): expected {_EXPECTED} file")
        with _open_header(f, str(path), DEFAULT_MAX_PIXELS) as im:
            w, h = im.size
    return h, w
