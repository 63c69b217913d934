"""The YOLO layout: images/<split>/, labels/<split>/<stem>.txt and data.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from steelscan.data.convert.base import ConvertResult, with_progress
from steelscan.data.convert.items import (
    UniqueNames, boxes_of, collision_prefix, copy_image, count_written, item_size, sort_splits, split_of, usable,
)
from steelscan.data.formats.base import LabelledData


def write_yolo(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = UniqueNames()
    for item in with_progress(data.items, "writing YOLO", progress):
        if not usable(item, result):
            continue
        split = split_of(item, data) or "train"
        size = item_size(item)
        boxes, labels = boxes_of(data, item, size, result)
        stem = names.claim(split, item.path.stem, collision_prefix(item))
        copy_image(item, root / "images" / split, stem)
        h, w = size
        lines = []
        for (x1, y1, x2, y2), k in zip(boxes.tolist(), labels.tolist()):
            lines.append(f"{k} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
        label_dir = root / "labels" / split
        label_dir.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        result.boxes += len(lines)
        result.images += 1
        count_written(result, split)
    sort_splits(result)
    spec: dict = {"path": "."}
    spec.update({s: f"images/{s}" for s in result.per_split})
    spec["nc"] = len(data.class_names)
    spec["names"] = dict(enumerate(data.class_names))
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=False)
    (root / "data.yaml").write_text(text, encoding="utf-8")
