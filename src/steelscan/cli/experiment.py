"""`steelscan experiment imbalance EXPERIMENT.yaml`: the same model under several imbalance remedies."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging

experiment_app = typer.Typer(help="Train one recipe under several variants and print one comparison table.",
                             no_args_is_help=True)


@experiment_app.command("imbalance")
def imbalance(
    experiment: Path = typer.Argument(..., help="Experiment YAML (base + variants), e.g. configs/neu_cls_imbalance.yaml"),
    out: Path = typer.Option(Path("runs/imbalance"), "--out", help="Folder for the runs, results.json and recall.png"),
    set_: list[str] = typer.Option([], "--set", help="Override the base config of every variant (repeatable)"),
) -> None:
    """Compare imbalance remedies (weighted CE, focal, balanced sampler, oversampling) on per-class recall."""
    from steelscan.experiments import run_experiment

    setup_logging()
    con = Console()
    res = run_experiment(experiment, out, set_, log=lambda s: con.print(f"[bold]{s}[/]"))
    con.print(recall_table(res, title=f"{experiment.name}: minority {res['limit_per_class']} (validation split)"))
    con.print(f"results: {out / 'results.json'}, plot: {out / 'recall.png'}")


def recall_table(res: dict, title: str) -> Table:
    """Per-class recall (%) per variant; NEU classes are headed by their short prefixes to keep it narrow."""
    from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES

    short = dict(zip(NEU_CLASSES, NEU_CLS_PREFIXES))
    classes = list(res["rows"][0]["recall"])
    table = Table("variant", *[f"{short.get(c, c)} rec." for c in classes], "acc.", "macro-F1", "min", title=title)
    for r in res["rows"]:
        table.add_row(r["variant"], *[f"{100 * r['recall'][c]:.1f}" for c in classes], f"{100 * r['accuracy']:.2f}",
                      f"{r['macro_f1']:.4f}", f"{r['train_minutes']:.1f}")
    return table
