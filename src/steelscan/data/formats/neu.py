"""NEU adapters: `neu-cls` (flat `Cr_1.bmp` ...) and `neu-det` (`IMAGES/` + `ANNOTATIONS/`), over `data.neu`.

Both keep NEU's own split so the two variants split alike: `group` is the image number, `split` is 'val'
when number % 5 == 4, else 'train'. Numbers divisible by 5 are the fifth NEU holds out for independent
evaluation; a copy that still has them gets them skipped here and counted in `LabelledData.skipped`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.formats.common import child, describe, image_size, rel_name, require_dir
from steelscan.data.formats.voc import read_voc
from steelscan.data.neu import is_heldout, list_neu_cls, list_neu_det, neu_class_name, neu_split

log = logging.getLogger(__name__)

HELD_OUT = "neu_held_out"  # key in LabelledData.skipped
_STEM = re.compile(r"^(?P<cls>.+?)_(?P<num>\d+)$")


def neu_side(number: int) -> str | None:
    """`steelscan.data.neu.neu_split` of an image number, or None for the held-out fifth (left out, counted)."""
    return None if is_heldout(number) else neu_split(number)


def _outside_held_out(listed: list) -> tuple[list[tuple[object, str]], dict[str, int]]:
    """(item, split) of listed NEU items, and the `skipped` count of those in the held-out fifth."""
    sides = [(it, neu_side(it.number)) for it in listed]
    held_out = sum(side is None for _, side in sides)
    return [(it, side) for it, side in sides if side is not None], ({HELD_OUT: held_out} if held_out else {})


def read_neu_cls(root: str | Path) -> LabelledData:
    root = require_dir(Path(root), "NEU-CLS")
    try:
        listed = list_neu_cls(root)
    except (SteelscanError, FileNotFoundError) as exc:  # the NEU reader refuses a mixed or misnamed copy
        raise DataError(f"NEU-CLS: {exc}") from None
    items: list[Item] = []
    problems: list[Problem] = []
    kept, skipped = _outside_held_out(listed)
    for it, split in kept:
        name = rel_name(it.path, root)
        size = image_size(it.path, name, problems)
        if size is not None:
            items.append(Item(name=name, path=it.path, split=split, group=str(it.number), size=size, label=it.label))
    if not items:
        raise DataError(f"{root}: no readable NEU-CLS image outside the held-out fifth")
    return LabelledData("classification", "neu-cls", root, list(NEU_CLASSES), items, problems, skipped=skipped)


def read_neu_det(root: str | Path) -> LabelledData:
    root = require_dir(Path(root), "NEU-DET")
    if child(root, "IMAGES") is None or child(root, "ANNOTATIONS") is None:
        raise DataError(f"{root}: expected NEU-DET folders IMAGES/ and ANNOTATIONS/, found {describe(root)}")
    try:
        listed = list_neu_det(root)
    except (SteelscanError, FileNotFoundError) as exc:
        # The NEU reader stops at the first bad file; read file by file instead so each one is a Problem.
        log.warning("NEU-DET %s: %s; reading it file by file", root, exc)
        return _read_neu_det_lenient(root)
    items: list[Item] = []
    problems: list[Problem] = []
    kept, skipped = _outside_held_out(listed)
    for it, split in kept:
        name = rel_name(it.image_path, root)
        size = image_size(it.image_path, name, problems)
        if size is None:
            continue
        if size != it.size:
            problems.append(Problem("bad_label", name, f"annotation says {it.size[1]}x{it.size[0]}, "
                                                       f"the image is {size[1]}x{size[0]}; boxes kept"))
        items.append(Item(name=name, path=it.image_path, split=split, group=str(it.number), size=size,
                          boxes=it.boxes, labels=it.labels))
    if not items:
        raise DataError(f"{root}: no readable NEU-DET image outside the held-out fifth")
    return LabelledData("detection", "neu-det", root, list(NEU_CLASSES), items, problems, skipped=skipped)


def _read_neu_det_lenient(root: Path) -> LabelledData:
    ann_dir, image_dir = child(root, "ANNOTATIONS"), child(root, "IMAGES")
    if ann_dir is None or image_dir is None:
        raise DataError(f"{root}: expected NEU-DET folders IMAGES/ and ANNOTATIONS/, found {describe(root)}")
    data = read_voc(root, class_names=NEU_CLASSES, fmt="neu-det", ann_dir=ann_dir, image_dir=image_dir)
    items, held_out = [], 0
    for it in data.items:
        match = _STEM.match(it.path.stem)
        try:
            neu_class_name(match["cls"]) if match else None
        except SteelscanError:
            match = None
        if match is None:
            data.problems.append(Problem("bad_label", it.name, "expected a NEU-DET name like crazing_12; dropped"))
            continue
        number = int(match["num"])
        split = neu_side(number)
        if split is None:
            held_out += 1
            continue
        it.split, it.group = split, str(number)
        items.append(it)
    if not items:
        raise DataError(f"{root}: no readable NEU-DET image outside the held-out fifth")
    data.items = items
    data.skipped = {HELD_OUT: held_out} if held_out else {}
    return data
