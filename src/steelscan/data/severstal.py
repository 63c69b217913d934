"""Severstal (Kaggle 2019) reader: train.csv in both Kaggle formats, a mask dataset, tiles and boxes.

Shapes: images are uint8 [H, W] grey (256 x 1600); masks are uint8 [4, H, W] of {0, 1} where channel k is
ClassId k+1. Boxes are float32 [M, 4] xyxy in 0-based pixel-edge coordinates: x1, y1 is the top-left
corner of the first pixel, x2, y2 the bottom-right corner of the last one (so x2/y2 are exclusive pixel
indices and width = x2 - x1). NEU-DET's 1-based inclusive VOC boxes are converted to the same convention
in `steelscan.data.neu`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from steelscan.data.classes import SEVERSTAL_CLASSES, SEVERSTAL_SHAPE
from steelscan.data.neu import load_grey_image
from steelscan.data.rle import rle_decode, rle_encode
from steelscan.core.errors import DataError, SteelscanError

log = logging.getLogger(__name__)

NEW_HEADER = ("ImageId", "ClassId", "EncodedPixels")
OLD_HEADER = ("ImageId_ClassId", "EncodedPixels")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
N_CLASSES = len(SEVERSTAL_CLASSES)


@dataclass(frozen=True)
class RleRow:
    """One non-empty mask row of train.csv. `line` is the 1-based line in the file (the header is line 1)."""

    image_id: str
    class_id: int  # Kaggle ClassId 1..4; mask channel class_id - 1
    rle: str
    line: int


@dataclass
class SeverstalLabels:
    """The contents of a train.csv: mask rows plus every image id the file names.

    In the old format the file names every image (absent classes have empty EncodedPixels), so
    `image_ids` includes defect-free images; in the new format it holds only defective ones.
    """

    path: Path
    format: str  # "new" (ImageId,ClassId,EncodedPixels) or "old" (ImageId_ClassId,EncodedPixels)
    rows: list[RleRow]
    image_ids: list[str]  # first-seen order
    _by_image: dict[str, list[RleRow]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for row in self.rows:
            self._by_image.setdefault(row.image_id, []).append(row)

    def rows_for(self, image_id: str) -> list[RleRow]:
        """The mask rows of one image ([] for a defect-free or unknown image)."""
        return self._by_image.get(image_id, [])


def _parse_class_id(text: str, path: Path, line: int) -> int:
    try:
        class_id = int(text.strip())
    except ValueError:
        class_id = 0
    if not 1 <= class_id <= N_CLASSES:
        raise SteelscanError(f"{path}: line {line}: ClassId must be an integer 1..{N_CLASSES}, got {text!r}")
    return class_id


def read_train_csv(path: str | Path) -> SeverstalLabels:
    """Read a Kaggle Severstal train.csv, new (`ImageId,ClassId,EncodedPixels`) or old
    (`ImageId_ClassId,EncodedPixels`, 4 rows per image) format. RLE strings are checked on decode, not here.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Severstal labels not found: expected a train.csv file at {path}")
    try:
        return _read_train_csv(path)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise SteelscanError(f"{path}: not a readable CSV text file: {exc}") from None


def _read_train_csv(path: Path) -> SeverstalLabels:
    with path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: tolerate a BOM from Excel
        reader = csv.reader(fh)
        header = tuple(h.strip() for h in next(reader, ()))
        if header == NEW_HEADER:
            fmt = "new"
        elif header == OLD_HEADER:
            fmt = "old"
        else:
            raise SteelscanError(
                f"{path}: unknown train.csv header {','.join(header) or '(empty file)'!r}; expected "
                f"{','.join(NEW_HEADER)!r} (Kaggle 2019) or {','.join(OLD_HEADER)!r} (Kaggle 2019, first release)"
            )
        rows: list[RleRow] = []
        ids: dict[str, None] = {}
        seen: dict[tuple[str, int], int] = {}
        for line, record in enumerate(reader, start=2):
            if not record or all(not v.strip() for v in record):
                continue
            if len(record) != len(header):
                raise SteelscanError(
                    f"{path}: line {line}: expected {len(header)} fields ({','.join(header)}), got {len(record)}"
                )
            if fmt == "new":
                image_id, class_text, rle = (v.strip() for v in record)
            else:
                key, rle = record[0].strip(), record[1].strip()
                image_id, sep, class_text = key.rpartition("_")
                if not sep or not image_id:
                    raise SteelscanError(f"{path}: line {line}: expected ImageId_ClassId like 'abc.jpg_1', got {key!r}")
            if not image_id:
                raise SteelscanError(f"{path}: line {line}: empty ImageId")
            class_id = _parse_class_id(class_text, path, line)
            if (image_id, class_id) in seen:
                raise SteelscanError(
                    f"{path}: line {line}: duplicate row for image {image_id} class {class_id} "
                    f"(first on line {seen[image_id, class_id]})"
                )
            seen[image_id, class_id] = line
            ids[image_id] = None
            if rle:
                rows.append(RleRow(image_id, class_id, rle, line))
    return SeverstalLabels(path=path, format=fmt, rows=rows, image_ids=list(ids))


def read_image_ids(path: str | Path) -> list[str]:
    """Read image_ids.txt: one image id per line; blank lines are skipped, duplicates are an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image id list not found: expected a text file at {path}")
    ids: dict[str, int] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        image_id = text.strip()
        if not image_id:
            continue
        if image_id in ids:
            raise SteelscanError(
                f"{path}: line {line}: duplicate image id {image_id!r} (first on line {ids[image_id]})"
            )
        ids[image_id] = line
    if not ids:
        raise SteelscanError(f"{path}: expected one image id per line, the file holds none")
    return list(ids)


def decode_masks(labels: SeverstalLabels, image_id: str, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> np.ndarray:
    """uint8 [4, H, W] {0, 1} mask of one image; an RLE error names the csv line, image and class."""
    mask = np.zeros((N_CLASSES, *shape), dtype=np.uint8)
    for row in labels.rows_for(image_id):
        try:
            mask[row.class_id - 1] = rle_decode(row.rle, shape)
        except ValueError as exc:
            raise SteelscanError(
                f"{labels.path}: line {row.line} (image {row.image_id}, class {row.class_id}): bad RLE: {exc}"
            ) from None
    return mask


class SeverstalDataset:
    """Severstal images and masks, one dict per image (torch `Dataset`-compatible: `__len__`, `__getitem__`).

    Each item: ``{"image_id": str, "image": uint8 [H, W], "mask": uint8 [4, H, W]}``. In masks-only mode
    (`image_dir=None`, for label-only copies such as severstal-partial) the "image" key is absent.

    Image ids, in this order of preference: `image_ids` as given; every image file in `image_dir` (this is
    how defect-free images without csv rows get in); else the ids named in the csv (which, for the new
    format, misses the defect-free images: a warning is logged). Labels for an id outside that list, or an
    id without an image file, are an error raised here rather than half-way through an epoch.
    """

    def __init__(
        self,
        csv_path: str | Path,
        image_dir: str | Path | None = None,
        image_ids: Sequence[str] | None = None,
        shape: tuple[int, int] = SEVERSTAL_SHAPE,
    ) -> None:
        self.labels = read_train_csv(csv_path)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.shape = tuple(shape)
        if self.image_dir is not None and not self.image_dir.is_dir():
            raise DataError(f"Severstal image folder not found: expected a folder at {self.image_dir}")
        if image_ids is not None:
            ids = list(image_ids)
            self.id_source = "list"
        elif self.image_dir is not None:
            ids = sorted(p.name for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not ids:
                raise SteelscanError(f"{self.image_dir}: expected Severstal images (*.jpg), found none")
            self.id_source = "folder"
        else:
            ids = list(self.labels.image_ids)
            self.id_source = "csv"
            if self.labels.format == "new":
                log.warning("%s: no image folder or id list; defect-free images are unknown", csv_path)
        if len(set(ids)) != len(ids):
            raise SteelscanError("image ids must be unique; the given list repeats some")
        if self.image_dir is not None:
            missing = [i for i in ids if not (self.image_dir / i).is_file()]
            missing += sorted(set(self.labels.image_ids) - set(ids)) if self.id_source == "folder" else []
            if missing:
                raise DataError(
                    f"{len(missing)} image(s) missing from {self.image_dir}, e.g. {self.image_dir / missing[0]}"
                )
        unknown = sorted(set(self.labels.image_ids) - set(ids))
        if unknown:
            raise SteelscanError(
                f"{self.labels.path} has labels for {len(unknown)} image(s) outside the given image id list, "
                f"e.g. {', '.join(unknown[:3])}"
            )
        self.image_ids: list[str] = ids

    @classmethod
    def from_root(cls, root: str | Path, shape: tuple[int, int] = SEVERSTAL_SHAPE) -> SeverstalDataset:
        """Open a Kaggle-layout folder: root/train.csv plus root/train_images/ and/or root/image_ids.txt.

        With image_ids.txt the ids come from it (images, if present, are read from train_images/);
        with only train_images/ every image there is an item.
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"Severstal folder not found: expected a folder at {root}")
        csv_path = root / "train.csv"
        if not csv_path.is_file():
            raise SteelscanError(
                f"{root}: expected a Severstal folder with train.csv (+ train_images/ or image_ids.txt), "
                f"found {_describe(root)}"
            )
        image_dir = root / "train_images"
        ids_path = root / "image_ids.txt"
        return cls(
            csv_path,
            image_dir=image_dir if image_dir.is_dir() else None,
            image_ids=read_image_ids(ids_path) if ids_path.is_file() else None,
            shape=shape,
        )

    @property
    def masks_only(self) -> bool:
        return self.image_dir is None

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.image_ids[index]
        item: dict = {"image_id": image_id, "mask": decode_masks(self.labels, image_id, self.shape)}
        if self.image_dir is not None:
            item["image"] = load_grey_image(self.image_dir / image_id, self.shape)
        return item

    def class_presence(self) -> np.ndarray:
        """bool [N, 4]: which classes each image has, from the csv alone (no decoding)."""
        present = np.zeros((len(self), N_CLASSES), dtype=bool)
        for i, image_id in enumerate(self.image_ids):
            for row in self.labels.rows_for(image_id):
                present[i, row.class_id - 1] = True
        return present


def _describe(folder: Path, limit: int = 6) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "an empty folder"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def tile_offsets(width: int, n_tiles: int = 4) -> list[int]:
    """x offsets of `n_tiles` equal tiles across `width` pixels (0, 400, 800, 1200 for 1600 and 4)."""
    if not isinstance(n_tiles, (int, np.integer)) or n_tiles < 1:
        raise ValueError(f"n_tiles must be a positive integer, got {n_tiles!r}")
    if width % n_tiles:
        raise ValueError(f"image width {width} is not divisible into {n_tiles} equal tiles")
    step = width // n_tiles
    return [i * step for i in range(n_tiles)]


def split_tiles(array, n_tiles: int = 4) -> tuple[list, list[int]]:
    """Split along the width (last axis) into equal tiles, as Wang 2021 cuts 1600x256 into four 400x256.

    Works on [H, W] images and [C, H, W] masks (numpy arrays or torch tensors). Returns the tiles (views,
    in left-to-right order; `np.stack` them for a batch) and their x offsets: a point (x, y) in tile i is
    (x + offsets[i], y) in the full image.
    """
    ndim = getattr(array, "ndim", None)
    if ndim not in (2, 3):
        shape = getattr(array, "shape", None)
        raise ValueError(f"split_tiles expects an [H, W] image or a [C, H, W] mask, got shape {shape}")
    width = array.shape[-1]
    offsets = tile_offsets(width, n_tiles)
    step = width // n_tiles
    return [array[..., x : x + step] for x in offsets], offsets


def mask_to_boxes(mask: np.ndarray, min_area: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes of the 8-connected components of each class channel.

    `mask`: [K, H, W] (or [H, W], taken as K=1), non-zero = defect. Returns boxes float32 [M, 4] xyxy in
    0-based pixel-edge coordinates (x2, y2 exclusive: a single pixel at (x, y) is [x, y, x+1, y+1]) and
    labels int64 [M] = channel index (Severstal ClassId - 1). Components with fewer than `min_area` pixels
    are dropped. Order: by channel, then by OpenCV's raster-scan component order.
    """
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"mask_to_boxes expects a [K, H, W] or [H, W] mask, got shape {mask.shape}")
    if min_area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    boxes, labels = [], []
    for k in range(mask.shape[0]):
        channel = (mask[k] != 0).astype(np.uint8)
        if not channel.any():
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(channel, connectivity=8)
        for x, y, w, h, area in stats[1:]:  # row 0 is the background
            if area >= min_area:
                boxes.append((x, y, x + w, y + h))
                labels.append(k)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def write_submission(path: Path, rows: list[tuple[str, list]]) -> None:
    """Kaggle's submission CSV: ImageId,ClassId,EncodedPixels, one row per image and class (empty = no defect)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "ClassId", "EncodedPixels"])
        for image_id, masks in rows:
            for k, m in enumerate(masks):
                w.writerow([image_id, k + 1, rle_encode(m)])
    tmp.replace(path)  # a killed run never leaves half a submission
