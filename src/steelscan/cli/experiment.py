"""`steelscan experiment imbalance EXPERIMENT.yaml` (imbalance remedies), `steelscan experiment ablation
EXPERIMENT.yaml` (an ablation table beside a paper's, resumable) and `steelscan experiment losses CONFIG` (the
seed's Severstal loss study)."""

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


@experiment_app.command("ablation")
def ablation(
    experiment: Path = typer.Argument(..., help="Experiment YAML (base + variants [+ reference]), e.g. "
                                                "configs/wang2021_table6.yaml"),
    out: Path = typer.Option(None, "--out", help="Folder for the runs and results.json (default runs/<file name>)"),
    set_: list[str] = typer.Option([], "--set", help="Override the base config of every variant (repeatable)"),
) -> None:
    """An ablation table: every variant on the same data and budget, beside the published numbers. Run it
    again to continue: finished variants are read back, an interrupted one resumes from its last.pt."""
    from steelscan.experiments import load_reference, run_experiment

    setup_logging()
    con = Console()
    out = out or Path("runs") / experiment.stem
    res = run_experiment(experiment, out, set_, log=lambda s: con.print(f"[bold]{s}[/]"))
    reference, source = load_reference(experiment)
    con.print(ablation_table(res, reference, source))
    con.print(f"results: {out / 'results.json'}")


def ablation_table(res: dict, reference: dict[str, float], source: str) -> Table:
    """Detection: AP@0.5 per class and mAP; classification: accuracy per test view (original, flips, TTA)."""
    rows = res["rows"]
    ref = ["paper"] if reference else []
    if res["task"] == "detection":
        classes = list(rows[0]["ap50"])
        table = Table("variant", *classes, "mAP@0.5", *ref, "train min", title=f"{res['experiment']}: validation AP@0.5"
                      + (f"; paper: {source}" if source else ""))
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        for r in rows:
            table.add_row(r["variant"], *[fmt(r["ap50"][c]) for c in classes], f"[bold]{fmt(r['map50'])}[/]",
                          *([fmt(reference.get(r["variant"]))] if ref else []), f"{r['train_minutes']:.1f}")
        return table
    views = ("original", "hflip", "vflip", "tta")
    table = Table("variant", "original", "hflip", "vflip", "TTA", "macro-F1", *ref, "train min",
                  title=f"{res['experiment']}: validation accuracy (%)" + (f"; paper: {source}" if source else ""))
    for r in rows:
        by_view = r.get("accuracy_by_view") or {}
        table.add_row(r["variant"], *[f"{100 * by_view[v]:.2f}" if v in by_view else "-" for v in views],
                      f"{r['macro_f1']:.4f}", *([f"{reference[r['variant']]:.2f}" if r["variant"] in reference else "-"]
                                                 if ref else []), f"{r['train_minutes']:.1f}")
    return table


@experiment_app.command("losses")
def losses(
    config: Path = typer.Argument(..., help="A segmentation recipe, e.g. configs/severstal_loss_study.yaml"),
    test: Path = typer.Option(None, "--test", help="Kaggle-layout folder scored as a test set (every image)"),
    out: Path = typer.Option(Path("runs/losses"), "--out", help="Folder for the runs, results.json and losses.png"),
    set_: list[str] = typer.Option([], "--set", help="Override the recipe for every loss (repeatable)"),
) -> None:
    """The seed's loss study: BCE, weighted BCE, 0.75 BCE + 0.25 Dice and focal on the same data and budget."""
    from steelscan.experiments import run_loss_study

    setup_logging()
    con = Console()
    res = run_loss_study(config, out, set_, test, log=lambda s: con.print(f"[bold]{s}[/]"))
    for part in ("val", "val_tuned", "test"):
        if part in res["rows"][0]:
            con.print(dice_table(res, part))
    con.print(f"results: {out / 'results.json'}, plot: {out / 'losses.png'}")


def dice_table(res: dict, part: str) -> Table:
    """Loss x class Dice (Kaggle rule), the Kaggle Dice, and the all-empty baseline as the last row."""
    first = res["rows"][0][part]
    classes = list(first["per_class_dice"])
    from steelscan.experiments import PART_TITLES

    source = PART_TITLES[part] + (f" ({res['test']})" if part == "test" else "")
    table = Table("loss", *[f"class {c}" for c in classes], "Kaggle Dice",
                  title=f"{res['config']} - {source} ({first['n_images']} images)")
    for r in res["rows"]:
        m = r[part]
        table.add_row(r["loss"], *[f"{m['per_class_dice'][c]:.4f}" for c in classes], f"{m['dice_kaggle']:.4f}")
    table.add_row("[dim]all-empty baseline[/]", *[f"[dim]{first['all_empty_per_class_dice'][c]:.4f}[/]" for c in classes],
                  f"[dim]{first['all_empty_dice']:.4f}[/]")
    return table
