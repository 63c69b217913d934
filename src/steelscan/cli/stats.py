"""`steelscan stats`: class balance, splits, sizes and label problems of a data set, as tables, JSON and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from steelscan.core.errors import DataError
from steelscan.data.stats import compute_stats, plot_stats, print_stats


def command(
    path: Path = typer.Argument(..., help="Data set folder (or YOLO data.yaml / COCO JSON / train.csv) in any layout."),
    format: str | None = typer.Option(
        None, "--format", "-f",
        help="How to read PATH: folders, neu-cls, yolo, coco, voc, neu-det, masks, rle (alias severstal); "
             "detected when omitted."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw class counts / shares into this PNG."),
) -> None:
    """Print task, classes, images per split, samples per class, image and box sizes, and the problems a
    labelling export gets wrong (unreadable images, labels without images, boxes outside the image, unknown
    class ids, byte-identical files, classes with fewer than 10 samples).

    Severstal folders (train.csv + train_images/ and/or image_ids.txt) also get pixel shares, with the
    Kaggle full-set figures beside ours.
    """
    stats = compute_stats(path, format, progress=True)
    print_stats(stats, Console())
    try:
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            typer.echo(f"wrote {json_out}")
        if plot is not None:
            typer.echo(f"wrote {plot_stats(stats, plot)}")
    except OSError as exc:
        raise DataError(f"cannot write {exc.filename or json_out or plot}: {exc.strerror or exc}") from None
