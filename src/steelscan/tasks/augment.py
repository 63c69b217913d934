"""Augmentation pipelines (albumentations) built from a recipe's `augment` section, shared by the tasks.

albumentations draws from its own generator, not numpy's global one: the seed makes runs repeatable.
Images are uint8 [H, W] or [H, W, 3]; every op here works on either.
"""

from __future__ import annotations

import albumentations as A
import cv2

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
    """Classification training augmentation; every transform is switched by its own config value."""
    ops: list = []
    if cfg.random_resized_crop is not None:
        ops.append(A.RandomResizedCrop(size=(size, size), scale=tuple(cfg.random_resized_crop), ratio=(0.8, 1.25)))
    else:
        ops.append(A.Resize(size, size, interpolation=cv2.INTER_AREA))
    ops += flip_and_photometric(cfg)
    if cfg.cutout > 0:
        ops.append(A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.1, 0.25),
                                   hole_width_range=(0.1, 0.25), fill="random_uniform", p=cfg.cutout))
    return A.Compose(ops, seed=seed)


def eval_transform(size: int) -> A.Compose:
    return A.Compose([A.Resize(size, size, interpolation=cv2.INTER_AREA)])


def crop_transform(cfg: AugmentConfig, seed: int) -> A.Compose:
    """Segmentation crops: the 1st-place hflip, vflip and RandomBrightnessContrast."""
    return A.Compose(flip_and_photometric(cfg), seed=seed)
