"""`steelscan evaluate MODEL --data PATH [--split S] [--json OUT]` on any labelled layout."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging


def command(
    model: str = typer.Argument(..., help="Run folder, checkpoint file or built-in name (e.g. neu-cls)"),
    data: Path = typer.Option(..., "--data", help="Labelled data set in any layout steelscan reads"),
    fmt: str = typer.Option(None, "--format", help="The layout (default: detected from the folder)"),
    split: str = typer.Option("all", "--split", help="train, val, test (the data set's own, or training's split) or all"),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics JSON here"),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: as the model was trained)"),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Default 64 (classifiers), 8 (detectors), 4 (segmenters)"),
) -> None:
    """Evaluate a model on labelled data: accuracy, macro-F1 and per-class numbers (classifiers); mAP@0.5,
    mAP@[.5:.95] and AP50 per class (detectors); Kaggle Dice beside the all-empty baseline (segmenters)."""
    from steelscan.tasks.base import get_task
    from steelscan.tasks.evaluate import evaluate_model

    setup_logging()
    out = evaluate_model(model, data, split, fmt, batch_size, tta)
    columns, rows, line = get_task(out["task"]).report(out)
    table = Table(*columns, title=f"{model} on {data} ({split})")
    for row in rows:
        table.add_row(*row)
    con = Console()
    con.print(table)
    con.print(line)
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))
