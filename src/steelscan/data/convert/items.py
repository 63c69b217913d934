"""What the layout writers share: unique output names, splits, image sizes, the boxes of any task, copying."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from itertools import chain, count
from pathlib import Path, PurePosixPath

import numpy as np

from steelscan.core.errors import DataError
from steelscan.core.images import image_size
from steelscan.data.convert.base import ConvertResult
from steelscan.data.formats.base import SPLITS, Item, LabelledData


def _read_index(path: Path) -> np.ndarray:
    """An index mask PNG as its raw values (palette indices for a palette PNG), [H, W]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            index = np.array(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the mask: {exc}") from None
    return index[..., 0] if index.ndim == 3 else index


class UniqueNames:
    """Unique file stems per output folder (case-insensitive: some file systems are)."""

    def __init__(self) -> None:
        self._taken: dict[str, set[str]] = {}

    def claim(self, folder: str, stem: str, prefix: str | None = None) -> str:
        taken = self._taken.setdefault(folder, set())
        candidates = [stem] + ([f"{prefix}_{stem}"] if prefix else [])
        for candidate in chain(candidates, (f"{stem}_{n}" for n in count(2))):
            if candidate.casefold() not in taken:
                taken.add(candidate.casefold())
                return candidate
        raise AssertionError("unreachable")


def collision_prefix(item: Item) -> str | None:
    """What to put before a colliding name: the item's split, else its source folder."""
    if item.split:
        return item.split
    parent = PurePosixPath(item.name).parent
    return "_".join(parent.parts) or None


def split_of(item: Item, data: LabelledData, default: str | None = "train") -> str | None:
    """The item's own split; an item without one goes to `default` ('train'), or None when no item has one."""
    if item.split is not None:
        return item.split
    return default if data.own_splits else None


def ordered_splits(splits: Iterable[str]) -> list[str]:
    present = set(splits)
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def usable(item: Item, result: ConvertResult) -> bool:
    if not item.path.is_file():
        result.skipped.append(f"{item.name}: image not found")
        return False
    return True


def item_size(item: Item) -> tuple[int, int]:
    """(height, width): the reader's, else from the file header."""
    return tuple(item.size) if item.size is not None else image_size(item.path)


def class_masks(item: Item, size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
    """(class index, uint8 [H, W] mask) for each class a segmentation item shows."""
    if item.mask_path is not None:
        index = _read_index(item.mask_path)
        for value in np.unique(index):
            if value > 0:
                yield int(value) - 1, (index == value).astype(np.uint8)
    elif item.rles:
        from steelscan.data.rle import rle_decode

        for k, rle in sorted(item.rles.items()):
            try:
                mask = rle_decode(rle, size)
            except ValueError as exc:
                raise DataError(f"{item.name}: class {k}: bad RLE: {exc}") from None
            if mask.any():
                yield int(k), mask


def boxes_of(data: LabelledData, item: Item, size: tuple[int, int], result: ConvertResult
             ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (float [M, 4] xyxy, clipped to the image, zero-size dropped) and labels of an item."""
    if data.task == "detection":
        boxes, labels = np.asarray(item.boxes, np.float64).reshape(-1, 4), np.asarray(item.labels, np.int64)
    else:
        from steelscan.data.severstal import mask_to_boxes

        parts = [(mask_to_boxes(mask)[0], k) for k, mask in class_masks(item, size)]
        boxes = np.concatenate([b for b, _ in parts]).astype(np.float64) if parts else np.zeros((0, 4))
        labels = np.concatenate([np.full(len(b), k, np.int64) for b, k in parts]) if parts else np.zeros(0, int)
    h, w = size
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep &= (labels >= 0) & (labels < len(data.class_names))
    result.dropped_boxes += int((~keep).sum())
    return boxes[keep], labels[keep]


def copy_image(item: Item, folder: Path, stem: str) -> str:
    """Copy the image byte for byte as folder/<stem><suffix>; returns the file name."""
    name = stem + item.path.suffix
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(item.path, folder / name)
    return name


def count_written(result: ConvertResult, split: str | None, n: int = 1) -> None:
    key = split or "all"
    result.per_split[key] = result.per_split.get(key, 0) + n


def sort_splits(result: ConvertResult) -> None:
    result.per_split = {s: result.per_split[s] for s in ordered_splits(result.per_split)}
