"""Classification class folders: `ROOT/<class>/*.png`, or the same under split folders `ROOT/train|val|test/`.

Class names are the folder names (NFC-normalised, sorted; the union across split folders), so a class with
spaces or accents ("rust spot", "ölfleck") is just a folder. Images inside a class folder may sit in
subfolders (e.g. one per day). A class folder with no image still counts as a class: the plant named it.
"""

from __future__ import annotations

from pathlib import Path

from steelscan.core.errors import DataError
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.formats.common import (
    describe, image_size, is_hidden, list_images, nfc, rel_name, require_dir, split_name,
)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def class_folders(root: Path) -> list[tuple[str | None, Path]]:
    """(split, class folder) pairs: split folders on top when every top folder is a split name."""
    top = _subdirs(root)
    splits = [p for p in top if split_name(p.name)]
    if splits and len(splits) < len(top):
        others = [p.name for p in top if not split_name(p.name)]
        raise DataError(
            f"{root}: expected either class folders or split folders (train/val/test) on top, found both: "
            f"{', '.join(p.name for p in splits)} and {', '.join(others[:5])}"
        )
    if splits:
        return [(split_name(s.name), c) for s in splits for c in _subdirs(s)]
    return [(None, c) for c in top]


def read_folders(root: str | Path) -> LabelledData:
    root = require_dir(Path(root), "class folders")
    pairs = class_folders(root)
    if not pairs:
        raise DataError(f"{root}: expected one folder per class (ROOT/<class>/*.png, optionally under "
                        f"train/val/test), found {describe(root)}")
    class_names = sorted({nfc(folder.name) for _, folder in pairs})
    index = {name: i for i, name in enumerate(class_names)}
    items: list[Item] = []
    problems: list[Problem] = []
    for split, folder in pairs:
        for path in list_images(folder):
            name = rel_name(path, root)
            size = image_size(path, name, problems)
            if size is not None:
                items.append(Item(name=name, path=path, split=split, size=size, label=index[nfc(folder.name)]))
    if not items:
        raise DataError(f"{root}: found class folders ({', '.join(class_names[:6])}) but no readable image in them "
                        "(expected .png/.jpg/.bmp/.tif files)")
    return LabelledData("classification", "folders", root, class_names, items, problems)
