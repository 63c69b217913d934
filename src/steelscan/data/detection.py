"""NEU-DET as detection training data: the split by image number, in-memory images, box-aware flips, clean images.

A sample is ``(image float32 [1, H, W] in [0, 1], target)`` with target ``{"boxes": float32 [M, 4] xyxy pixels
(0-based, x2/y2 exclusive, as in `steelscan.data.neu`), "labels": int64 [M] model labels (NEU_CLASSES index
+ 1, see `steelscan.models.detector.LABEL_OFFSET`), "image_id": int64}``; M may be 0 (a clean image).
Normalisation and resizing belong to the model (its GeneralizedRCNNTransform), not to the data.

Bad input: `list_neu_det` already refuses, naming the file, a box outside the image, a box of width or
height 0, an unknown class name, an annotation without its image and an image without its annotation.
An annotation with no `<object>` is valid VOC, so here it follows `data.empty_annotations`: skipped
(counted and logged, the default), kept as a clean image, or an error.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from steelscan.data.classes import DETECTION_LABEL_OFFSET as LABEL_OFFSET
from steelscan.data.classification import is_heldout, neu_split
from steelscan.data.neu import IMAGE_SUFFIXES, list_neu_det, load_grey_image, load_neu_det_image
from steelscan.core.errors import SteelscanError

log = logging.getLogger(__name__)

EmptyPolicy = Literal["skip", "clean", "error"]


@dataclass
class DetSample:
    """One image in memory: uint8 [H, W], boxes float32 [M, 4] xyxy pixels, labels int64 [M] NEU_CLASSES indices."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def truth(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "labels": self.labels}


@dataclass
class DetectionSplit:
    train: list[DetSample]
    val: list[DetSample]
    record: dict = field(default_factory=dict)


def _clean_split(name: str, val_remainders: tuple[int, ...]) -> str:
    # Clean images have no NEU number; a checksum of the name splits them stably, one fifth to val.
    return "val" if zlib.crc32(name.encode()) % 5 in val_remainders else "train"


def load_clean_images(root: str | Path) -> list[DetSample]:
    """Every image in a folder as a box-less (defect-free) sample. No image at all is an error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"clean image folder not found: expected a folder at {root}")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not paths:
        raise SteelscanError(f"{root}: expected defect-free images ({'/'.join(IMAGE_SUFFIXES)}), found none")
    empty_b, empty_l = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    return [DetSample(f"clean/{p.name}", load_grey_image(p, None), empty_b, empty_l) for p in paths]


def load_detection_split(
    root: str | Path, val_remainders: tuple[int, ...] = (4,), clean_root: str | Path | None = None,
    empty_annotations: EmptyPolicy = "skip",
) -> DetectionSplit:
    """Read NEU-DET (and optional clean images) into memory and split by image number (`neu_split`).

    Numbers divisible by 5 are held out elsewhere: ignored, counted and logged. The record (for split.json)
    names every image on each side and every skip.
    """
    if empty_annotations not in ("skip", "clean", "error"):
        raise SteelscanError(f"empty_annotations: expected skip, clean or error, got {empty_annotations!r}")
    train: list[DetSample] = []
    val: list[DetSample] = []
    heldout, no_objects = 0, []
    for it in list_neu_det(root):
        if is_heldout(it.number):
            heldout += 1
            continue
        if len(it.boxes) == 0:
            if empty_annotations == "error":
                raise SteelscanError(f"{it.annotation_path}: no <object> in the annotation; expected at least one "
                                     "box (or set data.empty_annotations to skip or clean)")
            if empty_annotations == "skip":
                no_objects.append(it.annotation_path.name)
                continue
        sample = DetSample(f"{it.class_name}_{it.number}", load_neu_det_image(it), it.boxes, it.labels)
        (val if neu_split(it.number, val_remainders) == "val" else train).append(sample)
    if heldout:
        log.warning("ignored %d images with numbers divisible by 5 (held out for independent evaluation)", heldout)
    if no_objects:
        log.warning("skipped %d annotation(s) with no <object>, e.g. %s (data.empty_annotations: skip)",
                    len(no_objects), no_objects[0])
    n_clean = {"train": 0, "val": 0}
    if clean_root is not None:
        for s in load_clean_images(clean_root):
            side = _clean_split(s.name, val_remainders)
            (val if side == "val" else train).append(s)
            n_clean[side] += 1
    record = {
        "rule": f"val = image numbers n with n % 5 in {list(val_remainders)}; n % 5 == 0 held out elsewhere; "
                "clean images by crc32(name) % 5",
        "train": sorted(s.name for s in train),
        "val": sorted(s.name for s in val),
        "ignored_heldout_numbers": heldout,
        "skipped_no_objects": sorted(no_objects),
        "clean_images": n_clean,
    }
    return DetectionSplit(train, val, record)


def blackout(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """'Defect blackout': fill every box with the mean of the pixels outside all boxes (a flat stand-in for
    clean strip), so the image becomes a clean sample. image uint8 [H, W], boxes [M, 4] xyxy pixels."""
    h, w = image.shape
    outside = np.ones((h, w), bool)
    ints = np.clip(np.round(np.asarray(boxes, np.float32).reshape(-1, 4)).astype(int), 0, [w, h, w, h])
    for x1, y1, x2, y2 in ints:
        outside[y1:y2, x1:x2] = False
    out = image.copy()
    out[~outside] = np.uint8(round(float(image[outside].mean() if outside.any() else image.mean())))
    return out


def box_cover(boxes: np.ndarray, shape: tuple[int, int]) -> float:
    """Share of the image's pixels inside at least one box."""
    mask = np.zeros(shape, bool)
    h, w = shape
    for x1, y1, x2, y2 in np.clip(np.round(boxes).astype(int), 0, [w, h, w, h]):
        mask[y1:y2, x1:x2] = True
    return float(mask.mean())


def flip_boxes(boxes: np.ndarray, width: int, height: int, horizontal: bool, vertical: bool) -> np.ndarray:
    """Boxes [M, 4] xyxy (x2 exclusive) of an image flipped left-right and/or up-down: x -> width - x."""
    b = boxes.copy()
    if horizontal:
        b[:, [0, 2]] = width - boxes[:, [2, 0]]
    if vertical:
        b[:, [1, 3]] = height - boxes[:, [3, 1]]
    return b


class DetectionSet(Dataset):
    """Samples held in memory (NEU-DET is 58 MB of grey pixels), augmented on the fly when `train`.

    Randomness comes from torch's generator, which `seed_everything` seeds and DataLoader workers re-seed
    per worker, so runs repeat and workers do not draw the same flips.
    """

    def __init__(self, samples: list[DetSample], train: bool = False, hflip: bool = False, vflip: bool = False,
                 brightness_contrast: float = 0.0, blackout_p: float = 0.0, max_blackout_cover: float = 0.5):
        self.samples = samples
        self.train, self.hflip, self.vflip = train, hflip, vflip
        self.bc, self.blackout_p, self.max_cover = brightness_contrast, blackout_p, max_blackout_cover

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        image, boxes, labels = s.image, s.boxes, s.labels
        if self.train:
            image, boxes, labels = self._augment(image, boxes, labels)
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0).unsqueeze(0)
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
                  "labels": torch.from_numpy(np.ascontiguousarray(labels, np.int64)) + LABEL_OFFSET,
                  "image_id": torch.tensor(i)}
        return x, target

    def _augment(self, image, boxes, labels):
        rand = lambda: float(torch.rand(()))  # noqa: E731
        # Blackout only where boxes leave at least half the image: blanking a whole-image box leaves no steel.
        if self.blackout_p > 0 and len(boxes) and rand() < self.blackout_p \
                and box_cover(boxes, image.shape) <= self.max_cover:
            image, boxes, labels = blackout(image, boxes), boxes[:0], labels[:0]
        h, w = image.shape
        hf, vf = self.hflip and rand() < 0.5, self.vflip and rand() < 0.5
        if hf or vf:
            image = image[:, ::-1] if hf else image
            image = image[::-1] if vf else image
            boxes = flip_boxes(boxes, w, h, hf, vf)
        if self.bc > 0 and rand() < 0.5:
            alpha = 1.0 + (2 * rand() - 1) * self.bc  # contrast
            beta = (2 * rand() - 1) * self.bc * 255.0  # brightness, as a share of the full range
            image = np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)
        return image, boxes, labels


def collate_detection(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images differ in size and box count: keep them as lists (torchvision's detection input)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
