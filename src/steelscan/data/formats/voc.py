"""Pascal VOC as labelImg and CVAT export it: `ROOT/Annotations/*.xml` + `ROOT/JPEGImages/`.

Optional `ImageSets/Main/{train,val,test}.txt` (one image id per line) gives the split; CVAT's `labelmap.txt`
adds classes that have no box yet. Class names: the union of object names, sorted.

`data.neu.parse_voc` is strict (unknown class or bad box raises) and needs the class list up front, which a
generic VOC export does not have; this parser is lenient instead: each bad object is a `Problem`.
VOC pixels are 1-based inclusive: x1 = xmin - 1, x2 = xmax (as `data.neu` converts them).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from steelscan.core.errors import DataError
from steelscan.data.formats.base import IMAGE_SUFFIXES, Item, LabelledData, Problem
from steelscan.data.formats.common import (
    as_arrays, check_box, child, describe, image_size, is_hidden, list_images, nfc, rel_name, require_dir,
)

# A raw object: (class name, (xmin, ymin, xmax, ymax) as VOC wrote them, "object i" for messages).
RawObject = tuple[str, tuple[float, float, float, float], str]


def parse_voc_lenient(path: Path, name: str, problems: list[Problem]) -> tuple[str | None, list[RawObject]] | None:
    """(<filename>, objects) of one VOC XML; None (a `bad_label` problem) when the file cannot be used at all.
    An object without a name or with a non-numeric box is dropped as `bad_label`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem("bad_label", name, f"cannot read the annotation: {exc.strerror or exc}"))
        return None
    # VOC never needs a DTD; refusing one rules out entity expansion and external entities (as data.neu does).
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        problems.append(Problem("bad_label", name, "XML with a DTD/entities is not accepted in a VOC annotation"))
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        problems.append(Problem("bad_label", name, f"XML does not parse: {exc}"))
        return None
    if root.tag != "annotation":
        problems.append(Problem("bad_label", name, f"expected a VOC <annotation>, got <{root.tag}>"))
        return None
    filename = (root.findtext("filename") or "").strip() or None
    objects: list[RawObject] = []
    for i, obj in enumerate(root.iter("object")):
        label = nfc((obj.findtext("name") or "").strip())
        where = f"object {i}" + (f" ({label})" if label else "")
        bb = obj.find("bndbox")
        try:
            coords = tuple(float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))  # CVAT writes floats
        except (AttributeError, TypeError, ValueError):
            problems.append(Problem("bad_label", name, f"{where}: expected <bndbox> with numeric xmin/ymin/xmax/ymax"))
            continue
        if not label:
            problems.append(Problem("bad_label", name, f"{where}: expected a class in <name>, got none"))
            continue
        objects.append((label, coords, where))
    return filename, objects


def voc_to_pixels(coords: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = coords
    # 1-based inclusive -> 0-based edges. Tools that write 0-based xmin=0 would land on -1: read that as 0,
    # an off-by-one of the writer's convention rather than a box outside the image.
    return max(xmin - 1, 0.0) if xmin >= 0 else xmin - 1, max(ymin - 1, 0.0) if ymin >= 0 else ymin - 1, xmax, ymax


def _labelmap(root: Path) -> list[str]:
    # CVAT: "# label:color_rgb:parts:actions" then "scratch:255,0,0::"; background is the mask's 0, not a class.
    path = root / "labelmap.txt"
    if not path.is_file():
        return []
    names = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        label = nfc(line.split(":", 1)[0].strip())
        if label and not line.lstrip().startswith("#") and label.lower() != "background":
            names.append(label)
    return names


def _image_sets(root: Path) -> dict[str, str]:
    """image id -> split from ImageSets/Main/{train,val,test}.txt (first listing wins)."""
    main = root / "ImageSets" / "Main"
    by_id: dict[str, str] = {}
    for split, stems in (("train", ("train",)), ("val", ("val", "valid")), ("test", ("test",))):
        for stem in stems:
            path = main / f"{stem}.txt"
            if path.is_file():
                for line in path.read_text(encoding="utf-8-sig").splitlines():
                    if line.split():
                        by_id.setdefault(nfc(line.split()[0]), split)
    return by_id


def _find_image(image_dir: Path, xml_id: str, filename: str | None) -> Path | None:
    candidates = [image_dir / filename] if filename else []
    base = image_dir / xml_id
    candidates += [base.with_name(base.name + s) for sfx in IMAGE_SUFFIXES for s in (sfx, sfx.upper())]
    return next((p for p in candidates if p.is_file()), None)


def read_voc(
    root: str | Path,
    class_names: Sequence[str] | None = None,
    fmt: str = "voc",
    ann_dir: Path | None = None,
    image_dir: Path | None = None,
) -> LabelledData:
    """Read a VOC folder. With `class_names` the class list is fixed (others are `class_out_of_range`)."""
    root = require_dir(Path(root), "Pascal VOC")
    ann_dir = ann_dir or child(root, "Annotations")
    if ann_dir is None:
        raise DataError(f"{root}: expected Pascal VOC folders Annotations/ (+ JPEGImages/), found {describe(root)}")
    image_dir = image_dir or child(root, "JPEGImages") or child(root, "images") or ann_dir
    xmls = sorted(p for p in ann_dir.rglob("*.xml") if not any(is_hidden(q) for q in p.relative_to(ann_dir).parts))
    if not xmls:
        raise DataError(f"{ann_dir}: expected VOC annotations (*.xml), found {describe(ann_dir)}")
    problems: list[Problem] = []
    splits = _image_sets(root)
    parsed = []
    broken: set[str] = set()
    for xml in xmls:
        xml_id = xml.relative_to(ann_dir).with_suffix("").as_posix()
        record = parse_voc_lenient(xml, rel_name(xml, root), problems)
        if record is not None:
            parsed.append((xml, xml_id, *record))
        else:  # its image has labels we could not read: leave it out rather than call it defect-free
            broken.add(xml_id)
    if class_names is None:
        class_names = sorted({o[0] for *_, objects in parsed for o in objects} | set(_labelmap(root)))
        if not class_names:
            raise DataError(f"{ann_dir}: no object in any annotation and no labelmap.txt: the class list is unknown")
    class_names = list(class_names)
    index = {n: i for i, n in enumerate(class_names)}
    items: list[Item] = []
    used: set[Path] = set()
    for xml, xml_id, filename, objects in parsed:
        image = _find_image(image_dir, xml_id, filename)
        if image is None:
            problems.append(Problem("label_without_image", rel_name(xml, root),
                                    f"expected its image {filename or xml_id + '.jpg'} in {image_dir.name}/, missing"))
            continue
        used.add(image.resolve())
        name = rel_name(image, root)
        size = image_size(image, name, problems)
        if size is None:
            continue
        boxes, labels = [], []
        for label, coords, where in objects:
            if label not in index:
                problems.append(Problem("class_out_of_range", name,
                                        f"{where}: class {label!r} is not one of {', '.join(class_names)}; dropped"))
                continue
            box = check_box(voc_to_pixels(coords), size, name, where, problems)
            if box is not None:
                boxes.append(box)
                labels.append(index[label])
        b, lab = as_arrays(boxes, labels)
        items.append(Item(name=name, path=image, split=splits.get(xml_id), size=size, boxes=b, labels=lab))
    for image in list_images(image_dir):
        image_id = image.relative_to(image_dir).with_suffix("").as_posix()
        if image.resolve() not in used and image_id not in broken:
            name = rel_name(image, root)
            problems.append(Problem("image_without_label", name,
                                    f"no annotation in {ann_dir.name}/; read as defect-free"))
            size = image_size(image, name, problems)
            if size is not None:
                items.append(Item(name=name, path=image, split=splits.get(image_id), size=size))
    if not items:
        raise DataError(f"{root}: no annotation in {ann_dir.name}/ has a readable image in {image_dir.name}/")
    return LabelledData("detection", fmt, root, class_names, sorted(items, key=lambda it: it.name), problems)
