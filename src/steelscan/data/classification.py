"""NEU-CLS as training data: the split by image number, in-memory images, labels, and the imbalance tools.

A sample is ``(x float32 [1, S, S], label int64)``. In binary (gate) mode label 1 = defect, 0 = clean.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from steelscan.config import RunConfig
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.neu import NeuClsItem, list_neu_cls, list_neu_det, load_grey_image
from steelscan.data.transforms import eval_transform, improved_cutout, to_tensor, train_transform
from steelscan.core.errors import SteelscanError

log = logging.getLogger(__name__)


def is_heldout(number: int) -> bool:
    """NEU numbers divisible by 5 are held out elsewhere for independent evaluation: never train or tune on them."""
    return number % 5 == 0


def neu_split(number: int, val_remainders: tuple[int, ...] = (4,)) -> str:
    """'train' or 'val' by image number, so that NEU-CLS and NEU-DET split alike (one rule for every model)."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 1:
        raise SteelscanError(f"expected a NEU image number >= 1, got {number!r}")
    if is_heldout(number):
        raise SteelscanError(f"image number {number} is divisible by 5: that fifth of NEU is held out for independent evaluation")
    return "val" if number % 5 in val_remainders else "train"


@dataclass
class Split:
    train: list[NeuClsItem]
    val: list[NeuClsItem]
    record: dict = field(default_factory=dict)


def make_split(cfg: RunConfig) -> Split:
    """Split NEU-CLS by number; apply the minority limit (first N by number, deterministic) to train only."""
    items = list_neu_cls(cfg.data.root)
    unknown = set(cfg.data.limit_per_class) | set(cfg.imbalance.oversample_to)
    unknown -= set(NEU_CLASSES)
    if unknown:
        raise SteelscanError(f"unknown class name(s) {sorted(unknown)}; expected one of {', '.join(NEU_CLASSES)}")
    train, val, skipped = [], [], 0
    for it in items:
        if is_heldout(it.number):
            skipped += 1
            continue
        (train if neu_split(it.number, cfg.data.val_remainders) == "train" else val).append(it)
    if skipped:
        log.warning("ignored %d images with numbers divisible by 5 (held out for independent evaluation)", skipped)
    for name, limit in cfg.data.limit_per_class.items():
        keep = [it for it in train if it.class_name == name][:limit]
        train = [it for it in train if it.class_name != name] + keep
    record = {
        "rule": f"val = image numbers n with n % 5 in {list(cfg.data.val_remainders)}; n % 5 == 0 held out elsewhere",
        "train": sorted(f"{it.class_name}_{it.number}" for it in train),
        "val": sorted(f"{it.class_name}_{it.number}" for it in val),
        "ignored_heldout_numbers": skipped,
    }
    return Split(sorted(train, key=lambda i: (i.label, i.number)), val, record)


def load_det_boxes(det_root: str | Path) -> dict[tuple[str, int], np.ndarray]:
    """NEU-DET boxes keyed by (class_name, number): the same photographs as NEU-CLS."""
    return {it.key: it.boxes for it in list_neu_det(det_root)}


class ClassificationSet(Dataset):
    """Images held in memory (1440 NEU images are 58 MB), augmented on the fly."""

    def __init__(
        self, items: list[NeuClsItem], size: int, mean: float, std: float, binary: bool = False,
        augment=None, boxes: dict | None = None, improved_cutout_p: float = 0.0, seed: int = 0,
    ):
        self.items = items
        self.images = [load_grey_image(it.path) for it in items]
        self.labels = [1 if binary else it.label for it in items]
        self.binary, self.mean, self.std = binary, mean, std
        self.transform = augment if augment is not None else eval_transform(size)
        self.boxes = boxes or {}
        self.cutout_p = improved_cutout_p
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.images[i], self.labels[i]
        item = self.items[i]
        boxes = self.boxes.get(item.key) if item is not None else None
        if boxes is not None and self.cutout_p > 0 and self.rng.random() < self.cutout_p:
            # Multi-class labels must stay true, so the last box survives; the gate learns "clean" from it.
            image, left = improved_cutout(image, boxes, self.rng, keep_one=not self.binary)
            if self.binary and left == 0:
                label = 0
        image = self.transform(image=image)["image"]
        return to_tensor(image, self.mean, self.std), label

    def add_clean(self, images: list[np.ndarray]) -> None:
        """Defect-free images (binary gate mode): label 0, no item, no boxes."""
        if not self.binary:
            raise SteelscanError("clean images need binary mode (data.binary: true): the NEU classes have no 'clean'")
        self.images += images
        self.labels += [0] * len(images)
        self.items += [None] * len(images)


def oversample(items: list[NeuClsItem], targets: dict[str, int]) -> list[NeuClsItem]:
    """Minor-class oversampling: repeat a class's items (cycled, deterministic) up to its target count.

    Repeats are only useful with augmentation on, which makes every copy a different sample.
    """
    out = list(items)
    for name, target in targets.items():
        own = [it for it in items if it.class_name == name]
        if not own:
            raise SteelscanError(f"cannot oversample {name}: no training images of that class")
        out += [own[k % len(own)] for k in range(max(0, target - len(own)))]
    return out


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


def build_datasets(cfg: RunConfig, mean: float, std: float) -> tuple[ClassificationSet, ClassificationSet, Split]:
    split = make_split(cfg)
    train_items = oversample(split.train, cfg.imbalance.oversample_to) if cfg.imbalance.oversample_to else split.train
    boxes = load_det_boxes(cfg.augment.det_root) if cfg.augment.improved_cutout > 0 else None
    size = cfg.data.image_size
    train = ClassificationSet(
        train_items, size, mean, std, binary=cfg.data.binary, augment=train_transform(cfg.augment, size, cfg.seed),
        boxes=boxes, improved_cutout_p=cfg.augment.improved_cutout, seed=cfg.seed,
    )
    val = ClassificationSet(split.val, size, mean, std, binary=cfg.data.binary)
    if cfg.data.clean_root is not None:
        _add_clean(cfg, train, val, split)
    return train, val, split


def _add_clean(cfg: RunConfig, train: ClassificationSet, val: ClassificationSet, split: Split) -> None:
    """data.clean_root in gate mode: the clean class, split as detection splits it (crc32 of the name), so a
    gate and a detector trained on the same folders never see each other's validation images."""
    from steelscan.data.detection import _clean_split, load_clean_images  # detection imports this module

    if not cfg.data.binary:
        log.warning("data.clean_root is ignored: clean images are used by detection and the binary gate only")
        return
    sides: dict[str, list] = {"train": [], "val": []}
    for s in load_clean_images(cfg.data.clean_root):
        sides[_clean_split(s.name, cfg.data.val_remainders)].append(s)
    train.add_clean([s.image for s in sides["train"]])
    val.add_clean([s.image for s in sides["val"]])
    split.record["clean_images"] = {k: sorted(s.name for s in v) for k, v in sides.items()}
