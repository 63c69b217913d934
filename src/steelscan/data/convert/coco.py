"""The COCO layout: images/ and annotations/instances_<split>.json."""

from __future__ import annotations

import json
from pathlib import Path

from steelscan.data.convert.base import ConvertResult, with_progress
from steelscan.data.convert.items import (
    UniqueNames, boxes_of, collision_prefix, copy_image, count_written, item_size, sort_splits, split_of, usable,
)
from steelscan.data.formats.base import LabelledData


def write_coco(data: LabelledData, root: Path, result: ConvertResult, progress: bool) -> None:
    names = UniqueNames()
    categories = [{"id": k + 1, "name": n, "supercategory": "defect"} for k, n in enumerate(data.class_names)]
    files: dict[str, dict] = {}
    ann_id = 0
    for image_id, item in enumerate(with_progress(data.items, "writing COCO", progress), start=1):
        if not usable(item, result):
            continue
        split = split_of(item, data, default="train") or "all"
        size = item_size(item)
        boxes, labels = boxes_of(data, item, size, result)
        stem = names.claim("images", item.path.stem, collision_prefix(item))
        file_name = copy_image(item, root / "images", stem)
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
        count_written(result, None if split == "all" else split)
    sort_splits(result)
    (root / "annotations").mkdir()
    if not files:  # nothing usable: still a valid, empty data set
        files["all"] = {"images": [], "annotations": []}
    for split, doc in files.items():
        body = {"info": {"description": f"written by steelscan convert from {data.format} data"},
                "images": doc["images"], "annotations": doc["annotations"], "categories": categories}
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
