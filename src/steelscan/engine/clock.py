"""The training-time budget: only time spent training counts, not evaluation."""

from __future__ import annotations

import time
from typing import Callable


class TrainingClock:
    """Training time spent against an optional budget; `pause` while evaluating so that it does not count.

    `clock` is the time source (seconds), replaceable in tests.
    """

    def __init__(self, budget_minutes: float | None = None, clock: Callable[[], float] = time.perf_counter):
        self.budget_s = None if budget_minutes is None else 60.0 * budget_minutes
        self._clock, self._spent, self._since = clock, 0.0, None

    def start(self) -> None:
        if self._since is None:
            self._since = self._clock()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += self._clock() - self._since
            self._since = None

    def add(self, seconds: float) -> None:
        """Time spent before a resume."""
        self._spent += seconds

    @property
    def seconds(self) -> float:
        return self._spent + (self._clock() - self._since if self._since is not None else 0.0)

    def fraction(self) -> float:
        """Share of the budget spent (0 without a budget)."""
        return 0.0 if self.budget_s is None else self.seconds / self.budget_s

    def exhausted(self) -> bool:
        return self.budget_s is not None and self.seconds >= self.budget_s
