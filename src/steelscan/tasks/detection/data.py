"""Detection training data: in-memory images with boxes, box-aware flips, defect blackout, clean images.

A sample is ``(image float32 [C, H, W] in [0, 1], target)`` with target ``{"boxes": float32 [M, 4] xyxy pixels
(0-based, x2/y2 exclusive), "labels": int64 [M] model labels (class index + LABEL_OFFSET), "image_id": int64}``;
M may be 0 (a defect-free image). Normalisation and resizing belong to the model (its
GeneralizedRCNNTransform), not to the data. Images may differ in size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from steelscan.core.errors import DataError
from steelscan.core.images import read_image
from steelscan.data.classes import DETECTION_LABEL_OFFSET as LABEL_OFFSET
from steelscan.data.formats.base import Item
from steelscan.tasks.classification.data import list_clean_images

MOSAIC_KEEP = 0.3  # a mosaic window keeps a cut box when this share of its area is inside


@dataclass
class DetSample:
    """One image in memory: uint8 [H, W] or [H, W, C], boxes float32 [M, 4] xyxy pixels, labels int64 [M] class indices."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray

    @property
    def truth(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "labels": self.labels}


def load_samples(items: list[Item], in_chans: int = 1, problems: list | None = None) -> list[DetSample]:
    """Read labelled items into memory in the model's channels. With a `problems` list, an image that does not
    decode is recorded there and left out (else it raises)."""
    from steelscan.tasks.base import note_unreadable

    out = []
    for it in items:
        try:
            out.append(DetSample(it.name, read_image(it.path, channels=in_chans), it.boxes, it.labels))
        except DataError as exc:
            note_unreadable(problems, it, exc)
    return out


def load_clean_images(root: str | Path, in_chans: int = 1) -> list[DetSample]:
    """Every image in a folder as a box-less (defect-free) sample. No image at all is an error."""
    empty_b, empty_l = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    return [DetSample(f"clean/{p.name}", read_image(p, channels=in_chans), empty_b, empty_l)
            for p in list_clean_images(root)]


def blackout(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """'Defect blackout': fill every box with the mean of the pixels outside all boxes (a flat stand-in for
    clean strip), so the image becomes a clean sample. image uint8 [H, W], boxes [M, 4] xyxy pixels."""
    h, w = image.shape[:2]
    outside = np.ones((h, w), bool)
    ints = np.clip(np.round(np.asarray(boxes, np.float32).reshape(-1, 4)).astype(int), 0, [w, h, w, h])
    for x1, y1, x2, y2 in ints:
        outside[y1:y2, x1:x2] = False
    out = image.copy()
    out[~outside] = np.uint8(round(float(image[outside].mean() if outside.any() else image.mean())))
    return out


def box_cover(boxes: np.ndarray, shape: tuple[int, int]) -> float:
    """Share of the image's pixels inside at least one box."""
    h, w = shape[:2]
    mask = np.zeros((h, w), bool)
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
                 brightness_contrast: float = 0.0, blackout_p: float = 0.0, max_blackout_cover: float = 0.5,
                 mosaic: float = 0.0):
        self.samples = samples
        self.train, self.hflip, self.vflip = train, hflip, vflip
        self.bc, self.blackout_p, self.max_cover = brightness_contrast, blackout_p, max_blackout_cover
        self.mosaic = mosaic
        self.same_shape: dict[tuple, list[int]] = {}  # mosaic partners: images of one shape
        for i, smp in enumerate(samples):
            self.same_shape.setdefault(smp.image.shape, []).append(i)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        image, boxes, labels = s.image, s.boxes, s.labels
        if self.train:
            if self.mosaic > 0 and float(torch.rand(())) < self.mosaic:
                image, boxes, labels = self._mosaic(i)
            image, boxes, labels = self._augment(image, boxes, labels)
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
                  "labels": torch.from_numpy(np.ascontiguousarray(labels, np.int64)) + LABEL_OFFSET,
                  "image_id": torch.tensor(i)}
        return x, target

    def _mosaic(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample i and three random images of its shape, each randomly flipped, on a 2x2 canvas; a random window
        of 1-1.5 image sides is cut from it (the model resizes it back: scale jitter). A box keeps its clipped
        part when at least MOSAIC_KEEP of its area and 2 px each way are left."""
        rand = lambda: float(torch.rand(()))  # noqa: E731
        first = self.samples[i]
        h, w = first.image.shape[:2]
        group = self.same_shape[first.image.shape]
        picks = [i] + [group[int(torch.randint(len(group), ()))] for _ in range(3)]
        canvas = np.empty((2 * h, 2 * w, *first.image.shape[2:]), np.uint8)
        boxes, labels = [], []
        for k, j in enumerate(picks):
            s = self.samples[j]
            hf, vf = self.hflip and rand() < 0.5, self.vflip and rand() < 0.5
            img = s.image[:, ::-1] if hf else s.image
            img = img[::-1] if vf else img
            oy, ox = (k // 2) * h, (k % 2) * w
            canvas[oy:oy + h, ox:ox + w] = img
            boxes.append(flip_boxes(s.boxes, w, h, hf, vf) + np.float32([ox, oy, ox, oy]))
            labels.append(s.labels)
        scale = 1.0 + 0.5 * rand()
        ch, cw = min(2 * h, round(h * scale)), min(2 * w, round(w * scale))
        y0, x0 = int(torch.randint(2 * h - ch + 1, ())), int(torch.randint(2 * w - cw + 1, ()))
        b = np.concatenate(boxes).astype(np.float32).reshape(-1, 4)
        clipped = np.clip(b - np.float32([x0, y0, x0, y0]), 0, np.float32([cw, ch, cw, ch]))
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        keep = (area(clipped) >= MOSAIC_KEEP * area(b)) & (clipped[:, 2] - clipped[:, 0] >= 2) \
            & (clipped[:, 3] - clipped[:, 1] >= 2)
        return canvas[y0:y0 + ch, x0:x0 + cw], clipped[keep], np.concatenate(labels)[keep]

    def _augment(self, image, boxes, labels):
        rand = lambda: float(torch.rand(()))  # noqa: E731
        # Blackout only where boxes leave at least half the image: blanking a whole-image box leaves no steel.
        if self.blackout_p > 0 and len(boxes) and rand() < self.blackout_p \
                and box_cover(boxes, image.shape) <= self.max_cover:
            image, boxes, labels = blackout(image, boxes), boxes[:0], labels[:0]
        h, w = image.shape[:2]
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


def load_split_samples(root: str | Path, split: str = "val", in_chans: int = 1, clean_root: str | Path | None = None,
                       val_fraction: float = 0.2, val_remainders: tuple[int, ...] = (4,), fmt: str | None = None,
                       ) -> list[DetSample]:
    """Images with boxes of one side of a detection data set's split ("all": every image), in memory, plus the
    defect-free images of `clean_root` on the same side (split by crc32 of the name, as training does)."""
    from steelscan.data.formats import read_data
    from steelscan.data.splits import checksum_side, split_items

    data = read_data(root, fmt)
    if data.task != "detection":
        raise DataError(f"{root} is {data.format} data, a {data.task} layout; expected detection boxes")
    items = data.items if split == "all" else getattr(split_items(data, val_fraction, 0, val_remainders), split)
    samples = load_samples(items, in_chans)
    if clean_root is not None:
        samples += [s for s in load_clean_images(clean_root, in_chans)
                    if split == "all" or checksum_side(s.name, val_remainders) == split]
    return samples
