"""Uploaded images -> grey uint8 [H, W], refusing bad ones before they cost memory or a model call.

The checks are the package's one image reader's (`steelscan.core.images.read_image_bytes`), each an
`UploadError` with the HTTP status and what was expected / what arrived: empty body (400) -> format by content,
not by file name (415) -> pixel count from the header alone, before decoding, so a decompression bomb never
expands (413) -> smaller than the caller takes, 16-bit / float / 1-bit, truncated (422) -> colour to grey ->
frame size when the caller fixes one (422).
"""

from __future__ import annotations

import numpy as np

from steelscan.core.errors import ImageError
from steelscan.core.images import read_image_bytes

# ImageError.reason -> HTTP status; everything else the reader refuses (depth, truncation, too small) is a 422
STATUS = {"empty": 400, "format": 415, "too_large": 413}


class UploadError(ImageError):
    """An upload refused with the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int, shape: tuple[int, int] | None = None, what: str = "image",
                 min_side: int = 1) -> np.ndarray:
    """The upload as grey uint8 [H, W] (`steelscan.core.images`, the package's one reader); `shape` = (H, W)
    the caller requires, `min_side` the smallest side it takes."""
    try:
        grey = read_image_bytes(data, channels=1, max_pixels=max_pixels, min_side=min_side, name=what)
    except ImageError as exc:
        raise UploadError(STATUS.get(getattr(exc, "reason", ""), 422), str(exc)) from None
    if shape is not None and grey.shape != tuple(shape):
        h, w = grey.shape
        raise UploadError(422, f"{what} is {w}x{h} px; expected {shape[1]}x{shape[0]} (width x height)")
    return grey
