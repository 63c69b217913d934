"""`convert` and `write_data`: check the target and the destination, stage, and hand the data to the layout's
writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from steelscan.core.errors import DataError
from steelscan.data.convert.base import ConvertResult, check_dst, check_folder_name, check_target, staging
from steelscan.data.convert.coco import write_coco
from steelscan.data.convert.folders import write_folders
from steelscan.data.convert.voc import write_voc
from steelscan.data.convert.yolo import write_yolo
from steelscan.data.formats.base import LabelledData

NO_BOXES = ("classification data has no boxes; expected detection or segmentation data; "
            "--to folders works (one class folder per class)")
WRITERS: dict[str, Callable[[LabelledData, Path, ConvertResult, bool], None]] = {
    "yolo": write_yolo, "coco": write_coco, "voc": write_voc, "folders": write_folders,
}


def convert(src: str | Path, dst: str | Path, to: str, format: str | None = None,
            progress: bool = False) -> ConvertResult:
    """Read `src` (layout `format`, detected when None) and write it to `dst` in layout `to`."""
    from steelscan.data.formats import read_data

    to = check_target(to)
    check_dst(Path(dst))  # before reading: a refused DST should not cost a full read
    data = read_data(src, format=format)
    return write_data(data, dst, to, progress=progress)


def write_data(data: LabelledData, dst: str | Path, to: str, progress: bool = False) -> ConvertResult:
    """Write `data` to the absent or empty folder `dst` in layout `to` (one of TARGETS)."""
    to = check_target(to)
    if data.task == "classification" and to != "folders":
        raise DataError(f"cannot write {to}: {NO_BOXES}")
    if to == "folders":
        for name in data.class_names:
            check_folder_name(name)
    dst = Path(dst)
    check_dst(dst)
    result = ConvertResult(dst=dst, to=to, task=data.task, class_names=list(data.class_names))
    with staging(dst) as tmp:
        WRITERS[to](data, tmp, result, progress)
        if not result.images:
            why = f" (e.g. {result.skipped[0]})" if result.skipped else ""
            raise DataError(f"{data.root}: no item could be written{why}; expected labelled images")
    return result

