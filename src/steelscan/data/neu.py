"""NEU surface defect database readers: NEU-CLS (classification) and NEU-DET (Pascal VOC boxes).

Shapes: images are uint8 [H, W] grey, 200 x 200. NEU-DET boxes are float32 [M, 4] xyxy in 0-based
pixel-edge coordinates (x2, y2 exclusive, width = x2 - x1), converted from VOC's 1-based inclusive
integers as x1 = xmin - 1, x2 = xmax; labels are int64 [M] indices into NEU_CLASSES. This is the same
convention as `steelscan.data.severstal.mask_to_boxes`.

Each photograph has a class and a number; NEU-CLS `Cr_7.bmp` and NEU-DET `crazing_7.jpg` are the same one,
so (class name, number) is the key that joins the two (`neu_key`, `join_cls_det`) and that splits them alike.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES, NEU_IMAGE_SIZE, NEU_PREFIX_TO_CLASS
from steelscan.core.errors import DataError, ImageError, SteelscanError
from steelscan.core.images import IMAGE_SUFFIXES, read_image

_NAME = re.compile(r"^(?P<cls>.+?)_(?P<num>\d+)$")
_CLASS_INDEX = {name: i for i, name in enumerate(NEU_CLASSES)}
# Class folders and file-name prefixes match case-insensitively: copies of NEU spell them either way.
_ALIASES = {**{c.lower(): c for c in NEU_CLASSES}, **{p.lower(): c for p, c in NEU_PREFIX_TO_CLASS.items()}}


def load_grey_image(path: str | Path, shape: tuple[int, int] | None = NEU_IMAGE_SIZE) -> np.ndarray:
    """An image file as uint8 [H, W] grey (`steelscan.core.images.read_image`); check its (H, W) when `shape`
    is set. Any refusal (missing, not an image, truncated, 16-bit, wrong size...) is an ImageError naming it."""
    image = read_image(path, channels=1)
    if shape is not None and image.shape != tuple(shape):
        raise ImageError(
            f"{path}: expected a {shape[0]}x{shape[1]} (HxW) image, got {image.shape[0]}x{image.shape[1]}"
        )
    return image


def neu_class_name(name: str) -> str:
    """Full NEU class name for a prefix ('Cr') or a class name ('crazing'), case-insensitively."""
    try:
        return _ALIASES[name.strip().lower()]
    except (KeyError, AttributeError):
        raise SteelscanError(
            f"unknown NEU class {name!r}; expected a prefix {', '.join(NEU_CLS_PREFIXES)} "
            f"or a class name {', '.join(NEU_CLASSES)}"
        ) from None


def neu_key(class_or_prefix: str, number: int) -> tuple[str, int]:
    """The (full class name, number) that names one NEU photograph in both NEU-CLS and NEU-DET."""
    return neu_class_name(class_or_prefix), int(number)


def neu_cls_filename(class_or_prefix: str, number: int, suffix: str = ".bmp") -> str:
    """NEU-CLS file name of a photograph: ('crazing', 7) -> 'Cr_7.bmp'."""
    name = neu_class_name(class_or_prefix)
    return f"{NEU_CLS_PREFIXES[_CLASS_INDEX[name]]}_{int(number)}{suffix}"


def neu_det_stem(class_or_prefix: str, number: int) -> str:
    """NEU-DET file stem of a photograph: ('Cr', 7) -> 'crazing_7' (IMAGES/crazing_7.jpg, ANNOTATIONS/crazing_7.xml)."""
    return f"{neu_class_name(class_or_prefix)}_{int(number)}"


def _split_name(path: Path) -> tuple[str, int]:
    match = _NAME.match(path.stem)
    if not match:
        raise SteelscanError(f"{path}: expected a file name like Cr_12{path.suffix} (class prefix, '_', number)")
    return match["cls"], int(match["num"])


# ----------------------------------------------------------------------------------------------- NEU-CLS


@dataclass(frozen=True)
class NeuClsItem:
    """One NEU-CLS image: `label` indexes NEU_CLASSES; `number` is the integer in its file name."""

    path: Path
    label: int
    class_name: str
    number: int

    @property
    def key(self) -> tuple[str, int]:
        return self.class_name, self.number


def _images_in(folder: Path) -> list[Path]:
    # Hidden files and non-images (Thumbs.db, README) are not data: skip them rather than fail.
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def list_neu_cls(root: str | Path) -> list[NeuClsItem]:
    """List a NEU-CLS folder, sorted by (label, number).

    Layouts: flat, as NEU ships it (`Cr_1.bmp`, `PS_12.bmp`, the prefix gives the class), or one subfolder
    per class named by prefix or full class name (`Cr/` or `crazing/`), with files named `Cr_1.bmp` or `1.bmp`.
    An image with an unknown prefix, an unknown class folder, a file whose prefix contradicts its folder,
    a (class, number) seen twice, a mix of both layouts, or no image at all raises SteelscanError: a silent
    skip would shift class counts and splits.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"NEU-CLS folder not found: expected a folder at {root}")
    files = _images_in(root)
    # Hidden and "_"-led folders (.git, __MACOSX from zip files) are not class folders.
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if files and folders:
        raise SteelscanError(
            f"{root}: expected either flat images (Cr_1.bmp ...) or one subfolder per class, found both "
            f"({files[0].name}, {folders[0].name}/)"
        )
    found: list[tuple[Path, str, int]] = []
    if files:
        for path in files:
            prefix, number = _split_name(path)
            if prefix.lower() not in _ALIASES:
                raise SteelscanError(
                    f"{path}: unknown NEU-CLS class prefix {prefix!r}; expected one of {', '.join(NEU_CLS_PREFIXES)}"
                )
            found.append((path, neu_class_name(prefix), number))
    for folder in folders:
        if folder.name.lower() not in _ALIASES:
            raise SteelscanError(
                f"{folder}: unknown NEU-CLS class folder; expected a prefix ({', '.join(NEU_CLS_PREFIXES)}) "
                f"or class name ({', '.join(NEU_CLASSES)}), or flat images like Cr_1.bmp"
            )
        class_name = neu_class_name(folder.name)
        for path in _images_in(folder):
            if path.stem.isdigit():
                number = int(path.stem)
            else:
                prefix, number = _split_name(path)
                if _ALIASES.get(prefix.lower()) != class_name:
                    raise SteelscanError(f"{path}: file name class {prefix!r} contradicts its folder {class_name!r}")
            found.append((path, class_name, number))
    if not found:
        raise SteelscanError(
            f"{root}: expected NEU-CLS images ({'/'.join(IMAGE_SUFFIXES)} named like Cr_1.bmp, "
            "or class subfolders), found none"
        )
    seen: dict[tuple[str, int], Path] = {}
    items = []
    for path, class_name, number in found:
        if (class_name, number) in seen:
            raise SteelscanError(f"{path}: {class_name} No. {number} appears twice (also {seen[class_name, number]})")
        seen[class_name, number] = path
        items.append(NeuClsItem(path, _CLASS_INDEX[class_name], class_name, number))
    return sorted(items, key=lambda it: (it.label, it.number))


class NeuClsDataset:
    """NEU-CLS images as dicts ``{"image": uint8 [200, 200], "label": int, "class_name", "number", "path"}``
    (torch `Dataset`-compatible). Pass a folder or a list of items (e.g. one side of a split by number).
    """

    def __init__(self, source: str | Path | Sequence[NeuClsItem], shape: tuple[int, int] = NEU_IMAGE_SIZE) -> None:
        self.items = list_neu_cls(source) if isinstance(source, (str, Path)) else list(source)
        self.shape = shape

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        it = self.items[index]
        image = load_grey_image(it.path, self.shape)
        return {
            "image": image, "label": it.label, "class_name": it.class_name, "number": it.number, "path": str(it.path)
        }


# ----------------------------------------------------------------------------------------------- NEU-DET


@dataclass(frozen=True, eq=False)
class NeuDetItem:
    """One NEU-DET image with its VOC boxes.

    `class_name`/`label`/`number` come from the file name (the image-level class); each box has its own
    label in `labels` (about 123 images hold boxes of another class than their file name).
    """

    image_path: Path
    annotation_path: Path
    class_name: str
    label: int
    number: int
    boxes: np.ndarray  # float32 [M, 4] xyxy, 0-based pixel edges (x2, y2 exclusive)
    labels: np.ndarray  # int64 [M], indices into NEU_CLASSES
    size: tuple[int, int]  # (height, width) from the annotation

    @property
    def key(self) -> tuple[str, int]:
        return self.class_name, self.number


def _forbid_dtd(data: bytes, path: Path) -> None:
    # VOC files never need a DTD; refusing one rules out entity expansion and external entities alike.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SteelscanError(f"{path}: XML with a DTD/entities is not accepted in a VOC annotation")


def _int_field(node: ET.Element, tag: str, path: Path, where: str) -> int:
    text = node.findtext(tag)
    try:
        value = float(text)  # some VOC writers store "12.0"
    except (TypeError, ValueError):
        raise SteelscanError(f"{path}: {where}: expected a number in <{tag}>, got {text!r}") from None
    if value != int(value):
        raise SteelscanError(f"{path}: {where}: expected an integer pixel in <{tag}>, got {text!r}")
    return int(value)


def parse_voc(
    path: str | Path, class_names: Sequence[str] = NEU_CLASSES
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Parse a Pascal VOC XML file: (boxes float32 [M, 4] xyxy 0-based exclusive, labels int64 [M], (H, W)).

    Every box must satisfy 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height (VOC's 1-based
    inclusive pixels); an object name outside `class_names` is an error. Errors name the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"annotation not found: {path}") from None
    except OSError as exc:  # a folder, no permission...: the user's path
        raise DataError(f"cannot read annotation {path}: {exc.strerror or exc}") from None
    _forbid_dtd(data, path)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SteelscanError(f"{path}: XML does not parse: {exc}") from None
    size = root.find("size")
    if root.tag != "annotation" or size is None:
        raise SteelscanError(f"{path}: expected a VOC <annotation> with a <size>, got <{root.tag}>")
    width, height = _int_field(size, "width", path, "size"), _int_field(size, "height", path, "size")
    if width < 1 or height < 1:
        raise SteelscanError(f"{path}: expected a positive image size, got {width}x{height}")
    index = {name: i for i, name in enumerate(class_names)}
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise SteelscanError(
                f"{path}: object {i}: unknown class {name!r}; expected one of {', '.join(class_names)}"
            )
        bb = obj.find("bndbox")
        if bb is None:
            raise SteelscanError(f"{path}: object {i} ({name}) has no <bndbox>")
        where = f"object {i} ({name})"
        xmin, ymin, xmax, ymax = (_int_field(bb, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax"))
        if not (1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height):
            raise SteelscanError(
                f"{path}: {where}: box xmin={xmin} ymin={ymin} xmax={xmax} ymax={ymax} is empty or outside the "
                f"{width}x{height} image (expected 1 <= xmin < xmax <= width, 1 <= ymin < ymax <= height)"
            )
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        labels.append(index[name])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64), (height, width)


def _find_child(root: Path, name: str) -> Path | None:
    for p in root.iterdir():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def list_neu_det(root: str | Path) -> list[NeuDetItem]:
    """List a NEU-DET folder (`IMAGES/crazing_1.jpg` + `ANNOTATIONS/crazing_1.xml`), sorted by (label, number).

    Every annotation needs its image and every image its annotation; a bad file raises SteelscanError
    naming it. The XML files are parsed here; images are only checked to exist (see `load_neu_det_image`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"NEU-DET folder not found: expected a folder at {root}")
    image_dir, ann_dir = _find_child(root, "IMAGES"), _find_child(root, "ANNOTATIONS")
    if image_dir is None or ann_dir is None:
        found = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
        raise SteelscanError(f"{root}: expected NEU-DET folders IMAGES/ and ANNOTATIONS/, found {found}")
    images = {p.stem: p for p in _images_in(image_dir)}
    xmls = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith("."))
    if not xmls:
        raise SteelscanError(f"{ann_dir}: expected VOC annotations like crazing_1.xml, found none")
    items = []
    for xml_path in xmls:
        prefix, number = _split_name(xml_path)
        try:
            class_name = neu_class_name(prefix)
        except SteelscanError as exc:
            raise SteelscanError(f"{xml_path}: {exc}") from None
        image_path = images.pop(xml_path.stem, None)
        if image_path is None:
            raise DataError(f"{xml_path}: its image {image_dir / (xml_path.stem + '.jpg')} is missing")
        boxes, labels, size = parse_voc(xml_path)
        label = _CLASS_INDEX[class_name]
        items.append(NeuDetItem(image_path, xml_path, class_name, label, number, boxes, labels, size))
    if images:
        orphan = next(iter(images.values()))
        raise SteelscanError(f"{len(images)} image(s) have no annotation in {ann_dir}, e.g. {orphan.name}")
    return sorted(items, key=lambda it: (it.label, it.number))


def load_neu_det_image(item: NeuDetItem) -> np.ndarray:
    """uint8 [H, W] grey image of a NEU-DET item; its size must match the annotation's."""
    return load_grey_image(item.image_path, item.size)


def join_cls_det(
    cls_items: Iterable[NeuClsItem], det_items: Iterable[NeuDetItem]
) -> list[tuple[NeuClsItem, NeuDetItem]]:
    """Pair NEU-CLS and NEU-DET items showing the same photograph, by (class name, number).

    Only photographs present in both lists are paired, in the order of `cls_items` (e.g. to put NEU-DET
    boxes onto NEU-CLS images for the improved cutout).
    """
    det_by_key = {it.key: it for it in det_items}
    return [(c, det_by_key[c.key]) for c in cls_items if c.key in det_by_key]


def is_heldout(number: int) -> bool:
    """NEU numbers divisible by 5 are held out elsewhere for independent evaluation: never train or tune on them."""
    return number % 5 == 0


def neu_split(number: int, val_remainders: tuple[int, ...] = (4,)) -> str:
    """'train' or 'val' by image number, so that NEU-CLS and NEU-DET split alike (one rule for every model)."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 1:
        raise SteelscanError(f"expected a NEU image number >= 1, got {number!r}")
    if is_heldout(number):
        raise SteelscanError(f"image number {number} is divisible by 5: that fifth of NEU is held out for independent evaluation")
    return "val" if number % 5 in val_remainders else "train"

