"""Progress bars for long work (rich, on stderr, only when stderr is a terminal: logs stay clean)."""

from __future__ import annotations

from typing import Iterable, Iterator, Sized

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)


class Tracked:
    """Wrap a sized iterable (a DataLoader) so that iterating it advances a transient progress bar."""

    def __init__(self, iterable: Iterable, description: str, total: int | None = None, enabled: bool = True):
        self.iterable, self.description = iterable, description
        self.total = total if total is not None else (len(iterable) if isinstance(iterable, Sized) else None)
        self.enabled = enabled and _console.is_terminal

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator:
        if not self.enabled:
            yield from self.iterable
            return
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=_console, transient=True) as bar:
            task = bar.add_task(self.description, total=self.total)
            for item in self.iterable:
                yield item
                bar.advance(task)
