"""`steelscan stats`: class imbalance of a data set folder, as tables, JSON and a plot."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from steelscan.data.stats import compute_stats, plot_stats, print_stats


class DataFormat(str, Enum):
    severstal = "severstal"
    neu_cls = "neu-cls"
    neu_det = "neu-det"


def command(
    path: Path = typer.Argument(..., help="Data set folder (Kaggle Severstal, NEU-CLS or NEU-DET layout)."),
    format: DataFormat = typer.Option(..., "--format", "-f", help="How to read PATH."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers to this JSON file."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw class counts / shares into this PNG."),
) -> None:
    """Print class counts per image, pixel shares (Severstal) and box sizes (NEU-DET) of a data set.

    Severstal folders hold train.csv plus train_images/ and/or image_ids.txt (label-only copies);
    defect-free images are counted too, and the Kaggle full-set figures are printed beside ours.
    """
    stats = compute_stats(path, format.value, progress=True)
    print_stats(stats, Console())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        typer.echo(f"wrote {plot_stats(stats, plot)}")
