"""A wall-clock time budget shared by long stages (dataset build, training, evaluation).

A stage given a ``deadline`` (``time.monotonic()`` seconds) finishes the unit it is in (a shard,
an epoch), saves it, and raises :class:`BudgetExhausted` instead of starting a unit that would
end past the deadline. Everything it saved is resumed by the next run, so a budget never loses
finished work.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


class BudgetExhausted(RuntimeError):
    """A stage stopped cleanly because the time budget ran out (its work so far is saved)."""


@dataclass
class TimeBudget:
    """``seconds`` of wall time from creation (``None``: unlimited)."""

    seconds: float | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        if self.seconds is not None and (not math.isfinite(self.seconds) or self.seconds <= 0):
            raise ValueError(f"time budget must be a positive number of seconds, got {self.seconds}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def deadline(self, reserve: float = 0.0) -> float | None:
        """``time.monotonic()`` value by which a stage must stop, keeping ``reserve`` seconds."""
        return None if self.seconds is None else self.started + self.seconds - reserve

    def expired(self, reserve: float = 0.0) -> bool:
        return self.remaining() <= reserve


def past(deadline: float | None, next_unit_seconds: float = 0.0) -> bool:
    """Whether a unit of ``next_unit_seconds`` started now would end after ``deadline``."""
    return deadline is not None and time.monotonic() + next_unit_seconds > deadline
