"""`steelscan train CONFIG.yaml [--set key=value ...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from steelscan.cli._common import console, setup_logging


def command(
    config: Path = typer.Argument(..., help="YAML recipe, e.g. configs/neu_cls_mobilenetv3.yaml"),
    set_: list[str] = typer.Option([], "--set", help="Override a config value: --set train.epochs=3 (repeatable)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model from a YAML recipe and write a run folder (config, split, metrics, plots, checkpoint).

    Multi-process: `torchrun --nproc_per_node=N -m steelscan train CONFIG.yaml` (gloo on CPU, nccl on CUDA).
    """
    from steelscan.config import load_config
    from steelscan.train import fit

    setup_logging(verbose)
    cfg = load_config(config, set_)
    run_dir = fit(cfg)
    if run_dir is not None:
        console.print(f"[bold green]run folder:[/] {run_dir}")
