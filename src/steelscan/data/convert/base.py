"""What every conversion shares: the result it reports, the checks of target and destination, and the
staging folder that makes a conversion all or nothing."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from steelscan.core.errors import DataError

TARGETS: tuple[str, ...] = ("yolo", "coco", "voc", "folders")


@dataclass
class ConvertResult:
    dst: Path
    to: str
    task: str
    class_names: list[str]
    per_split: dict[str, int] = field(default_factory=dict)  # files written per split (images or crops)
    unit: str = "images"  # "images" or "crops"
    images: int = 0  # source images used
    boxes: int = 0  # boxes written (yolo, coco, voc)
    dropped_boxes: int = 0  # zero size once clipped to the image (or rounded, for VOC), or a class outside the list
    skipped: list[str] = field(default_factory=list)  # items not written: missing or unreadable image, no label

    def summary(self) -> str:
        splits = ", ".join(f"{s} {n}" for s, n in self.per_split.items()) or "none"
        total = sum(self.per_split.values())
        what = f"{total} {self.unit} ({splits})"
        if self.unit == "crops":
            what += f" from {self.images} images"
        elif self.to != "folders":
            what += f" with {self.boxes} boxes"
        extra = ""
        if self.dropped_boxes:
            extra += f"; {self.dropped_boxes} boxes dropped (zero size in the image, or no class)"
        if self.skipped:
            extra += f"; {len(self.skipped)} items skipped (e.g. {self.skipped[0]})"
        names = ", ".join(self.class_names[:8]) + (f", ... ({len(self.class_names) - 8} more)"
                                                    if len(self.class_names) > 8 else "")
        return f"wrote {what}, {len(self.class_names)} classes ({names}) as {self.to} to {self.dst}{extra}"


def check_target(to) -> str:
    to = str(getattr(to, "value", to))
    if to not in TARGETS:
        raise DataError(f"unknown target layout {to!r}; expected one of {', '.join(TARGETS)}")
    return to


def check_dst(dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        if not dst.is_dir():
            raise DataError(f"destination {dst} exists and is not a folder; expected an absent or empty folder")
        if any(dst.iterdir()):
            raise DataError(f"destination {dst} is not empty; expected an absent or empty folder "
                            "(convert never writes over existing files)")


def check_folder_name(name: str) -> None:
    bad = (not name or name.strip() != name or name in (".", "..") or any(c in name for c in "/\\\0")
           or any(ord(c) < 32 for c in name))
    if bad:
        raise DataError(f"class name {name!r} cannot be a folder name (empty, '.', '..', '/', '\\', control "
                        "characters or surrounding spaces); rename the class or convert to yolo, coco or voc")


@contextmanager
def staging(dst: Path) -> Iterator[Path]:
    """A fresh hidden folder beside `dst`, renamed to `dst` on success and removed on failure."""
    dst = dst.absolute()
    tmp = dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        raise DataError(f"cannot create the destination {dst}: {exc.strerror or exc}") from None
    try:
        yield tmp
        check_dst(dst)  # still absent or empty
        if dst.exists():
            dst.rmdir()
        os.rename(tmp, dst)
    except OSError as exc:  # disk full, permissions: about the user's destination, not a bug
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"writing {dst} failed, nothing was kept: {exc.strerror or exc}"
                        + (f" ({exc.filename})" if exc.filename else "")) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def with_progress(seq: Sequence, description: str, enabled: bool) -> Iterable:
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)  # stderr, transient, terminals only
    return track(seq, description=description, console=console, transient=True,
                 disable=not (enabled and console.is_terminal))
