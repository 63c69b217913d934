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
    classes = list(res["rows"][0]["recall"])
    table = Table("variant", *[f"{c} recall" for c in classes], "accuracy", "macro-F1", "train min",
                  title=f"{experiment.name}: minority {res['limit_per_class']} (validation split)")
    for r in res["rows"]:
        table.add_row(r["variant"], *[f"{100 * r['recall'][c]:.1f}" for c in classes], f"{100 * r['accuracy']:.2f}",
                      f"{r['macro_f1']:.4f}", f"{r['train_minutes']:.1f}")
    con.print(table)
    con.print(f"results: {out / 'results.json'}, plot: {out / 'recall.png'}")
