"""`steelscan convert`: write a labelled data set in another layout (YOLO, COCO, Pascal VOC, class folders)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Target(str, Enum):
    yolo = "yolo"
    coco = "coco"
    voc = "voc"
    folders = "folders"


def command(
    src: Path = typer.Argument(..., help="Data set folder (or YOLO data.yaml / COCO JSON) in any layout steelscan reads."),
    dst: Path = typer.Argument(..., help="Output folder: absent or empty (never written over)."),
    to: Target = typer.Option(..., "--to", "-t", help="Layout to write."),
    format: str | None = typer.Option(None, "--format", "-f", help="Layout of SRC; detected when omitted."),
) -> None:
    """Convert labels between layouts; the source's own train/val/test split is kept.

    Detection and segmentation data write as yolo, coco or voc (segmentation: one box per connected
    component of each class mask). --to folders writes classification data as class folders, and turns
    detection/segmentation data into crops of each box for training a defect classifier.
    """
    from steelscan.data.convert import convert

    result = convert(src, dst, to.value, format=format, progress=True)
    typer.echo(result.summary())
