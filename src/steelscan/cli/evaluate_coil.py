"""`steelscan evaluate-coil OUT --truth TRUTH.json [--iou 0.3] [--json FILE] [--baseline-model M]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# JSON key -> (name in lines, column header)
SYSTEMS = {"station": ("station", "station"),
           "detector_on_single_images": ("detector on single images", "single\nimages")}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def print_scores(con: Console, out: dict) -> None:
    """The per-class table (truth, then TP / found, recall and precision of each system) and the counts."""
    systems = [k for k in SYSTEMS if k in out]
    table = Table(title=f"coil defects matched at IoU >= {out['iou']:g}",
                  box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
    table.add_column("class", no_wrap=True)
    table.add_column("truth", justify="right", no_wrap=True)
    for k in systems:
        table.add_column(f"{SYSTEMS[k][1]}\nTP/found", justify="right", no_wrap=True)
        table.add_column("recall", justify="right", no_wrap=True)
        table.add_column("prec.", justify="right", no_wrap=True)
    classes = list(dict.fromkeys(c for k in systems for c in out[k]["per_class"]))

    def cells(row: dict | None) -> list[str]:
        # a class missing from one system's rows has no truth and nothing found there
        row = row or {"found": 0, "tp": 0, "recall": None, "precision": None}
        return [f"{row['tp']}/{row['found']}", _pct(row["recall"]), _pct(row["precision"])]

    for c in classes:
        truth = next(out[k]["per_class"][c]["truth"] for k in systems if c in out[k]["per_class"])
        table.add_row(c, str(truth), *[x for k in systems for x in cells(out[k]["per_class"].get(c))])
    first = out[systems[0]]
    table.add_section()
    table.add_row("[bold]all, same class[/]", str(first["overall"]["truth"]),
                  *[x for k in systems for x in cells(out[k]["overall"])])
    table.add_row("any class", str(first["class_agnostic"]["truth"]),
                  *[x for k in systems for x in cells(out[k]["class_agnostic"])])
    con.print(table)
    con.print(f"truth: {out['truth']}")
    for k in systems:
        r = out[k]
        extra = (f" ({r['model']}, {r['images']} images alone, score >= {r['score_threshold']:g})"
                 if k != "station" else f" ({out['found']})")
        con.print(f"{SYSTEMS[k][0]}{extra}: {r['split']} truth defect(s) split into 2+ found, {r['merged']} found "
                  f"defect(s) covering 2+ truth defects")
        only = r["unknown_classes"]
        if only["truth_only"] or only["found_only"]:
            con.print(f"  [yellow]classes on one side only (never matched by class):[/] truth "
                      f"{', '.join(only['truth_only']) or '-'}; found {', '.join(only['found_only']) or '-'}")


def command(
    found: Path = typer.Argument(..., help="Inspection output folder (its defects.json) or a defects.json"),
    truth: Path = typer.Option(..., "--truth", help="Ground truth: defects_truth.json, or the coil folder holding it"),
    iou: float = typer.Option(0.3, "--iou", help="IoU of coil boxes a found defect needs to match a truth one"),
    json_out: Path = typer.Option(None, "--json", help="Write the scores as JSON here"),
    baseline_model: str = typer.Option(
        None, "--baseline-model",
        help="Also run this detector (run folder, checkpoint or built-in name, e.g. neu-det) on each source image "
             "the truth lists (a coil from `steelscan synth neu-coil`) alone, and score it the same way"),
    batch: int = typer.Option(8, "--batch", min=1, help="--baseline-model: images per model call"),
) -> None:
    """Score a coil inspection against its ground truth: recall and precision per class and overall (a match
    needs the same class), class-agnostic, and defects split into several or merged into one.

    With --baseline-model the table shows the station and the detector on single images side by side: how
    much the station's frames, tiles and merging cost or gain over the bare detector.
    """
    from steelscan.evaluation.coil import evaluate_coil

    con = Console()
    with Progress(TextColumn("detector on single images"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=baseline_model is None) as bar:
        task = bar.add_task("", total=None)
        out = evaluate_coil(found, truth, iou, baseline_model, batch, lambda k: bar.advance(task, k))
    print_scores(con, out)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=2))
        con.print(f"scores: {json_out}")
