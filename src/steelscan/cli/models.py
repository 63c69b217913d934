"""`steelscan models`: list the registry."""

from __future__ import annotations

import typer
from rich.table import Table


def command(task: str = typer.Option(None, "--task", help="Only models of this task")) -> None:
    """List the registered models (the names configs and --model accept)."""
    from rich.console import Console

    from steelscan.registry import list_models, model_entry

    table = Table("name", "task", "description")
    for name in list_models(task=task):
        e = model_entry(name)
        table.add_row(name, e.task, e.description)
    Console().print(table)
