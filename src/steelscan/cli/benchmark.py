"""`steelscan benchmark ...`: studies that print one table and write JSON. Mounted as the `benchmark` group."""

from __future__ import annotations

from pathlib import Path

import typer

benchmark_app = typer.Typer(
    help="Benchmarks that print a table and write JSON (e.g. the seed's SDD history).",
    no_args_is_help=True,
    add_completion=False,
)


@benchmark_app.command("sdd-history")
def sdd_history(
    data: Path = typer.Option(Path("../shared/data/neu-cls"), "--data", help="Flat NEU-CLS folder (Cr_1.bmp ...)"),
    json_out: Path = typer.Option(Path("runs/sdd_history.json"), "--json", help="Write the table as JSON here"),
    seed: int = typer.Option(0, "--seed", help="Random state of the PNN/SVM/MLP fits and CV folds"),
) -> None:
    """Rule table, PNN, SVM and MLP on texture features vs the seed's historical accuracies."""
    # Imported here so that `steelscan --help` does not pay for scikit-learn / scikit-image.
    from steelscan.evaluation.sdd_history import run_sdd_history

    run_sdd_history(data=data, json_out=json_out, seed=seed)


from steelscan.cli import two_stage  # noqa: E402 - it imports torch only when the command runs

benchmark_app.command("two-stage")(two_stage.command)
