"""Ultralytics YOLO layout: `data.yaml` (path, train, val, test, names) + one `labels/*.txt` per image.

ROOT may be the yaml itself or a folder holding `data.yaml` / `dataset.yaml`. `path` is relative to the yaml;
each split is a folder of images, a .txt list of image paths, or a list of those. The label of
`.../images/.../x.jpg` is `.../labels/.../x.txt` (the last `images` folder swapped for `labels`), one
`cls cx cy w h` line per box, normalised to the image size, which is read from the image header.
A missing txt is a defect-free image worth a warning (`image_without_label`); an empty txt is defect-free.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import yaml

from steelscan.core.errors import DataError
from steelscan.data.formats.base import IMAGE_SUFFIXES, Item, LabelledData, Problem
from steelscan.data.formats.common import (
    as_arrays, check_box, describe, image_size, is_image, list_images, names_from, rel_name,
)

log = logging.getLogger(__name__)

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "test": "test"}


def find_yaml(root: Path) -> Path | None:
    if root.is_file():
        return root if root.suffix.lower() in (".yaml", ".yml") else None
    return next((root / n for n in YAML_NAMES if (root / n).is_file()), None)


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")  # no images/ folder: the txt sits beside the image


def _has_image(txt: Path) -> bool:
    """Whether a label file's image exists (the last `labels` folder swapped back for `images`, any suffix)."""
    parts = list(txt.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            stem = Path(*parts).with_suffix("")
            return any(stem.with_name(stem.name + s).is_file() for sfx in IMAGE_SUFFIXES for s in (sfx, sfx.upper()))
    return True


def _listed_images(entry: str, base: Path, yaml_path: Path, split: str, problems: list[Problem]) -> list[Path]:
    path = Path(entry) if Path(entry).is_absolute() else base / entry
    if path.is_dir():
        return list_images(path)
    if path.is_file() and path.suffix.lower() == ".txt":
        images = []
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            line = line.strip()
            if not line:
                continue
            # Ultralytics reads "./x" against the list's folder; other relative lines are tried there, then `path`.
            candidates = [Path(line)] if Path(line).is_absolute() else [path.parent / line, base / line]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                problems.append(Problem("label_without_image", line, f"listed in {path.name} ({split}), not found"))
            elif is_image(found):
                images.append(found)
        return images
    if path.is_file() and is_image(path):
        return [path]
    if split == "test":  # data.yaml files often name a test folder nobody made
        log.warning("%s: test entry %s does not exist; no test split", yaml_path, path)
        return []
    raise DataError(f"{yaml_path}: {split}: expected a folder of images or a .txt list at {path}, found nothing")


def parse_label(txt: Path, size: tuple[int, int], n_classes: int, name: str, problems: list[Problem]):
    """Boxes of one YOLO txt as pixel xyxy. Polygon lines (YOLO-seg) become their bounding box, as ultralytics does."""
    height, width = size
    boxes, labels = [], []
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("bad_label", name, f"{txt.name}: cannot read the label file: {exc}"))
        return as_arrays(boxes, labels)
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{txt.name} line {n}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            problems.append(Problem("bad_label", name, f"{where}: expected numbers 'cls cx cy w h', got {line!r:.60}"))
            continue
        cls = values[0]
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            xyxy = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        elif len(values) >= 7 and len(values) % 2 == 1:
            xs, ys = values[1::2], values[2::2]
            xyxy = (min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height)
        else:
            problems.append(Problem("bad_label", name, f"{where}: expected 5 fields 'cls cx cy w h' (or a polygon), "
                                                       f"got {len(values)}"))
            continue
        if not math.isfinite(cls) or cls != int(cls) or not 0 <= cls < n_classes:
            problems.append(Problem("class_out_of_range", name,
                                    f"{where}: class id {fields[0]} is not in 0..{n_classes - 1}; dropped"))
            continue
        box = check_box(xyxy, size, name, where, problems)
        if box is not None:
            boxes.append(box)
            labels.append(int(cls))
    return as_arrays(boxes, labels)


def _class_names(doc: dict, yaml_path: Path) -> list[str]:
    if doc.get("names") is not None:
        return names_from(doc["names"], yaml_path)
    if isinstance(doc.get("nc"), int) and doc["nc"] > 0:
        return [str(i) for i in range(doc["nc"])]
    raise DataError(f"{yaml_path}: expected `names:` (a list, or a mapping {{0: name, ...}}), found none")


def read_yolo(root: str | Path) -> LabelledData:
    root = Path(root)
    yaml_path = find_yaml(root)
    if yaml_path is None:
        found = describe(root) if root.is_dir() else ("nothing" if not root.exists() else f"the file {root.name}")
        raise DataError(f"{root}: expected a YOLO data.yaml (or dataset.yaml, or the yaml itself), found {found}")
    try:
        doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{yaml_path}: not readable YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train/val/names, got {type(doc).__name__}")
    class_names = _class_names(doc, yaml_path)
    base = yaml_path.parent / str(doc["path"]) if doc.get("path") else yaml_path.parent
    if not base.is_dir():
        raise DataError(f"{yaml_path}: path: expected the data set folder at {base}, found nothing")
    problems: list[Problem] = []
    items: list[Item] = []
    seen: set[Path] = set()
    label_dirs: set[Path] = set()
    for key, split in SPLIT_KEYS.items():
        entries = doc.get(key)
        entries = [entries] if isinstance(entries, str) else entries or []
        for entry in entries:
            for image in _listed_images(str(entry), base, yaml_path, split, problems):
                if image.resolve() in seen:  # val: and test: often name the same folder; keep the first
                    continue
                seen.add(image.resolve())
                name = rel_name(image, base)
                size = image_size(image, name, problems)
                if size is None:
                    continue
                txt = label_path(image)
                if txt.parent != image.parent:
                    label_dirs.add(txt.parent)
                if txt.is_file():
                    boxes, labels = parse_label(txt, size, len(class_names), name, problems)
                else:
                    problems.append(Problem("image_without_label", name,
                                            f"expected {rel_name(txt, base)}, missing; read as defect-free"))
                    boxes, labels = as_arrays([], [])
                items.append(Item(name=name, path=image, split=split, size=size, boxes=boxes, labels=labels))
    for folder in sorted(label_dirs):
        for txt in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
            if txt.name != "classes.txt" and not _has_image(txt):  # labelImg writes classes.txt beside the labels
                problems.append(Problem("label_without_image", rel_name(txt, base), "no image of this name"))
    if not items:
        raise DataError(f"{yaml_path}: train/val/test name no readable image (expected folders of images "
                        f"or .txt lists under {base})")
    return LabelledData("detection", "yolo", base, class_names, items, problems)
