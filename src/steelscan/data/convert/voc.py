"""The Pascal VOC layout: Annotations/<stem>.xml, JPEGImages/, ImageSets/Main/<split>.txt and CVAT's labelmap.txt."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from steelscan.data.convert.base import ConvertResult, with_progress
from steelscan.data.convert.items import (
    UniqueNames, boxes_of, collision_prefix, copy_image, count_written, item_size, sort_splits, split_of, usable,
)
from steelscan.data.formats.base import LabelledData


def _image_channels(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return 1 if im.mode in ("L", "LA", "La", "1", "I", "I;16", "F") else 3
    except (OSError, ValueError):
        return 3


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


def write_voc(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = UniqueNames()
    lists: dict[str, list[str]] = {}
    (root / "Annotations").mkdir()
    for item in with_progress(data.items, "writing VOC", progress):
        if not usable(item, result):
            continue
        split = split_of(item, data)
        size = item_size(item)
        boxes, labels = boxes_of(data, item, size, result)
        stem = names.claim("voc", item.path.stem, collision_prefix(item))
        file_name = copy_image(item, root / "JPEGImages", stem)
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
        count_written(result, split)
    sort_splits(result)
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
