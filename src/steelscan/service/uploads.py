"""Uploaded images -> grey uint8 [H, W], refusing bad ones before they cost memory or a model call.

Checks, in order, each an `UploadError` with the HTTP status and what was expected / what arrived:
  empty body (400) -> format by content, not by file name (415) -> pixel count from the header alone,
  before decoding, so a decompression bomb never expands (413) -> full decode (truncated: 422) ->
  bit depth (16-bit: 422) -> colour to grey -> frame size when the caller fixes one (422).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

FORMATS = ("PNG", "BMP", "JPEG", "TIFF")
# PIL modes that hold 8-bit samples; anything else (I;16, I, F, 1...) is refused, not silently rescaled.
_GREY8, _COLOUR8 = ("L",), ("RGB", "RGBA", "LA", "P", "CMYK", "YCbCr")


class UploadError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int, shape: tuple[int, int] | None = None, what: str = "image") -> np.ndarray:
    """The upload as grey uint8 [H, W]; `shape` = (H, W) the caller requires."""
    if not data:
        raise UploadError(400, f"{what} is empty (0 bytes): expected a PNG, BMP, JPEG or TIFF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
            SyntaxError, ValueError):
        raise UploadError(415, f"{what}: expected PNG, BMP, JPEG or TIFF content, got {len(data)} bytes starting "
                               f"{data[:8]!r}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise UploadError(413, f"{what} is {w}x{h} = {w * h} px; the limit is {max_pixels} px")
    mode = im.mode
    if mode not in _GREY8 + _COLOUR8:
        raise UploadError(422, f"{what} is {im.format} mode {mode}: expected an 8-bit grey image (got more bits "
                               "per sample or a bit-level image)")
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(422, f"{what} is truncated or corrupt ({im.format}, {w}x{h}): {exc}") from None
    grey = np.array(im if mode == "L" else im.convert("L"), dtype=np.uint8)  # a writable copy (torch wants one)
    if shape is not None and grey.shape != tuple(shape):
        raise UploadError(422, f"{what} is {w}x{h} px; expected {shape[1]}x{shape[0]} (width x height)")
    return grey
