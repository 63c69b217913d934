"""Classification training data: labelled items in memory, augmented on the fly, and the imbalance tools.

A sample is ``(x float32 [C, S, S] normalised, label int64)``; C is the model's input channels. In binary
(gate) mode label 1 = defect, 0 = clean. Images are read once (`steelscan.core.images.read_image`, which
converts channels) and resized by the transform: the data may hold any sizes.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from steelscan.core.errors import DataError
from steelscan.core.images import read_image
from steelscan.data.formats.base import IMAGE_SUFFIXES, Item
from steelscan.data.formats.common import list_images
from steelscan.data.transforms import improved_cutout, to_tensor
from steelscan.tasks.augment import eval_transform

log = logging.getLogger(__name__)


class ClassificationSet(Dataset):
    """Images held in memory (1440 NEU images are 58 MB), augmented on the fly.

    `boxes` maps an item's name to its defect boxes (pixels of that image), for the improved cutout.
    With a `problems` list, an image that does not decode is recorded there and left out (else it raises).
    """

    def __init__(self, items: list[Item], labels: list[int], size: int, mean: float, std: float, in_chans: int = 1,
                 binary: bool = False, augment=None, boxes: dict[str, np.ndarray] | None = None,
                 improved_cutout_p: float = 0.0, seed: int = 0, problems: list | None = None):
        from steelscan.tasks.base import note_unreadable

        self.items: list[Item | None] = []
        self.images, self.labels = [], []
        for it, y in zip(items, labels, strict=True):
            try:
                self.images.append(read_image(it.path, channels=in_chans))
            except DataError as exc:
                note_unreadable(problems, it, exc)
                continue
            self.items.append(it)
            self.labels.append(y)
        self.binary, self.mean, self.std, self.in_chans = binary, mean, std, in_chans
        self.transform = augment if augment is not None else eval_transform(size)
        self.boxes = boxes or {}
        self.cutout_p = improved_cutout_p
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label, item = self.images[i], self.labels[i], self.items[i]
        boxes = self.boxes.get(item.name) if item is not None else None
        if boxes is not None and self.cutout_p > 0 and self.rng.random() < self.cutout_p:
            # Multi-class labels must stay true, so the last box survives; the gate learns "clean" from it.
            image, left = improved_cutout(image, boxes, self.rng, keep_one=not self.binary)
            if self.binary and left == 0:
                label = 0
        image = self.transform(image=image)["image"]
        return to_tensor(image, self.mean, self.std), label

    def add_clean(self, paths: list[Path]) -> None:
        """Defect-free images (binary gate mode): label 0, no item, no boxes."""
        self.images += [read_image(p, channels=self.in_chans) for p in paths]
        self.labels += [0] * len(paths)
        self.items += [None] * len(paths)


def oversample(items: list[Item], class_names: list[str], targets: dict[str, int]) -> list[Item]:
    """Minor-class oversampling: repeat a class's items (cycled, deterministic) up to its target count.

    Repeats are only useful with augmentation on, which makes every copy a different sample.
    """
    out = list(items)
    for name, target in targets.items():
        own = [it for it in items if class_names[it.label] == name]
        if not own:
            raise DataError(f"cannot oversample {name}: no training images of that class")
        out += [own[k % len(own)] for k in range(max(0, target - len(own)))]
    return out


def limit_per_class(items: list[Item], class_names: list[str], limits: dict[str, int]) -> list[Item]:
    """Keep only the first N training images of a class (in item order: deterministic)."""
    for name, limit in limits.items():
        keep = [it for it in items if class_names[it.label] == name][:limit]
        items = [it for it in items if class_names[it.label] != name] + keep
    return items


def balanced_sampler(labels: list[int], seed: int) -> WeightedRandomSampler:
    """Draw every class equally often in expectation (weight 1/count per sample)."""
    counts = Counter(labels)
    weights = torch.tensor([1.0 / counts[y] for y in labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True,
                                 generator=torch.Generator().manual_seed(seed))


def class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (for weighted cross entropy)."""
    counts = torch.bincount(torch.tensor(labels), minlength=n_classes).float().clamp(min=1)
    w = counts.sum() / (n_classes * counts)
    return w / w.mean()


def list_clean_images(root: str | Path) -> list[Path]:
    """Every image file in a folder of defect-free images. No image at all is an error."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"clean image folder not found: expected a folder at {root}")
    paths = list_images(root, recursive=False)
    if not paths:
        raise DataError(f"{root}: expected defect-free images ({'/'.join(IMAGE_SUFFIXES)}), found none")
    return paths
