"""Class folders: classification images copied as they are; detection boxes and segmentation components as
crops, one image each, for a crop classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steelscan.core.errors import DataError
from steelscan.core.images import read_image
from steelscan.data.convert.base import ConvertResult, with_progress
from steelscan.data.convert.items import (
    UniqueNames, boxes_of, collision_prefix, copy_image, count_written, item_size, sort_splits, split_of, usable,
)
from steelscan.data.formats.base import LabelledData

CROP_MARGIN = 0.1  # crop margin, as a share of the box side
CROP_MIN_MARGIN = 2  # pixels


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")


def _crop_box(box: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer crop window (x1, y1, x2, y2) around a box: a margin on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    h, w = size
    mx = max(CROP_MIN_MARGIN, round(CROP_MARGIN * (x2 - x1)))
    my = max(CROP_MIN_MARGIN, round(CROP_MARGIN * (y2 - y1)))
    return (max(0, math.floor(x1) - mx), max(0, math.floor(y1) - my),
            min(w, math.ceil(x2) + mx), min(h, math.ceil(y2) + my))


def write_folders(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = UniqueNames()
    splits = {split_of(it, data) for it in data.items}
    for split in splits:  # every class folder, even an empty one: the class list travels whole
        for name in data.class_names:
            (root.joinpath(*([split] if split else []), name)).mkdir(parents=True, exist_ok=True)
    crops = data.task != "classification"
    result.unit = "crops" if crops else "images"
    for item in with_progress(data.items, "writing class folders", progress):
        if not usable(item, result):
            continue
        split = split_of(item, data)
        base = root.joinpath(*([split] if split else []))
        if not crops:
            if item.label is None or not 0 <= item.label < len(data.class_names):
                result.skipped.append(f"{item.name}: no class label")
                continue
            cls = data.class_names[item.label]
            stem = names.claim(f"{split}/{cls}", item.path.stem, collision_prefix(item))
            copy_image(item, base / cls, stem)
            result.images += 1
            count_written(result, split)
            continue
        size = item_size(item)
        boxes, labels = boxes_of(data, item, size, result)
        result.images += 1
        if not len(boxes):
            continue
        try:
            image = read_image(item.path, channels=None)  # the pixels as stored: grey or RGB
        except DataError:  # ImageError included
            result.skipped.append(f"{item.name}: cannot decode the image")
            continue
        size = image.shape[:2]  # the pixels, not the header we were told
        for k, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
            cls = data.class_names[label]
            x1, y1, x2, y2 = _crop_box(box, size)
            if x2 <= x1 or y2 <= y1:
                result.dropped_boxes += 1
                continue
            stem = names.claim(f"{split}/{cls}", f"{item.path.stem}_{k}", collision_prefix(item))
            _write_png(base / cls / f"{stem}.png", image[y1:y2, x1:x2])
            count_written(result, split)
    sort_splits(result)
