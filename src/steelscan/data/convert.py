"""Write labelled data in another layout: `steelscan convert SRC DST --to {yolo,coco,voc,folders}`.

`convert(src, dst, to)` reads SRC with `steelscan.data.formats.read_data` (any layout) and hands the
`LabelledData` to `write_data(data, dst, to)`, which writes exactly the layout the readers read:

- yolo: DST/images/<split>/<file>, DST/labels/<split>/<stem>.txt ("cls cx cy w h", normalised, 6 decimals;
  a defect-free image gets an empty file) and DST/data.yaml (`path: .`, one entry per split present,
  `names` as {id: name}). An item without a split goes to train.
- coco: DST/images/<file>, DST/annotations/instances_<split>.json (instances_all.json when the data has no
  split): categories 1..K in class order, images with width/height, annotations with bbox xywh, area,
  iscrowd 0.
- voc: DST/Annotations/<stem>.xml, DST/JPEGImages/<file>, DST/ImageSets/Main/<split>.txt. Boxes are written
  1-based inclusive (xmin = round(x1) + 1, xmax = round(x2)); the readers take x1 = xmin - 1, x2 = xmax.
- folders: classification data as DST/[<split>/]<class>/<file>. Detection data becomes a crop classifier's
  data: each box's crop (a margin of 10% of its side, at least 2 px, clipped to the image) is written as
  DST/[<split>/]<class>/<stem>_<k>.png; segmentation data likewise, one crop per connected component.

Segmentation data written as yolo/coco/voc becomes one box per 8-connected component of each class mask
(boxes only, no polygons). Classification data has no boxes and is refused for those three.

Images are copied byte for byte (`shutil.copy2`); file names stay unique inside each output folder (a
colliding name gets its split or source folder as a prefix, then a counter). Class names travel exactly,
in UTF-8. The split of the source (`Item.split`) is kept, so e.g. NEU-DET written as YOLO and as COCO holds
the same train/val images.

DST must be absent or empty. Everything is written into a hidden folder beside DST that is renamed to DST
only at the end, so a failure leaves neither a half-written DST nor anything of the user's touched.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, count
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from steelscan.core.errors import DataError
from steelscan.data.formats.base import SPLITS, Item, LabelledData

TARGETS: tuple[str, ...] = ("yolo", "coco", "voc", "folders")
CROP_MARGIN = 0.1  # crop margin, as a share of the box side
CROP_MIN_MARGIN = 2  # pixels
NO_BOXES = ("classification data has no boxes; expected detection or segmentation data; "
            "--to folders works (one class folder per class)")


@dataclass
class ConvertResult:
    dst: Path
    to: str
    task: str
    class_names: list[str]
    per_split: dict[str, int] = field(default_factory=dict)  # files written per split (images or crops)
    unit: str = "images"  # "images" or "crops"
    images: int = 0  # source images used
    boxes: int = 0  # boxes written (yolo, coco, voc)
    dropped_boxes: int = 0  # zero size once clipped to the image (or rounded, for VOC), or a class outside the list
    skipped: list[str] = field(default_factory=list)  # items not written: missing or unreadable image, no label

    def summary(self) -> str:
        splits = ", ".join(f"{s} {n}" for s, n in self.per_split.items()) or "none"
        total = sum(self.per_split.values())
        what = f"{total} {self.unit} ({splits})"
        if self.unit == "crops":
            what += f" from {self.images} images"
        elif self.to != "folders":
            what += f" with {self.boxes} boxes"
        extra = ""
        if self.dropped_boxes:
            extra += f"; {self.dropped_boxes} boxes dropped (zero size in the image, or no class)"
        if self.skipped:
            extra += f"; {len(self.skipped)} items skipped (e.g. {self.skipped[0]})"
        names = ", ".join(self.class_names[:8]) + (f", ... ({len(self.class_names) - 8} more)"
                                                    if len(self.class_names) > 8 else "")
        return f"wrote {what}, {len(self.class_names)} classes ({names}) as {self.to} to {self.dst}{extra}"


# ----------------------------------------------------------------------------------------------- images


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header."""
    from steelscan.core.images import image_size

    return image_size(path)


def _image_channels(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return 1 if im.mode in ("L", "LA", "La", "1", "I", "I;16", "F") else 3
    except (OSError, ValueError):
        return 3


def _read_image(path: Path) -> np.ndarray:
    """The pixels as stored: grey [H, W] or RGB [H, W, 3] (for cropping)."""
    from steelscan.core.images import read_image

    return read_image(path, channels=None)


def _read_index(path: Path) -> np.ndarray:
    """An index mask PNG as its raw values (palette indices for a palette PNG), [H, W]."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            index = np.array(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the mask: {exc}") from None
    return index[..., 0] if index.ndim == 3 else index


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG")


# ----------------------------------------------------------------------------------------------- public API


def convert(src: str | Path, dst: str | Path, to: str, format: str | None = None,
            progress: bool = False) -> ConvertResult:
    """Read `src` (layout `format`, detected when None) and write it to `dst` in layout `to`."""
    from steelscan.data.formats import read_data

    to = _check_target(to)
    _check_dst(Path(dst))  # before reading: a refused DST should not cost a full read
    data = read_data(src, format=format)
    return write_data(data, dst, to, progress=progress)


def write_data(data: LabelledData, dst: str | Path, to: str, progress: bool = False) -> ConvertResult:
    """Write `data` to the absent or empty folder `dst` in layout `to` (one of TARGETS)."""
    to = _check_target(to)
    if data.task == "classification" and to != "folders":
        raise DataError(f"cannot write {to}: {NO_BOXES}")
    if to == "folders":
        for name in data.class_names:
            _check_folder_name(name)
    dst = Path(dst)
    _check_dst(dst)
    result = ConvertResult(dst=dst, to=to, task=data.task, class_names=list(data.class_names))
    with _staging(dst) as tmp:
        _WRITERS[to](data, tmp, result, progress)
        if not result.images:
            why = f" (e.g. {result.skipped[0]})" if result.skipped else ""
            raise DataError(f"{data.root}: no item could be written{why}; expected labelled images")
    return result


def _check_target(to) -> str:
    to = str(getattr(to, "value", to))
    if to not in TARGETS:
        raise DataError(f"unknown target layout {to!r}; expected one of {', '.join(TARGETS)}")
    return to


def _check_dst(dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        if not dst.is_dir():
            raise DataError(f"destination {dst} exists and is not a folder; expected an absent or empty folder")
        if any(dst.iterdir()):
            raise DataError(f"destination {dst} is not empty; expected an absent or empty folder "
                            "(convert never writes over existing files)")


def _check_folder_name(name: str) -> None:
    bad = (not name or name.strip() != name or name in (".", "..") or any(c in name for c in "/\\\0")
           or any(ord(c) < 32 for c in name))
    if bad:
        raise DataError(f"class name {name!r} cannot be a folder name (empty, '.', '..', '/', '\\', control "
                        "characters or surrounding spaces); rename the class or convert to yolo, coco or voc")


@contextmanager
def _staging(dst: Path) -> Iterator[Path]:
    """A fresh hidden folder beside `dst`, renamed to `dst` on success and removed on failure."""
    dst = dst.absolute()
    tmp = dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise DataError(f"cannot create the destination {dst}: {exc.strerror or exc}") from None
    try:
        yield tmp
        _check_dst(dst)  # still absent or empty
        if dst.exists():
            dst.rmdir()
        os.rename(tmp, dst)
    except OSError as exc:  # disk full, permissions: about the user's destination, not a bug
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"writing {dst} failed, nothing was kept: {exc.strerror or exc}"
                        + (f" ({exc.filename})" if exc.filename else "")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _progress(seq: Sequence, description: str, enabled: bool) -> Iterable:
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)  # stderr, transient, terminals only
    return track(seq, description=description, console=console, transient=True,
                 disable=not (enabled and console.is_terminal))


# ----------------------------------------------------------------------------------------------- helpers


class _Names:
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


def _prefix(item: Item) -> str | None:
    """What to put before a colliding name: the item's split, else its source folder."""
    if item.split:
        return item.split
    parent = PurePosixPath(item.name).parent
    return "_".join(parent.parts) or None


def _split_of(item: Item, data: LabelledData, default: str | None = "train") -> str | None:
    """The item's own split; an item without one goes to `default` ('train'), or None when no item has one."""
    if item.split is not None:
        return item.split
    return default if data.own_splits else None


def _ordered(splits: Iterable[str]) -> list[str]:
    present = set(splits)
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def _usable(item: Item, result: ConvertResult) -> bool:
    if not item.path.is_file():
        result.skipped.append(f"{item.name}: image not found")
        return False
    return True


def _size(item: Item) -> tuple[int, int]:
    return tuple(item.size) if item.size is not None else _image_size(item.path)


def _class_masks(item: Item, size: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
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


def _boxes_of(data: LabelledData, item: Item, size: tuple[int, int], result: ConvertResult
              ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (float [M, 4] xyxy, clipped to the image, zero-size dropped) and labels of an item."""
    if data.task == "detection":
        boxes, labels = np.asarray(item.boxes, np.float64).reshape(-1, 4), np.asarray(item.labels, np.int64)
    else:
        from steelscan.data.severstal import mask_to_boxes

        parts = [(mask_to_boxes(mask)[0], k) for k, mask in _class_masks(item, size)]
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


def _copy_image(item: Item, folder: Path, stem: str) -> str:
    """Copy the image byte for byte as folder/<stem><suffix>; returns the file name."""
    name = stem + item.path.suffix
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(item.path, folder / name)
    return name


def _count(result: ConvertResult, split: str | None, n: int = 1) -> None:
    key = split or "all"
    result.per_split[key] = result.per_split.get(key, 0) + n


def _sort_splits(result: ConvertResult) -> None:
    result.per_split = {s: result.per_split[s] for s in _ordered(result.per_split)}


# ----------------------------------------------------------------------------------------------- writers


def _write_yolo(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = _Names()
    for item in _progress(data.items, "writing YOLO", progress):
        if not _usable(item, result):
            continue
        split = _split_of(item, data) or "train"
        size = _size(item)
        boxes, labels = _boxes_of(data, item, size, result)
        stem = names.claim(split, item.path.stem, _prefix(item))
        _copy_image(item, root / "images" / split, stem)
        h, w = size
        lines = []
        for (x1, y1, x2, y2), k in zip(boxes.tolist(), labels.tolist()):
            lines.append(f"{k} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        label_dir = root / "labels" / split
        label_dir.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        result.boxes += len(lines)
        result.images += 1
        _count(result, split)
    _sort_splits(result)
    spec: dict = {"path": "."}
    spec.update({s: f"images/{s}" for s in result.per_split})
    spec["nc"] = len(data.class_names)
    spec["names"] = dict(enumerate(data.class_names))
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False)
    (root / "data.yaml").write_text(text, encoding="utf-8")


def _write_coco(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = _Names()
    categories = [{"id": k + 1, "name": n, "supercategory": "defect"} for k, n in enumerate(data.class_names)]
    files: dict[str, dict] = {}
    ann_id = 0
    for image_id, item in enumerate(_progress(data.items, "writing COCO", progress), start=1):
        if not _usable(item, result):
            continue
        split = _split_of(item, data, default="train") or "all"
        size = _size(item)
        boxes, labels = _boxes_of(data, item, size, result)
        stem = names.claim("images", item.path.stem, _prefix(item))
        file_name = _copy_image(item, root / "images", stem)
        doc = files.setdefault(split, {"images": [], "annotations": []})
        doc["images"].append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
        for (x1, y1, x2, y2), k in zip(boxes.tolist(), labels.tolist()):
            ann_id += 1
            bw, bh = x2 - x1, y2 - y1
            doc["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": k + 1,
                "bbox": [round(x1, 3), round(y1, 3), round(bw, 3), round(bh, 3)],
                "area": round(bw * bh, 3), "iscrowd": 0,
            })
        result.boxes += len(boxes)
        result.images += 1
        _count(result, None if split == "all" else split)
    _sort_splits(result)
    (root / "annotations").mkdir()
    if not files:  # nothing usable: still a valid, empty data set
        files["all"] = {"images": [], "annotations": []}
    for split, doc in files.items():
        body = {"info": {"description": f"written by steelscan convert from {data.format} data"},
                "images": doc["images"], "annotations": doc["annotations"], "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _voc_xml(file_name: str, size: tuple[int, int], depth: int, objects: list[tuple[str, tuple[int, ...]]]) -> bytes:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "JPEGImages"
    ET.SubElement(ann, "filename").text = file_name
    sz = ET.SubElement(ann, "size")
    for tag, value in (("width", size[1]), ("height", size[0]), ("depth", depth)):
        ET.SubElement(sz, tag).text = str(value)
    ET.SubElement(ann, "segmented").text = "0"
    for name, (xmin, ymin, xmax, ymax) in objects:
        obj = ET.SubElement(ann, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(ann)
    return ET.tostring(ann, encoding="utf-8", xml_declaration=True) + b"\n"


def _write_voc(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = _Names()
    lists: dict[str, list[str]] = {}
    (root / "Annotations").mkdir()
    for item in _progress(data.items, "writing VOC", progress):
        if not _usable(item, result):
            continue
        split = _split_of(item, data)
        size = _size(item)
        boxes, labels = _boxes_of(data, item, size, result)
        stem = names.claim("voc", item.path.stem, _prefix(item))
        file_name = _copy_image(item, root / "JPEGImages", stem)
        objects = []
        for (x1, y1, x2, y2), k in zip(boxes.tolist(), labels.tolist()):
            r = (round(x1), round(y1), round(x2), round(y2))
            if r[2] <= r[0] or r[3] <= r[1]:  # under half a pixel wide: nothing left in whole pixels
                result.dropped_boxes += 1
                continue
            objects.append((data.class_names[k], (r[0] + 1, r[1] + 1, r[2], r[3])))
        (root / "Annotations" / f"{stem}.xml").write_bytes(_voc_xml(file_name, size, _image_channels(item.path), objects))
        lists.setdefault(split or "trainval", []).append(stem)
        result.boxes += len(objects)
        result.images += 1
        _count(result, split)
    _sort_splits(result)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, stems in lists.items():
        (main / f"{split}.txt").write_text("".join(s + "\n" for s in stems), encoding="utf-8")
    # CVAT's labelmap.txt: the readers take classes from it too, so a class with no box yet is not lost.
    if not any(":" in n for n in data.class_names):  # ':' is its field separator
        lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{_colour(k)}::" for k, n in enumerate(data.class_names)]
        (root / "labelmap.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _colour(k: int) -> str:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.8, 0.95)
    return f"{round(255 * r)},{round(255 * g)},{round(255 * b)}"


def _crop_box(box: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer crop window (x1, y1, x2, y2) around a box: a margin on each side, clipped to the image."""
    x1, y1, x2, y2 = box
    h, w = size
    mx = max(CROP_MIN_MARGIN, round(CROP_MARGIN * (x2 - x1)))
    my = max(CROP_MIN_MARGIN, round(CROP_MARGIN * (y2 - y1)))
    return (max(0, math.floor(x1) - mx), max(0, math.floor(y1) - my),
            min(w, math.ceil(x2) + mx), min(h, math.ceil(y2) + my))


def _write_folders(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = _Names()
    splits = {_split_of(it, data) for it in data.items}
    for split in splits:  # every class folder, even an empty one: the class list travels whole
        for name in data.class_names:
            (root.joinpath(*([split] if split else []), name)).mkdir(parents=True, exist_ok=True)
    crops = data.task != "classification"
    result.unit = "crops" if crops else "images"
    for item in _progress(data.items, "writing class folders", progress):
        if not _usable(item, result):
            continue
        split = _split_of(item, data)
        base = root.joinpath(*([split] if split else []))
        if not crops:
            if item.label is None or not 0 <= item.label < len(data.class_names):
                result.skipped.append(f"{item.name}: no class label")
                continue
            cls = data.class_names[item.label]
            stem = names.claim(f"{split}/{cls}", item.path.stem, _prefix(item))
            _copy_image(item, base / cls, stem)
            result.images += 1
            _count(result, split)
            continue
        size = _size(item)
        boxes, labels = _boxes_of(data, item, size, result)
        result.images += 1
        if not len(boxes):
            continue
        try:
            image = _read_image(item.path)
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
            stem = names.claim(f"{split}/{cls}", f"{item.path.stem}_{k}", _prefix(item))
            _write_png(base / cls / f"{stem}.png", image[y1:y2, x1:x2])
            _count(result, split)
    _sort_splits(result)


_WRITERS: dict[str, Callable[[LabelledData, Path, ConvertResult, bool], None]] = {
    "yolo": _write_yolo, "coco": _write_coco, "voc": _write_voc, "folders": _write_folders,
}
