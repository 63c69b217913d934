"""The format registry, format detection from a folder's contents, and `read_data`, the one entry point."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import yaml

from steelscan.core.errors import DataError
from steelscan.data.formats.base import LabelledData
from steelscan.data.formats.coco import find_jsons, read_coco
from steelscan.data.formats.common import child, describe, is_image
from steelscan.data.formats.folders import class_folders, read_folders
from steelscan.data.formats.masks import read_masks
from steelscan.data.formats.neu import read_neu_cls, read_neu_det
from steelscan.data.formats.rle import read_rle
from steelscan.data.formats.voc import read_voc
from steelscan.data.formats.yolo import find_yaml, read_yolo


class Format(NamedTuple):
    task: str
    reader: Callable[[str | Path], LabelledData]
    description: str


FORMATS: dict[str, Format] = {
    "folders": Format("classification", read_folders, "ROOT/<class>/*.png, optionally under train/val/test"),
    "neu-cls": Format("classification", read_neu_cls, "NEU-CLS flat files Cr_1.bmp ... (prefix = class)"),
    "yolo": Format("detection", read_yolo, "Ultralytics data.yaml + images/ and labels/*.txt"),
    "coco": Format("detection", read_coco, "annotations/*.json + images/, or Roboflow _annotations.coco.json"),
    "voc": Format("detection", read_voc, "Pascal VOC Annotations/*.xml + JPEGImages/ (labelImg, CVAT)"),
    "neu-det": Format("detection", read_neu_det, "NEU-DET ANNOTATIONS/*.xml + IMAGES/*.jpg"),
    "masks": Format("segmentation", read_masks, "index-mask PNGs images/ + masks/ with classes.yaml"),
    "rle": Format("segmentation", read_rle, "train.csv (ImageId,ClassId,EncodedPixels) + train_images/"),
}
ALIASES = {"severstal": "rle", "imagefolder": "folders", "ultralytics": "yolo", "pascal-voc": "voc"}
_NEU_CLS_FILE = re.compile(r"^(Cr|In|Pa|PS|RS|Sc)_\d+$", re.IGNORECASE)
_NEU_DET_FILE = re.compile(r"^(crazing|inclusion|patches|pitted_surface|rolled-in_scale|scratches)_\d+$")


def format_name(name: str) -> str:
    """The registered name for a format name or alias ('severstal' -> 'rle'); DataError listing the valid ones."""
    key = name.strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        valid = ", ".join([*FORMATS, *ALIASES])
        raise DataError(f"unknown data format {name!r}; expected one of {valid}")
    return key


def _yaml_keys(path: Path) -> set[str]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return set()
    return set(doc) if isinstance(doc, dict) else set()


def _has_class_folders(root: Path) -> bool:
    """Class folders: at least two, and most of them, hold images directly. A folder of run folders or other
    nested outputs (images only deeper down) is not a data set; `format="folders"` still reads one."""
    try:
        pairs = class_folders(root)
    except DataError:
        return False
    direct = sum(any(is_image(p) for p in folder.iterdir() if p.is_file()) for _, folder in pairs)
    return direct >= 2 and 2 * direct > len(pairs)


def detect_format(root: str | Path) -> str:
    """The format of a data set from what the folder holds; DataError saying what was expected otherwise."""
    root = Path(root)
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return "yolo"
        if suffix == ".json":
            return "coco"
        if suffix == ".csv":
            return "rle"
        raise DataError(f"{root}: expected a data set folder (or a data.yaml / COCO .json / train.csv), got a file")
    if not root.is_dir():
        raise DataError(f"no data set at {root}: expected a folder, found nothing")
    yaml_path = find_yaml(root)
    if yaml_path is not None and _yaml_keys(yaml_path) & {"train", "val"}:
        return "yolo"
    if find_jsons(root):
        return "coco"
    ann, images = child(root, "Annotations"), child(root, "IMAGES")
    if ann is not None:
        stems = [p.stem for p in sorted(ann.glob("*.xml"))[:20]]
        if images is not None and stems and all(_NEU_DET_FILE.match(s) for s in stems):
            return "neu-det"
        return "voc"
    if images is not None and child(root, "masks") is not None:
        return "masks"
    if (root / "train.csv").is_file():
        return "rle"
    files = [p for p in root.iterdir() if p.is_file() and is_image(p)]
    if files and all(_NEU_CLS_FILE.match(p.stem) for p in files):
        return "neu-cls"
    if _has_class_folders(root):
        return "folders"
    raise DataError(
        f"{root}: cannot tell the data format. Expected one of: data.yaml (YOLO); annotations/*.json or "
        f"*/_annotations.coco.json (COCO); Annotations/ + JPEGImages/ (VOC); ANNOTATIONS/ + IMAGES/ (NEU-DET); "
        f"images/ + masks/ (masks); train.csv + train_images/ (RLE); Cr_1.bmp ... (NEU-CLS); one folder of "
        f"images per class (folders). The folder holds {describe(root)}. Pass --format (data.format in a recipe) to force one."
    )


def read_data(root: str | Path, format: str | None = None) -> LabelledData:  # noqa: A002 - the natural name
    """Read a data set in any supported layout; `format` (a name or alias) overrides detection."""
    name = format_name(format) if format else detect_format(root)
    return FORMATS[name].reader(root)
