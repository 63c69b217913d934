"""Tiny data sets in every label layout, written by hand (PIL, json, csv, plain text), never by steelscan.

Each `make_*` writes into an empty folder and returns the root; `EXPECT[layout]` holds what a reader should
find (class names, item count, own splits, problem counts). Images are 64x48 (W x H) unless said otherwise,
with a bright rectangle where a defect is labelled, in a mix of RGB and grey, PNG / JPEG / BMP / TIFF.
Each set also holds the label-export mistakes a plant's data really has, one of each kind listed in EXPECT.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 64, 48
SUFFIXES = (".png", ".jpg", ".bmp", ".tif")

EXPECT: dict[str, dict] = {
    "folders": {
        "classes": ["crazing", "rust spot", "scratch", "ölfleck"],
        "items": 14, "own_splits": [], "problems": {"unreadable_image": 1},
    },
    "folders_split": {
        "classes": ["crazing", "rust spot", "scratch", "ölfleck"],
        "items": 15, "own_splits": ["train", "val", "test"], "problems": {},
    },
    "yolo": {
        "classes": ["crazing", "inclusion", "rust spot", "scratch"],
        "items": 14, "own_splits": ["train", "val"],
        "problems": {"image_without_label": 1, "box_outside_image": 1, "class_out_of_range": 1, "bad_label": 1,
                     "empty_box": 1, "label_without_image": 1},
    },
    "coco": {
        "classes": ["crazing", "patches", "rust spot"],
        "items": 12, "own_splits": ["train", "val"],
        "problems": {"box_outside_image": 1, "class_out_of_range": 1, "label_without_image": 2},
    },
    "voc": {
        "classes": ["inclusion", "oil-stain", "rust spot", "scratch"],
        "items": 13, "own_splits": ["train", "val"],
        "problems": {"box_outside_image": 1, "empty_box": 1, "label_without_image": 1, "image_without_label": 1,
                     "bad_label": 1},
    },
    "masks": {
        "classes": ["scratch", "rust spot", "ölfleck"],
        "items": 11, "own_splits": ["train", "val"],
        "problems": {"class_out_of_range": 1, "bad_label": 1, "image_without_label": 1, "label_without_image": 1},
    },
    "rle": {
        "classes": ["1", "2", "3", "4", "5"], "size": (120, 300),
        "items": 12, "own_splits": [], "problems": {"label_without_image": 1, "bad_label": 1},
    },
}


def write_image(path: Path, seed: int, rects: list[tuple[int, int, int, int]] = (), grey: bool = False,
                size: tuple[int, int] = (W, H)) -> Path:
    """Noise texture with bright rectangles (x1, y1, x2, y2 pixel edges); the format follows the suffix."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(60, 110, (h, w), dtype=np.uint8)
    for x1, y1, x2, y2 in rects:
        arr[max(y1, 0):y2, max(x1, 0):x2] = 220
    image = Image.fromarray(arr, "L") if grey else Image.fromarray(np.stack([arr, arr // 2 + 40, arr], -1), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_folders(root: Path, split: bool = False) -> Path:
    """Class folders with a space and an umlaut in their names; hidden/`_` folders and a README to ignore."""
    n = 0

    def put(folder: Path, cls: str, count: int) -> None:
        nonlocal n
        for _ in range(count):
            write_image(folder / cls / f"img_{n:02d}{SUFFIXES[n % 4]}", n, [(10, 10, 30, 20)], grey=n % 2 == 0)
            n += 1

    if split:
        for cls in ("crazing", "rust spot", "scratch"):
            put(root / "train", cls, 3)
        for cls in ("crazing", "rust spot", "ölfleck", "scratch"):
            put(root / "valid", cls, 1)  # Roboflow's spelling of val
        for cls in ("ölfleck", "scratch"):
            put(root / "test", cls, 1)
    else:
        for cls, count in (("crazing", 4), ("rust spot", 4), ("ölfleck", 3), ("scratch", 3)):
            put(root, cls, count)
        (root / "scratch" / "broken.png").write_bytes(b"")  # zero-byte export leftover
        (root / "scratch" / "README.txt").write_text("not an image")
        write_image(root / ".thumbnails" / "x.png", 99)
        write_image(root / "__MACOSX" / "crazing" / "y.png", 98)
    return root


YOLO_NAMES = ["crazing", "inclusion", "rust spot", "scratch"]


def make_yolo(root: Path, names: str = "list") -> Path:
    """data.yaml + images/{train,val} + labels/{train,val}. `names='dict'` writes names as {id: name}, omits
    `path` and lists train images in a .txt file instead of naming the folder."""
    lines: dict[str, list[str]] = {}
    for i in range(14):
        split = "train" if i < 10 else "val"
        stem = f"{split}_{i:02d}"
        suffix = ".jpg" if i % 3 else ".png"
        cls = i % 4
        write_image(root / "images" / split / f"{stem}{suffix}", i, [(24, 12, 40, 36)], grey=i % 2 == 1)
        lines[f"{split}/{stem}"] = [f"{cls} 0.5 0.5 0.25 0.5"]
    lines["train/train_01"].append("2 0.9 0.5 0.4 0.2")  # reaches past the right edge: clipped
    lines["train/train_02"].append("7 0.5 0.5 0.1 0.1")  # class id out of range: dropped
    lines["train/train_03"].append("1 0.5 oops 0.1 0.1")  # unparsable: dropped
    lines["train/train_04"].append("3 0.5 0.5 0.0 0.2")  # zero width: dropped
    lines["train/train_05"] = []  # empty txt: defect-free, no problem
    del lines["val/val_11"]  # no txt at all: defect-free, with a problem
    for key, rows in lines.items():
        txt = root / "labels" / f"{key}.txt"
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_text("".join(r + "\n" for r in rows))
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # label without image
    (root / "labels" / "train" / "classes.txt").write_text("\n".join(YOLO_NAMES))  # labelImg's, ignored
    if names == "dict":
        train = sorted((root / "images" / "train").iterdir())
        (root / "train.txt").write_text("".join(f"./images/train/{p.name}\n" for p in train))
        mapping = "".join(f"  {i}: {n}\n" for i, n in enumerate(YOLO_NAMES))
        (root / "dataset.yaml").write_text(f"train: train.txt\nval: [images/val]\nnames:\n{mapping}")
    else:
        (root / "data.yaml").write_text(
            "path: .\ntrain: images/train\nval: images/val\nnames: " + json.dumps(YOLO_NAMES) + "\n")
    return root


def make_coco(root: Path, roboflow: bool = False) -> Path:
    """annotations/instances_{train,val}.json + images/ (or Roboflow: {train,valid}/_annotations.coco.json).
    Category ids 1, 2, 3 (not 0-based); an image without annotations; an iscrowd region; a box past the
    edge; an unknown category; an image entry whose file is missing; an annotation naming no image."""
    cats = [{"id": 1, "name": "crazing"}, {"id": 2, "name": "patches"}, {"id": 3, "name": "rust spot"}]
    if roboflow:  # Roboflow puts its project name in as category 0, the others' supercategory
        cats = [{"id": 0, "name": "steel-defects", "supercategory": "none"}] + [
            {**c, "supercategory": "steel-defects"} for c in cats]
    docs = {s: {"images": [], "annotations": [], "categories": cats} for s in ("train", "val")}
    ann_id = 0
    for i in range(12):
        split = "train" if i < 9 else "val"
        fname = f"coco_{i:02d}.jpg" if i % 2 else f"coco_{i:02d}.png"
        folder = root / ("train" if split == "train" else "valid") if roboflow else root / "images"
        write_image(folder / fname, 100 + i, [(8, 6, 28, 26)], grey=i % 3 == 0)
        docs[split]["images"].append({"id": i, "file_name": fname, "width": W, "height": H})
        if i == 4:
            continue  # defect-free image
        ann_id += 1
        docs[split]["annotations"].append(
            {"id": ann_id, "image_id": i, "category_id": 1 + i % 3, "bbox": [8, 6, 20, 20], "iscrowd": 0})
    train = docs["train"]["annotations"]
    train += [
        {"id": 100, "image_id": 1, "category_id": 2, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        {"id": 101, "image_id": 2, "category_id": 3, "bbox": [50, 30, 30, 10], "iscrowd": 0},  # past the edge
        {"id": 102, "image_id": 3, "category_id": 9, "bbox": [5, 5, 5, 5], "iscrowd": 0},  # unknown category
        {"id": 103, "image_id": 77, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": 0},  # no such image
    ]
    docs["train"]["images"].append({"id": 50, "file_name": "missing.jpg", "width": W, "height": H})
    for split, doc in docs.items():
        if roboflow:
            path = root / ("train" if split == "train" else "valid") / "_annotations.coco.json"
        else:
            path = root / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    return root


def _voc_xml(filename: str, objects: list[tuple[str, float, float, float, float]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a:.2f}</xmin><ymin>{b:.2f}</ymin><xmax>{c:.2f}</xmax><ymax>{d:.2f}</ymax></bndbox>"
        f"<attributes><attribute><name>occluded</name><value>false</value></attribute></attributes></object>"
        for n, a, b, c, d in objects)
    return (f'<?xml version="1.0" encoding="utf-8"?><annotation><folder></folder><filename>{filename}</filename>'
            f"<source><database>Unknown</database><annotation>Unknown</annotation></source>"
            f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size><segmented>0</segmented>"
            f"{objs}</annotation>")


def make_voc(root: Path) -> Path:
    """A CVAT 'Pascal VOC 1.1' export: float coordinates, labelmap.txt (with a class that has no box yet),
    ImageSets/Main/{train,val}.txt. Also an xml with no object, a box past the edge, a zero-size box, an xml
    without its image, an image without its xml and an xml that does not parse."""
    classes = ["scratch", "rust spot", "inclusion"]
    ids = {"train": [], "val": []}
    for i in range(12):
        stem = f"frame_{i:06d}"
        write_image(root / "JPEGImages" / f"{stem}.jpg", 200 + i, [(10, 8, 30, 24)], grey=i % 2 == 0)
        objects = [] if i == 5 else [(classes[i % 3], 11.0, 9.0, 30.0, 24.0)]  # 1-based inclusive
        if i == 1:
            objects.append(("scratch", 40.0, 30.0, 70.0, 47.0))  # xmax past the 64-pixel width
        if i == 2:
            objects.append(("inclusion", 20.0, 20.0, 19.0, 25.0))  # xmax < xmin: nothing left
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.jpg", objects))
        ids["train" if i < 9 else "val"].append(stem)
    (root / "Annotations" / "frame_000099.xml").write_text(_voc_xml("frame_000099.jpg", [("scratch", 1, 1, 5, 5)]))
    write_image(root / "JPEGImages" / "frame_000100.jpg", 300)  # no xml
    (root / "Annotations" / "frame_000101.xml").write_text("<annotation><object>")  # cut short
    write_image(root / "JPEGImages" / "frame_000101.jpg", 301)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, stems in ids.items():
        (main / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    (root / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nscratch:250,50,83::\nrust spot:51,221,255::\n"
        "inclusion:36,179,83::\noil-stain:184,61,245::\n")
    return root


MASK_CLASSES = ["scratch", "rust spot", "ölfleck"]


def make_masks(root: Path) -> Path:
    """images/{train,val}/ + masks/{train,val}/ index PNGs, classes.yaml with a leading 'background'.
    One mask holds value 7 (> 3 classes), one has the wrong size, one image has no mask, one mask no image,
    one mask is all background."""
    for i in range(12):
        split = "train" if i < 9 else "val"
        suffix = ".png" if i % 2 else ".jpg"
        write_image(root / "images" / split / f"m_{i:02d}{suffix}", 400 + i, [(5, 5, 20, 15)], grey=i % 3 == 0)
        mask = np.zeros((H, W), np.uint8)
        if i != 3:  # m_03 is defect-free
            mask[5:15, 5:20] = 1 + i % 3
            if i % 4 == 0:
                mask[30:40, 40:60] = 1 + (i + 1) % 3  # a second class
        if i == 6:
            mask[0:2, 0:2] = 7
        if i == 7:
            mask = np.zeros((H // 2, W // 2), np.uint8)
        if i == 8:
            continue  # image without a mask
        out = root / "masks" / split / f"m_{i:02d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask, "L").save(out)
    Image.fromarray(np.zeros((H, W), np.uint8), "L").save(root / "masks" / "train" / "orphan.png")
    (root / "classes.yaml").write_text("classes: [background, scratch, rust spot, ölfleck]\n", encoding="utf-8")
    return root


def rle_encode_by_hand(mask: np.ndarray) -> str:
    """Kaggle RLE: column-major, 1-indexed 'start length' pairs (written here, not by steelscan)."""
    flat = mask.T.flatten()
    runs, start = [], None
    for i, v in enumerate(flat):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs += [start + 1, i - start]
            start = None
    if start is not None:
        runs += [start + 1, len(flat) - start]
    return " ".join(map(str, runs))


RLE_SIZE = (300, 120)  # W x H


def make_rle(root: Path) -> Path:
    """train.csv with ClassId 1..5 + train_images/ of 300x120 JPEGs; 3 defect-free images have no row;
    one row names a missing image, one RLE runs past the image end."""
    w, h = RLE_SIZE
    rows = ["ImageId,ClassId,EncodedPixels"]
    for i in range(12):
        image_id = f"{i:04x}abc.jpg"
        write_image(root / "train_images" / image_id, 500 + i, [(20 * i, 10, 20 * i + 30, 40)], grey=True,
                    size=RLE_SIZE)
        if i in (3, 7, 11):
            continue  # defect-free: Kaggle's new format has no row for it
        mask = np.zeros((h, w), np.uint8)
        mask[10:40, 20 * i:20 * i + 30] = 1
        rows.append(f"{image_id},{1 + i % 5},{rle_encode_by_hand(mask)}")
        if i == 4:
            rows.append(f"{image_id},2,{rle_encode_by_hand(mask[::-1])}")  # a second class on one image
    rows.append("ffffabc.jpg,1,1 10")  # no such image
    rows.append(f"0000abc.jpg,3,{w * h - 5} 10")  # runs past the last pixel
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root
