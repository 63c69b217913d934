"""Severstal segmentation data: in-memory samples from Kaggle-layout folders, our split, defect-aware crops.

Shapes: a sample's image is uint8 [H, W] (256 x 1600), its mask uint8 [4, H, W] of {0, 1}. A training item
is (image float32 [1, h, w] normalised, mask float32 [4, h, w]) for an (h, w) crop; the presence targets of
the gate are the mask's per-channel maxima (`steelscan.losses.SegmentationLoss`).

Split: an image is in validation when crc32(image id) % 5 is in `val_remainders`, so a folder splits the same
way on every machine, and real and synthetic folders split alike.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from steelscan.config import AugmentConfig
from steelscan.data.severstal import SeverstalDataset
from steelscan.data.transforms import flip_and_photometric, to_tensor
from steelscan.core.errors import SteelscanError

log = logging.getLogger(__name__)


@dataclass
class SegSample:
    image_id: str
    image: np.ndarray  # uint8 [H, W]
    mask: np.ndarray  # uint8 [4, H, W]
    source: str  # the folder's name, e.g. "severstal-sample": metrics are also reported per source


def severstal_split(image_id: str, val_remainders: tuple[int, ...] = (4,)) -> str:
    return "val" if zlib.crc32(image_id.encode()) % 5 in val_remainders else "train"


def load_samples(root: str | Path) -> list[SegSample]:
    """Every image of a Kaggle-layout folder (train.csv + train_images/), decoded into memory."""
    ds = SeverstalDataset.from_root(root)
    if ds.masks_only:
        raise SteelscanError(f"{root}: expected train_images/ beside train.csv (segmentation needs the images)")
    source = Path(root).resolve().name
    return [SegSample(it["image_id"], it["image"], it["mask"], source) for it in (ds[i] for i in range(len(ds)))]


@dataclass
class SegmentationSplit:
    train: list[SegSample]
    val: list[SegSample]
    record: dict


def load_segmentation_split(roots: list[str | Path], val_remainders: tuple[int, ...] = (4,)) -> SegmentationSplit:
    """Load and split one or more Kaggle-layout folders (e.g. synthetic strips plus the real sample)."""
    train, val = [], []
    for root in roots:
        for s in load_samples(root):
            (val if severstal_split(s.image_id, val_remainders) == "val" else train).append(s)
    record = {"rule": f"val = crc32(image id) % 5 in {list(val_remainders)}", "roots": [str(r) for r in roots],
              "train": [f"{s.source}/{s.image_id}" for s in train], "val": [f"{s.source}/{s.image_id}" for s in val]}
    return SegmentationSplit(train, val, record)


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


def crop_transform(cfg: AugmentConfig, seed: int) -> A.Compose:
    """The 1st-place augmentation: hflip, vflip and RandomBrightnessContrast, each switched by the config."""
    return A.Compose(flip_and_photometric(cfg), seed=seed)


class CropDataset(Dataset):
    """Random crops: a share `defect_share` of them is centred near a defect pixel of an image that has one,
    the rest are drawn defect-free where the image allows. Item i of an epoch is drawn from a generator seeded
    by (seed, epoch, i): repeatable, and the same under any number of loader workers (`set_epoch` per epoch)."""

    def __init__(self, samples: list[SegSample], crop: tuple[int, int], defect_share: float, crops_per_image: int,
                 mean: float, std: float, transform: A.Compose | None = None, seed: int = 0) -> None:
        if not samples:
            raise SteelscanError("no training images for the crop sampler")
        small = [s.image_id for s in samples if s.image.shape[0] < crop[0] or s.image.shape[1] < crop[1]]
        if small:
            raise SteelscanError(f"crop {crop[0]}x{crop[1]} is larger than image {small[0]} "
                                 f"({samples[0].image.shape[0]}x{samples[0].image.shape[1]})")
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
        image = s.image[y0 : y0 + ch, x0 : x0 + cw]
        mask = s.mask[:, y0 : y0 + ch, x0 : x0 + cw].transpose(1, 2, 0)  # albumentations wants HWC masks
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        y = torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1))).float()
        return to_tensor(image, self.mean, self.std), y
