"""Image to tensor, and the "improved cutout" of defect boxes. (Pipelines from a recipe: `steelscan.tasks.augment`.)

Images are uint8 [H, W] (grey) or [H, W, C]; `to_tensor` gives float32 [C, H, W] normalised by (mean, std) on [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(image: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 [H, W] or [H, W, C] -> float32 [C, H, W], normalised."""
    x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0).sub_(mean).div_(std)
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()


def improved_cutout(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, keep_one: bool = False
) -> tuple[np.ndarray, int]:
    """Blank one randomly chosen labelled defect box; return (image, number of boxes left).

    Unlike a random cutout, this removes a real defect, so the model must find the others (or, once none are
    left, learn that the image is clean: Kaggle 1st place's "defect blackout" turns the label to 0 then).
    The box is filled with the mean of the pixels outside every box, a flat stand-in for clean strip.
    With `keep_one`, an image's last box is never cut, for multi-class labels that must stay true.
    `boxes` is [M, 4] xyxy in pixels of `image`.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    if n == 0 or (keep_one and n == 1):
        return image, n
    out = image.copy()
    h, w = image.shape[:2]
    outside = np.ones((h, w), dtype=bool)
    ints = np.clip(np.round(boxes).astype(int), 0, [w, h, w, h])
    for x1, y1, x2, y2 in ints:
        outside[y1:y2, x1:x2] = False
    fill = image[outside].mean() if outside.any() else image.mean()
    x1, y1, x2, y2 = ints[rng.integers(n)]
    out[y1:y2, x1:x2] = np.uint8(round(float(fill)))
    return out, n - 1
