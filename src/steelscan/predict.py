"""Batch prediction with a checkpoint's own preprocessing (size, mean, std from its meta).

Images are grey uint8 [H, W]; `classify_batch` returns probabilities float32 [N, K].
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from steelscan.data.neu import IMAGE_SUFFIXES, load_grey_image
from steelscan.core.errors import SteelscanError
from steelscan.evaluate import predict_logits, probabilities

log = logging.getLogger(__name__)


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (folders: their image files, sorted). No images at all is an error."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise SteelscanError(f"no such file or folder: {p}")
    if not paths:
        raise SteelscanError(f"expected image files ({'/'.join(IMAGE_SUFFIXES)}), found none in {', '.join(map(str, inputs))}")
    return paths


def read_images(paths: Iterable[Path], shape: tuple[int, int] | None) -> tuple[list[Path], list[np.ndarray], list[tuple[Path, str]]]:
    """Read what can be read; unreadable files and wrong sizes are skipped and logged, never fatal."""
    ok_paths, images, skipped = [], [], []
    for p in paths:
        try:
            images.append(load_grey_image(p, shape))
            ok_paths.append(p)
        except (ValueError, OSError) as exc:
            log.warning("skipped %s: %s", p, exc)
            skipped.append((p, str(exc)))
    return ok_paths, images, skipped


def preprocess(images: Sequence[np.ndarray], meta: dict) -> torch.Tensor:
    size, mean, std = int(meta["image_size"]), float(meta["mean"]), float(meta["std"])
    batch = np.stack([img if img.shape == (size, size) else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                      for img in images])
    x = torch.from_numpy(batch).float().div_(255.0).sub_(mean).div_(std)
    return x.unsqueeze(1)


def classify_batch(model: nn.Module, meta: dict, images: Sequence[np.ndarray], batch_size: int = 64,
                   tta: bool | None = None) -> np.ndarray:
    tta = bool(meta.get("tta", False)) if tta is None else tta
    out = []
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size], meta)
        out.append(probabilities(predict_logits(model, x, tta)).numpy())
    k = len(meta["class_names"])
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)
