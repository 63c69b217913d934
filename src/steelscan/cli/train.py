"""`steelscan train [CONFIG.yaml] [--data PATH] [--task T] [--model NAME] [--epochs N] [--budget-minutes M] ...`."""

from __future__ import annotations

from pathlib import Path

import typer

from steelscan.cli._common import setup_logging


def command(
    config: Path = typer.Argument(None, help="YAML recipe, e.g. configs/neu_cls_shipped.yaml; without it, the "
                                             "task's default recipe for --data"),
    data: Path = typer.Option(None, "--data", help="Data set folder in any layout (class folders, YOLO data.yaml, "
                                                   "COCO, VOC, mask PNGs, RLE CSV, NEU); sets data.root"),
    task: str = typer.Option(None, "--task", help="classification, detection or segmentation (default: from the layout)"),
    model: str = typer.Option(None, "--model", help="A registered model (`steelscan models`)"),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Sets train.epochs"),
    budget_minutes: float = typer.Option(None, "--budget-minutes", min=0.01, help="Stop after this much training time"),
    out_dir: Path = typer.Option(None, "--out-dir", help="Where the run folder is made (default: runs)"),
    resume: Path = typer.Option(None, "--resume", help="Continue a run folder from its last.pt"),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: --set train.epochs=3 (repeatable)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model and write a run folder (config, split, metrics, plots, checkpoint).

    With `--data` alone the task follows from the data's layout, the recipe from the task's shipped default,
    the classes and input channels from the data. Multi-process: `torchrun --nproc_per_node=N -m steelscan
    train ...` (gloo on CPU, nccl on CUDA).
    """
    from steelscan.engine.fit import fit, resume_config
    from steelscan.tasks.recipes import train_config

    setup_logging(verbose)
    if resume is not None:
        cfg = resume_config(resume, set_)
    else:
        cfg = train_config(config, data, task, model, epochs, budget_minutes, out_dir, set_)
    run_dir = fit(cfg)
    if run_dir is not None:
        typer.echo(f"run folder: {run_dir}")
