"""Small pieces every reader shares: listing images, reading image headers, checking boxes, naming splits."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np

from steelscan.core.errors import DataError, ImageError
from steelscan.core.images import image_size as read_image_size
from steelscan.data.formats.base import IMAGE_SUFFIXES, Problem

# Folder / file names that mean a split. Exports spell validation several ways (Roboflow: "valid").
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
# A box reaching this far (pixels) past the image edge is float noise from normalised coordinates, not a problem.
EDGE_TOLERANCE = 0.5


def split_name(text: str) -> str | None:
    """'train' / 'val' / 'test' for a folder name such as 'valid' or 'Train'; None for anything else."""
    return SPLIT_ALIASES.get(text.strip().lower())


def nfc(text: str) -> str:
    # macOS writes file names decomposed (NFD): "ölfleck" from a Mac zip must equal "ölfleck" typed on Linux.
    return unicodedata.normalize("NFC", text)


def is_hidden(name: str) -> bool:
    # ".git", ".DS_Store", "__MACOSX" (zip debris) and "_cache"-style folders are not data.
    return name.startswith((".", "_"))


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """Image files under `folder`, sorted; hidden and `_`-led folders are skipped."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.is_dir():
            if recursive and not is_hidden(p.name):
                found.extend(list_images(p, recursive))
        elif p.is_file() and is_image(p):
            found.append(p)
    return sorted(found)


def child(folder: Path, name: str) -> Path | None:
    """The subfolder of `folder` called `name`, matched case-insensitively (copies spell IMAGES / images)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def rel_name(path: Path, root: Path) -> str:
    """The item name: POSIX path relative to the data set root (absolute for a file outside it)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def describe(folder: Path, limit: int = 8) -> str:
    """The first few entries of a folder, for error messages."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as exc:
        return f"an unreadable folder ({exc.strerror or exc})"
    if not names:
        return "an empty folder"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def image_size(path: Path, name: str, problems: list[Problem]) -> tuple[int, int] | None:
    """(height, width) from the image header (no pixel decode); None, with an `unreadable_image` problem, when
    the file is missing, empty or not an image the package reads (`steelscan.core.images.image_size`)."""
    try:
        return read_image_size(path)
    except ImageError as exc:
        problems.append(Problem("unreadable_image", name, str(exc)))
        return None


def check_box(
    box: tuple[float, float, float, float], size: tuple[int, int], name: str, where: str, problems: list[Problem]
) -> tuple[float, float, float, float] | None:
    """Clip a pixel xyxy box to the image (recording `box_outside_image`); None (recording `empty_box`) when
    nothing of it is left. `where` says which box in the label file (e.g. 'line 3')."""
    height, width = size
    x1, y1, x2, y2 = box
    if not all(np.isfinite(v) for v in box):
        problems.append(Problem("bad_label", name, f"{where}: expected finite box coordinates, got {box}"))
        return None
    t = EDGE_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        problems.append(Problem(
            "box_outside_image", name,
            f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches outside the {width}x{height} image; clipped",
        ))
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
    if cx2 - cx1 <= 0 or cy2 - cy1 <= 0:
        problems.append(Problem(
            "empty_box", name, f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) has zero width or height; dropped"
        ))
        return None
    return cx1, cy1, cx2, cy2


def as_arrays(boxes: list, labels: list) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def require_dir(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        found = "found a file" if root.exists() else "found nothing"
        raise DataError(f"{what}: expected a folder at {root}, {found}")
    return root


def read_class_yaml(path: Path, keys: tuple[str, ...] = ("classes", "names")) -> list[str] | None:
    """Class names from a small YAML file: a list, `classes: [...]`, or `names:` as a list or {id: name}.
    None when the file is absent; DataError when it is there but unusable (a silent fallback would rename classes)."""
    import yaml

    if not path.is_file():
        return None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not readable YAML: {exc}") from None
    raw = doc if isinstance(doc, list) else next((doc[k] for k in keys if isinstance(doc, dict) and k in doc), None)
    if raw is None:
        return None
    return names_from(raw, path)


def names_from(raw, source: Path) -> list[str]:
    """A class list from YAML's `names`: a list, or a mapping {0: a, 1: b} whose ids must be 0..K-1."""
    if isinstance(raw, dict):
        try:
            by_id = {int(k): v for k, v in raw.items()}
        except (TypeError, ValueError):
            raise DataError(f"{source}: expected class ids 0..K-1 as mapping keys, got {list(raw)[:6]}") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(f"{source}: expected class ids 0..{len(by_id) - 1} without gaps, got {sorted(by_id)}")
        raw = [by_id[i] for i in range(len(by_id))]
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{source}: expected a non-empty list of class names, got {raw!r:.80}")
    names = [nfc(str(n).strip()) for n in raw]
    if len(set(names)) != len(names) or not all(names):
        raise DataError(f"{source}: expected distinct, non-empty class names, got {names}")
    return names
