"""Segmentation mask folders: `ROOT/images/` + `ROOT/masks/` (same relative path, mask `.png`), optionally
under split folders (`images/train/`, `masks/train/`). Each mask is one index image: 0 background, k = class k-1.

Class names come from `ROOT/classes.yaml` (`classes: [...]`, or a plain list) or `ROOT/dataset.yaml`
(`classes:` / `names:`); a leading "background" entry is dropped, since 0 already is the background.
`present` is read from the mask pixels. Pixel values above K (e.g. 255, the usual "ignore" value) are
recorded as `class_out_of_range` and left in the file: loaders should treat them as ignore.
An image without a mask is read as defect-free (`image_without_label`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from steelscan.core.errors import DataError
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.formats.common import (
    child, describe, image_size, is_hidden, list_images, read_class_yaml, rel_name, require_dir, split_name,
)

CLASS_FILES = ("classes.yaml", "classes.yml", "dataset.yaml", "data.yaml")
_BACKGROUND = {"background", "_background_", "__background__", "bg"}


def mask_classes(root: Path) -> list[str]:
    for name in CLASS_FILES:
        names = read_class_yaml(root / name)
        if names:
            if names[0].lower() in _BACKGROUND:
                names = names[1:]
            if names:
                return names
    raise DataError(f"{root}: expected the class list in classes.yaml (classes: [scratch, ...]) or dataset.yaml "
                    f"(classes: or names:), found {describe(root)}")


def read_mask(path: Path, name: str, problems: list[Problem]) -> np.ndarray | None:
    """[H, W] integer index mask; None (a `bad_label` problem) for an unreadable or colour mask."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, arr = im.mode, np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        problems.append(Problem("bad_label", name, f"mask is not a readable PNG: {exc}"))
        return None
    if arr.ndim == 3:
        # A grey mask saved as RGB is fine; real colours would need a colour -> class table we do not have.
        if arr.shape[2] in (3, 4) and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
            arr = arr[..., 0]
        else:
            problems.append(Problem("bad_label", name, f"expected an index mask (one channel, 0 = background), "
                                                       f"got a {mode} colour image"))
            return None
    return arr.astype(np.int64)


def read_masks(root: str | Path) -> LabelledData:
    root = require_dir(Path(root), "mask folders")
    images_dir, masks_dir = child(root, "images"), child(root, "masks")
    if images_dir is None or masks_dir is None:
        raise DataError(f"{root}: expected folders images/ and masks/ (index PNGs), found {describe(root)}")
    class_names = mask_classes(root)
    k = len(class_names)
    problems: list[Problem] = []
    items: list[Item] = []
    used: set[Path] = set()
    for image in list_images(images_dir):
        rel = image.relative_to(images_dir)
        split = split_name(rel.parts[0]) if len(rel.parts) > 1 else None
        name = rel_name(image, root)
        mask_path = masks_dir / rel.with_suffix(".png")
        used.add(mask_path.resolve())
        size = image_size(image, name, problems)
        if size is None:
            continue
        if not mask_path.is_file():
            problems.append(Problem("image_without_label", name,
                                    f"expected mask {rel_name(mask_path, root)}, missing; read as defect-free"))
            items.append(Item(name=name, path=image, split=split, size=size))
            continue
        mask = read_mask(mask_path, rel_name(mask_path, root), problems)
        if mask is None:
            continue
        if mask.shape != size:
            problems.append(Problem("bad_label", name, f"mask is {mask.shape[1]}x{mask.shape[0]}, "
                                                       f"the image {size[1]}x{size[0]}; dropped"))
            continue
        values = np.unique(mask)
        high = values[(values > k) | (values < 0)]
        if high.size:
            problems.append(Problem("class_out_of_range", name, f"mask values {high.tolist()[:5]} outside 0..{k} "
                                                                f"({k} classes); treat as ignore"))
        present = tuple(int(v) - 1 for v in values if 1 <= v <= k)
        items.append(Item(name=name, path=image, split=split, size=size, mask_path=mask_path, present=present))
    for mask_path in sorted(masks_dir.rglob("*.png")):
        hidden = any(is_hidden(p) for p in mask_path.relative_to(masks_dir).parts)
        if mask_path.resolve() not in used and not hidden:
            problems.append(Problem("label_without_image", rel_name(mask_path, root), "no image of this name"))
    if not items:
        raise DataError(f"{images_dir}: expected images with masks in {masks_dir.name}/, found no readable image")
    return LabelledData("segmentation", "masks", root, class_names, items, problems)
