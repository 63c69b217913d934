"""Segmentation training data: in-memory images and K-channel masks, defect-aware random crops.

Shapes: a sample's image is uint8 [H, W] (or [H, W, 3]), its mask uint8 [K, H, W] of {0, 1}, channel k for
class k, from an index-mask PNG (0 background, k + 1 = class k) or Severstal-style RLE rows. A training item
is (image float32 [C, h, w] normalised, mask float32 [K, h, w]) for an (h, w) crop; the presence targets of
the gate are the mask's per-channel maxima (`steelscan.losses.SegmentationLoss`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from steelscan.core.errors import DataError, SteelscanError
from steelscan.core.images import read_image
from steelscan.data.formats.base import Item
from steelscan.data.formats.masks import read_mask as read_index_mask
from steelscan.data.rle import rle_decode
from steelscan.data.transforms import to_tensor

log = logging.getLogger(__name__)


@dataclass
class SegSample:
    image_id: str
    image: np.ndarray  # uint8 [H, W] or [H, W, C]
    mask: np.ndarray  # uint8 [K, H, W]
    source: str  # the folder's name, e.g. "severstal-sample": metrics are also reported per source


def read_mask(item: Item, shape: tuple[int, int], n_classes: int) -> np.ndarray:
    """An item's mask as uint8 [K, H, W] of {0, 1}, for an image of `shape` (H, W)."""
    mask = np.zeros((n_classes, *shape), np.uint8)
    if item.mask_path is not None:
        problems: list = []
        index = read_index_mask(item.mask_path, item.name, problems)  # palette PNGs keep their indices
        if index is None:
            raise DataError(f"{item.mask_path}: {problems[0].message}")
        if index.shape != tuple(shape):
            raise DataError(f"{item.mask_path}: mask is {index.shape[0]}x{index.shape[1]}, its image {shape[0]}x{shape[1]}")
        for k in range(n_classes):
            mask[k] = index == k + 1
    for k, rle in (item.rles or {}).items():
        mask[k] = rle_decode(rle, shape)
    return mask


def load_samples(items: list[Item], n_classes: int, in_chans: int = 1, source: str = "",
                 problems: list | None = None) -> list[SegSample]:
    """Every item decoded into memory, image and mask. With a `problems` list, an item whose image or mask does
    not decode is recorded there and left out (else it raises)."""
    from steelscan.tasks.base import note_unreadable

    out = []
    for it in items:
        try:
            image = read_image(it.path, channels=in_chans)
            out.append(SegSample(it.name, image, read_mask(it, image.shape[:2], n_classes), source))
        except DataError as exc:
            note_unreadable(problems, it, exc)
    return out


def crop_window(mask: np.ndarray, crop: tuple[int, int], rng: np.random.Generator, want_defect: bool,
                tries: int = 20) -> tuple[int, int]:
    """Top-left (y0, x0) of a crop: around a random defect pixel when `want_defect` (guaranteed to contain
    it), else a random window with no defect pixel if one is found in `tries` draws."""
    h, w = mask.shape[-2:]
    ch, cw = crop
    any_defect = mask.any(0)
    if want_defect:
        ys, xs = np.nonzero(any_defect)
        if len(ys):
            k = int(rng.integers(len(ys)))
            y0 = int(np.clip(ys[k] - rng.integers(ch), 0, h - ch))
            x0 = int(np.clip(xs[k] - rng.integers(cw), 0, w - cw))
            return y0, x0
    y0 = x0 = 0
    for _ in range(tries):
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        if want_defect or not any_defect[y0 : y0 + ch, x0 : x0 + cw].any():
            break
    return y0, x0


class CropDataset(Dataset):
    """Random crops: a share `defect_share` of them is centred near a defect pixel of an image that has one,
    the rest are drawn defect-free where the image allows. Item i of an epoch is drawn from a generator seeded
    by (seed, epoch, i): repeatable, and the same under any number of loader workers (`set_epoch` per epoch)."""

    def __init__(self, samples: list[SegSample], crop: tuple[int, int], defect_share: float, crops_per_image: int,
                 mean: float, std: float, transform: A.Compose | None = None, seed: int = 0) -> None:
        if not samples:
            raise SteelscanError("no training images for the crop sampler")
        small = [s for s in samples if s.image.shape[0] < crop[0] or s.image.shape[1] < crop[1]]
        if small:
            raise SteelscanError(f"crop {crop[0]}x{crop[1]} is larger than image {small[0].image_id} "
                                 f"({small[0].image.shape[0]}x{small[0].image.shape[1]})")
        self.samples, self.crop, self.defect_share = samples, tuple(crop), defect_share
        self.crops_per_image, self.mean, self.std = crops_per_image, mean, std
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.defective = [i for i, s in enumerate(samples) if s.mask.any()]
        if defect_share > 0 and not self.defective:
            log.warning("defect_share %.2f but no training image has a defect: every crop is random", defect_share)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples) * self.crops_per_image

    def window(self, index: int) -> tuple[int, int, int, bool]:
        """(sample index, y0, x0, wanted a defect) of item `index` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        want = bool(self.defective) and rng.random() < self.defect_share
        i = self.defective[int(rng.integers(len(self.defective)))] if want else index % len(self.samples)
        y0, x0 = crop_window(self.samples[i].mask, self.crop, rng, want)
        return i, y0, x0, want

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, y0, x0, _ = self.window(index)
        s, (ch, cw) = self.samples[i], self.crop
        image = s.image[y0 : y0 + ch, x0 : x0 + cw]  # [h, w] or [h, w, C]
        mask = s.mask[:, y0 : y0 + ch, x0 : x0 + cw].transpose(1, 2, 0)  # albumentations wants HWC masks
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        y = torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1))).float()
        return to_tensor(image, self.mean, self.std), y


def load_split_samples(roots: list[str | Path], split: str = "val", in_chans: int = 1, val_fraction: float = 0.2,
                       val_remainders: tuple[int, ...] = (4,), fmt: str | None = None) -> list[SegSample]:
    """Images and masks of one side of the split of one or more segmentation folders ("all": every image);
    each sample's `source` is its folder's name. The folders must share their classes."""
    from steelscan.data.formats import read_data
    from steelscan.data.splits import split_items

    if split not in ("all", "train", "val", "test"):
        raise DataError(f"split must be all, train, val or test, got {split!r}")
    out: list[SegSample] = []
    names = None
    for root in roots:
        data = read_data(root, fmt)
        if data.task != "segmentation":
            raise DataError(f"{root} is {data.format} data, a {data.task} layout; expected segmentation masks")
        if names is not None and data.class_names != names:
            raise DataError(f"{root} has classes {data.class_names}; expected those of {roots[0]}: {names}")
        names = data.class_names
        items = data.items if split == "all" else getattr(split_items(data, val_fraction, 0, val_remainders), split)
        out += load_samples(items, len(names), in_chans, Path(root).resolve().name)
    if not out:
        raise DataError(f"no images in {', '.join(map(str, roots))} for the split {split!r}")
    return out
