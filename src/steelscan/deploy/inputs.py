"""Image files in for the predictors: files and folders -> a list of paths -> uint8 arrays in the model's channels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from steelscan.core.errors import ImageError, SteelscanError
from steelscan.core.images import MIN_MODEL_SIDE, read_image
from steelscan.data.formats.base import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (folders: their image files, sorted). No images at all is an error."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():  # a file; a named pipe or a device is refused, without being read, by read_images
            paths.append(p)
        else:
            raise SteelscanError(f"no such file or folder: {p}")
    if not paths:
        raise SteelscanError(f"expected image files ({'/'.join(IMAGE_SUFFIXES)}), found none in {', '.join(map(str, inputs))}")
    return paths


def min_side_of(meta) -> int:
    """The smallest image side a model takes: its meta's `min_input_size`, else 8."""
    value = getattr(meta, "min_input_size", None)
    return max(1, int(value)) if value else MIN_MODEL_SIDE


def read_images(paths: Iterable[Path], shape: tuple[int, int] | None = None, channels: int | None = 1,
                min_side: int = 1) -> tuple[list[Path], list[np.ndarray], list[tuple[Path, str]]]:
    """Read what can be read (`steelscan.core.images.read_image`) as uint8 [H, W] (channels=1) or RGB
    [H, W, 3] (channels=3): a refused file (unreadable, not an image, truncated, 16-bit, a decompression bomb,
    smaller than `min_side`, not of `shape` (H, W)) is logged and listed in `skipped` with the reason, never
    fatal to the others. A bug still raises. Returns (paths read, images, [(skipped path, reason)])."""
    paths = list(paths)
    ok_paths, images, skipped = [], [], []
    for p in paths:
        try:
            image = read_image(p, channels=channels, min_side=min_side)
            if shape is not None and image.shape[:2] != tuple(shape):
                raise ImageError(f"{p}: expected a {shape[0]}x{shape[1]} (HxW) image, got "
                                 f"{image.shape[0]}x{image.shape[1]}")
        except ImageError as exc:
            log.warning("skipped %s: %s", p, exc)
            skipped.append((p, str(exc)))
            continue
        images.append(image)
        ok_paths.append(p)
    if skipped:
        log.warning("skipped %d of %d image file(s); %d read", len(skipped), len(paths), len(images))
    return ok_paths, images, skipped
