"""COCO detection JSON: `ROOT/annotations/*.json` + `ROOT/images/`, or Roboflow's
`ROOT/{train,valid,test}/_annotations.coco.json` with the images beside it.

The split comes from the JSON's folder (Roboflow) or its name (`instances_train.json`, `val.json`); class
names are the categories sorted by id, mapped to 0..K-1. Plain `json` is enough: only the image list,
categories and boxes are read. bbox [x, y, w, h] becomes xyxy; `iscrowd` regions are not objects and are
skipped. An image entry without annotations is a defect-free image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from steelscan.core.errors import DataError
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.formats.common import (
    SPLIT_ALIASES, as_arrays, check_box, child, describe, image_size, list_images, nfc, rel_name, require_dir,
    split_name,
)

ROBOFLOW_JSON = "_annotations.coco.json"


def find_jsons(root: Path) -> list[Path]:
    """The annotation files of a COCO folder, in a stable order."""
    found = []
    ann = child(root, "annotations")
    if ann is not None:
        found += sorted(p for p in ann.glob("*.json") if not p.name.startswith("."))
    found += sorted(root.glob(f"*{ROBOFLOW_JSON}")) + sorted(root.glob(f"*/{ROBOFLOW_JSON}"))
    return list(dict.fromkeys(found))


def json_split(path: Path, root: Path) -> str | None:
    """'train'/'val'/'test' from a Roboflow folder name or a file name like instances_val2017.json."""
    if path.name == ROBOFLOW_JSON and path.parent != root:
        return split_name(path.parent.name)
    for word in re.split(r"[_\-.\s]+", path.stem.lower()):
        match = re.fullmatch(r"([a-z]+)\d*", word)  # "train2017", "val2017"; not "valve"
        if match and match[1] in SPLIT_ALIASES:
            return SPLIT_ALIASES[match[1]]
    return None


def _load(path: Path, problems: list[Problem], root: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem("bad_label", rel_name(path, root), f"not a readable JSON file: {exc}"))
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        problems.append(Problem("bad_label", rel_name(path, root), "expected a COCO object with an `images` list"))
        return None
    return doc


def _categories(docs: list[tuple[Path, dict]]) -> dict[int, str]:
    """Category id -> name over every file; the same id must mean the same class in each."""
    cats: dict[int, str] = {}
    supers: set[str] = set()
    used: set = set()
    for path, doc in docs:
        for c in doc.get("categories") or []:
            try:
                cid, cname = int(c["id"]), nfc(str(c["name"]).strip())
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: expected categories with integer `id` and `name`, got {c!r:.80}") from None
            if cats.setdefault(cid, cname) != cname:
                raise DataError(f"{path}: category id {cid} is {cname!r} here but {cats[cid]!r} in another file")
            supers.add(str(c.get("supercategory", "")).strip())
        used.update(a.get("category_id") for a in doc.get("annotations") or [] if isinstance(a, dict))
    # Roboflow adds the project name as an extra category (id 0) that is every other one's supercategory and
    # labels no box: as a class it would be a class with no sample.
    for cid, cname in list(cats.items()):
        if cname in supers and cid not in used and len(cats) > 1:
            del cats[cid]
    return cats


def _search_dirs(json_path: Path, root: Path, split: str | None) -> list[Path]:
    """Where a JSON file's images may lie; listed once per JSON file (a listing per image is quadratic)."""
    dirs = [json_path.parent, root / "images", root]
    images = child(root, "images")
    if images is not None:
        dirs += [p for p in images.iterdir() if p.is_dir() and (split_name(p.name) == split or split is None)]
    return dirs


def _find_image(file_name: str, dirs: list[Path], by_name: dict) -> Path | None:
    for d in dirs:
        if (d / file_name).is_file():
            return d / file_name
    # Exports often keep the annotator's folder in file_name; fall back to a unique base name under ROOT.
    hits = by_name.get(Path(file_name).name, [])
    return hits[0] if len(hits) == 1 else None


def read_coco(root: str | Path) -> LabelledData:
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".json":
        jsons, root = [root], root.parent
    else:
        root = require_dir(root, "COCO")
        jsons = find_jsons(root)
    if not jsons:
        raise DataError(f"{root}: expected COCO JSON in annotations/*.json or {{train,valid,test}}/{ROBOFLOW_JSON}, "
                        f"found {describe(root)}")
    problems: list[Problem] = []
    docs = [(p, d) for p in jsons if (d := _load(p, problems, root)) is not None]
    if not docs:
        raise DataError(f"{root}: no readable COCO JSON among {', '.join(p.name for p in jsons)}")
    cats = _categories(docs)
    if not cats:
        raise DataError(f"{root}: the COCO files list no category: the class list is unknown")
    ids = sorted(cats)
    class_names = [cats[i] for i in ids]
    index = {cid: k for k, cid in enumerate(ids)}
    by_name: dict[str, list[Path]] = {}
    for p in list_images(root):
        by_name.setdefault(p.name, []).append(p)
    items: list[Item] = []
    seen: set[Path] = set()
    for json_path, doc in docs:
        split, jname = json_split(json_path, root), rel_name(json_path, root)
        dirs = _search_dirs(json_path, root, split)
        entries: dict = {}
        for img in doc["images"]:
            if isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str):
                entries[img["id"]] = (img, [])
            else:
                problems.append(Problem("bad_label", jname, f"image entry without id/file_name: {img!r:.80}"))
        for a in doc.get("annotations") or []:
            target = entries.get(a.get("image_id")) if isinstance(a, dict) else None
            if target is None:
                problems.append(Problem("label_without_image", jname,
                                        f"annotation {a.get('id') if isinstance(a, dict) else a!r:.40} names image_id "
                                        f"{a.get('image_id') if isinstance(a, dict) else '?'} that is not in `images`"))
            else:
                target[1].append(a)
        for img, anns in entries.values():
            path = _find_image(img["file_name"], dirs, by_name)
            if path is None:
                problems.append(Problem("label_without_image", img["file_name"], f"listed in {jname}, file not found"))
                continue
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = rel_name(path, root)
            size = image_size(path, name, problems)
            if size is None:
                continue
            boxes, labels = [], []
            for a in anns:
                where = f"{jname} annotation {a.get('id')}"
                if a.get("iscrowd"):
                    continue
                bbox = a.get("bbox")
                if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                    problems.append(Problem("bad_label", name,
                                            f"{where}: expected bbox [x, y, w, h], got {bbox!r:.60}"))
                    continue
                if a.get("category_id") not in index:
                    problems.append(Problem("class_out_of_range", name,
                                            f"{where}: category_id {a.get('category_id')!r} is not a category; "
                                            "dropped"))
                    continue
                x, y, w, h = (float(v) for v in bbox)
                box = check_box((x, y, x + w, y + h), size, name, where, problems)
                if box is not None:
                    boxes.append(box)
                    labels.append(index[a["category_id"]])
            b, lab = as_arrays(boxes, labels)
            items.append(Item(name=name, path=path, split=split, size=size, boxes=b, labels=lab))
    if not items:
        raise DataError(f"{root}: the COCO files name no readable image")
    return LabelledData("detection", "coco", root, class_names, items, problems)
