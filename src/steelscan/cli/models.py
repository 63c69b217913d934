"""`steelscan models`: the shipped built-in models, then the registry's architectures."""

from __future__ import annotations

import typer
from rich.table import Table


def _classes(names: tuple[str, ...], shown: int = 6) -> str:
    listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)}: {listed}"


def command(task: str = typer.Option(None, "--task", help="Only models of this task")) -> None:
    """List the built-in models (`--model NAME` takes them: trained weights that ship with steelscan) and the
    registered architectures (the names configs' model.name accepts)."""
    from rich.console import Console

    from steelscan.models import list_models, model_entry
    from steelscan.engine.runs import builtin_models

    con = Console()
    builtin = Table("name", "task", "classes", "input", "size", "model card", title="built-in models (--model NAME)")
    for b in builtin_models():
        m = b.meta
        if task is not None and m.task != task:
            continue
        h, w = m.input_size
        builtin.add_row(b.name, m.task, _classes(m.class_names), f"{m.in_chans}x{h}x{w}",
                        f"{b.size_bytes / 1e6:.1f} MB", b.card_title)
    con.print(builtin)
    table = Table("name", "task", "description", title="architectures (config model.name)")
    for name in list_models(task=task):
        e = model_entry(name)
        table.add_row(name, e.task, e.description)
    con.print(table)
