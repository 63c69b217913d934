"""Severstal-style RLE CSV with any number of classes and any image size: `ROOT/train.csv`
(`ImageId,ClassId,EncodedPixels`, ClassId 1..K; Kaggle's older `ImageId_ClassId,EncodedPixels` too) +
`ROOT/train_images/`. Images without a row are defect-free. Format name `rle` (alias `severstal`).

Class names: `ROOT/classes.yaml` (`classes: [...]`) when present, else "1".."K" with K the largest ClassId,
or 4 when the set looks like Kaggle's Severstal (ClassId <= 4 and 1600x256 images), so a subset missing
class 4 keeps Severstal's four classes. `data.severstal.read_train_csv` is not reused: it stops at the first
bad line and accepts ClassId 1..4 only; RLE strings are checked here for shape only, decoding is the loader's.
A labels-only copy (train.csv + image_ids.txt, no train_images/) is read for statistics, with one problem.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.classes import SEVERSTAL_CLASSES, SEVERSTAL_SHAPE
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.formats.common import describe, image_size, list_images, read_class_yaml, require_dir
from steelscan.data.severstal import NEW_HEADER, OLD_HEADER, read_image_ids

Row = tuple[str, int, str, int]  # image id, ClassId (1-based), RLE, csv line


def rle_problem(rle: str, n_pixels: int | None) -> str | None:
    """Why an RLE string is malformed (None when it is fine): cheap, without decoding the mask."""
    try:
        values = np.array(rle.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        return "expected integer 'start length' pairs"
    if values.size % 2:
        return f"expected an even number of values, got {values.size}"
    starts, lengths = values[0::2], values[1::2]
    if (starts < 1).any() or (lengths < 1).any():
        return "starts (1-indexed) and lengths must be >= 1"
    ends = starts - 1 + lengths
    if (starts[1:] - 1 < ends[:-1]).any():
        return "runs must be sorted and must not overlap"
    if n_pixels is not None and ends.max() > n_pixels:
        return f"a run ends at pixel {int(ends.max())}, past the image's {n_pixels} pixels"
    return None


def read_rows(csv_path: Path, problems: list[Problem]) -> list[Row]:
    """Non-empty mask rows of train.csv; a bad line is a `bad_label` problem, a bad header a DataError."""
    rows: list[Row] = []
    seen: set[tuple[str, int]] = set()
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: Excel's BOM
            reader = csv.reader(fh)
            header = tuple(h.strip() for h in next(reader, ()))
            if header not in (NEW_HEADER, OLD_HEADER):
                raise DataError(f"{csv_path}: expected the header {','.join(NEW_HEADER)} (or "
                                f"{','.join(OLD_HEADER)}), got {','.join(header) or '(empty file)'!r}")
            for line, record in enumerate(reader, start=2):
                if not any(v.strip() for v in record):
                    continue
                if len(record) != len(header):
                    problems.append(Problem("bad_label", f"train.csv:{line}",
                                            f"expected {len(header)} fields, got {len(record)}"))
                    continue
                if header == NEW_HEADER:
                    image_id, class_text, rle = (v.strip() for v in record)
                else:
                    image_id, _, class_text = record[0].strip().rpartition("_")
                    rle = record[1].strip()
                if not image_id or not class_text.isdigit() or int(class_text) < 1:
                    problems.append(Problem("bad_label", f"train.csv:{line}",
                                            f"expected an ImageId and a ClassId 1..K, got {record[:2]}"))
                    continue
                if (image_id, int(class_text)) in seen:
                    problems.append(Problem("bad_label", f"train.csv:{line}",
                                            f"second row for image {image_id} class {class_text}; dropped"))
                    continue
                seen.add((image_id, int(class_text)))
                rows.append((image_id, int(class_text), rle, line))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_path}: not a readable CSV text file: {exc}") from None
    return rows


def read_rle(root: str | Path) -> LabelledData:
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        root, csv_path = root.parent, root
    else:
        root = require_dir(root, "RLE CSV")
        csv_path = root / "train.csv"
    if not csv_path.is_file():
        raise DataError(f"{root}: expected train.csv (ImageId,ClassId,EncodedPixels) + train_images/, "
                        f"found {describe(root)}")
    problems: list[Problem] = []
    rows = read_rows(csv_path, problems)
    image_dir = root / "train_images"
    has_images = image_dir.is_dir()
    if (root / "image_ids.txt").is_file():
        try:
            ids = read_image_ids(root / "image_ids.txt")
        except SteelscanError as exc:
            raise DataError(str(exc)) from None
    elif has_images:
        ids = [p.relative_to(image_dir).as_posix() for p in list_images(image_dir)]
    else:
        ids = list(dict.fromkeys(r[0] for r in rows))
    sizes: dict[str, tuple[int, int] | None] = {}
    if has_images:
        for image_id in ids:
            if (image_dir / image_id).is_file():
                sizes[image_id] = image_size(image_dir / image_id, f"train_images/{image_id}", problems)
    max_class = max((r[1] for r in rows), default=0)
    known = {s for s in sizes.values() if s is not None}
    severstal = max_class <= len(SEVERSTAL_CLASSES) and known <= {SEVERSTAL_SHAPE}
    class_names = read_class_yaml(root / "classes.yaml", ("classes", "names"))
    if class_names is None:
        k = max(max_class, len(SEVERSTAL_CLASSES)) if severstal else max_class
        if k == 0:
            raise DataError(f"{csv_path}: no mask row and no classes.yaml: the class list is unknown")
        class_names = [str(i) for i in range(1, k + 1)]
    by_id: dict[str, dict[int, str]] = {}
    wanted = set(ids)
    for image_id, class_id, rle, line in rows:
        where = f"train.csv:{line}"
        if class_id > len(class_names):
            problems.append(Problem("class_out_of_range", where, f"ClassId {class_id} is not in 1..{len(class_names)}"))
            continue
        if image_id not in wanted:
            problems.append(Problem("label_without_image", where, f"image {image_id} is not in the image list"))
            continue
        if not rle:
            continue  # Kaggle's first format lists absent classes with an empty mask
        size = sizes.get(image_id) or (SEVERSTAL_SHAPE if severstal and not has_images else None)
        why = rle_problem(rle, size[0] * size[1] if size else None)
        if why:
            problems.append(Problem("bad_label", where, f"image {image_id} class {class_id}: bad RLE: {why}"))
            continue
        by_id.setdefault(image_id, {})[class_id - 1] = rle
    items: list[Item] = []
    for image_id in ids:
        rles = by_id.get(image_id, {})
        path = image_dir / image_id
        if has_images:
            if not path.is_file():
                problems.append(Problem("label_without_image", f"train_images/{image_id}", "listed, file missing"))
                continue
            size = sizes.get(image_id)
            if size is None:
                continue  # unreadable: already a problem
        else:
            # Labels-only copy: Kaggle's Severstal images are all 1600x256, other sizes are unknown.
            size = SEVERSTAL_SHAPE if severstal else None
        items.append(Item(name=f"train_images/{image_id}", path=path, size=size, rles=dict(sorted(rles.items())),
                          present=tuple(sorted(rles))))
    if not has_images:
        problems.append(Problem("label_without_image", "train_images/",
                                f"labels-only copy (no train_images/): {len(items)} items kept for statistics, "
                                "their images are absent"))
    if not items:
        raise DataError(f"{root}: train.csv and train_images/ give no readable image")
    return LabelledData("segmentation", "rle", root, class_names, items, problems)
