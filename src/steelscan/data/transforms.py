"""Augmentation (albumentations) and the "improved cutout" of defect boxes.

Images are grey uint8 [H, W] on input; `to_tensor` gives float32 [1, H, W] normalised by (mean, std) on [0, 1].
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from steelscan.config import AugmentConfig


def flip_and_photometric(cfg: AugmentConfig) -> list:
    """hflip, vflip and RandomBrightnessContrast, each switched by the config (shared by every task)."""
    ops: list = []
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if cfg.vflip:
        ops.append(A.VerticalFlip(p=0.5))
    if cfg.brightness_contrast > 0:
        lim = cfg.brightness_contrast
        ops.append(A.RandomBrightnessContrast(brightness_limit=lim, contrast_limit=lim, p=0.5))
    return ops


def train_transform(cfg: AugmentConfig, size: int, seed: int = 0) -> A.Compose:
    """Training augmentation from a config section. Every transform is switched by its own config value.

    albumentations draws from its own generator, not numpy's global one: the seed makes runs repeatable.
    """
    ops: list = []
    if cfg.random_resized_crop is not None:
        ops.append(A.RandomResizedCrop(size=(size, size), scale=tuple(cfg.random_resized_crop), ratio=(0.8, 1.25)))
    else:
        ops.append(A.Resize(size, size, interpolation=cv2.INTER_AREA))
    ops += flip_and_photometric(cfg)
    if cfg.cutout > 0:
        ops.append(A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.1, 0.25), hole_width_range=(0.1, 0.25), fill="random_uniform", p=cfg.cutout))
    return A.Compose(ops, seed=seed)


def eval_transform(size: int) -> A.Compose:
    return A.Compose([A.Resize(size, size, interpolation=cv2.INTER_AREA)])


def to_tensor(image: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 [H, W] -> float32 [1, H, W], normalised."""
    x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    return x.sub_(mean).div_(std).unsqueeze(0)


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
