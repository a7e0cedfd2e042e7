"""Progress and result records: the only currency between the compute core and the GUI/CLI.

Long core functions are generators that ``yield Progress`` and ``return`` a result; callers (the CLI's text
progress, the GUI's worker adapter) turn them into output. A ``should_stop`` callable is polled at every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

StopFlag = Callable[[], bool]


def never_stop() -> bool:
    """Default ``should_stop``: run to the end."""
    return False


def pausable(should_stop: StopFlag, paused: Callable[[], bool] | None, poll_s: float = 0.05) -> StopFlag:
    """A ``should_stop`` that also pauses: while ``paused()`` it waits (polling ``should_stop``), then answers.

    Every core loop polls ``should_stop`` between batches/tiles, so wrapping it gives every trainer a Pause that
    waits at the next such point, with no change to the loops; a stop request still ends a paused run at once.
    """
    if paused is None:
        return should_stop

    def stop_or_wait() -> bool:
        while paused() and not should_stop():
            time.sleep(poll_s)
        return should_stop()

    return stop_or_wait


@dataclass
class Progress:
    """One progress report.

    Attributes:
        step: units done so far (batches, tiles, epochs — see ``desc``).
        total: units in all, or None when unknown.
        desc: what is running, e.g. ``"SSHR epoch 3/20"``.
        metrics: numbers worth showing (loss, score, ...).
    """

    step: int
    total: int | None = None
    desc: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.step / self.total)


class Cancelled(Exception):
    """Raised inside a core generator when ``should_stop`` became true; nothing half-written is left."""


def run_to_end(gen: Generator[Progress, None, T], on_progress: Callable[[Progress], Any] | None = None) -> T:
    """Drive a core generator to completion and return its result (its ``StopIteration.value``)."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)
