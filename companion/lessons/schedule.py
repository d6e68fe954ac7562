"""Spaced repetition: which lessons a night teaches. Torch-free, a pure function of the history.

A lesson not yet said back returns every night. Once a night that taught it finds it said back, it
rests for a growing number of nights (2, then 4, 8, ... up to `MAX_INTERVAL`), so that it is revisited
before it fades without crowding out newer lessons. A lesson found not said back (a miss, whether it
was being taught or only checked) starts again at every night. Only accepted nights count: a rolled
back night's weights were thrown away, so what they said is not what the companion says now.

Intervals are counted in days (one night per day): a lesson due on day d is taught in the night of
day d or of any later day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Measured", "Schedule", "schedule", "FIRST_INTERVAL", "MAX_INTERVAL"]

FIRST_INTERVAL = 2
MAX_INTERVAL = 64


@dataclass(frozen=True)
class Measured:
    """One night's verdict on one lesson: the day the night belonged to, whether the night taught the
    lesson (or only checked it), whether it was said back, and whether the night was accepted."""

    day_number: int
    said_back: bool
    taught: bool = True
    accepted: bool = True


@dataclass(frozen=True)
class Schedule:
    """When a lesson is next taught: `due_day`, and the rest it was given (`interval` days; 1 while
    it is still being learned)."""

    interval: int
    due_day: int

    def due(self, day_number: int) -> bool:
        return day_number >= self.due_day


def schedule(history: Iterable[Measured], first_day: int = 0) -> Schedule:
    """The lesson's schedule after its history (oldest first); a lesson never measured is due at once
    (`first_day`, the day it was taught)."""
    current = Schedule(1, first_day)
    for m in history:
        if not m.accepted:
            continue
        if not m.said_back:
            current = Schedule(1, m.day_number + 1)
        elif m.taught:
            interval = FIRST_INTERVAL if current.interval <= 1 else min(MAX_INTERVAL, current.interval * 2)
            current = Schedule(interval, m.day_number + interval)
        # said back while only checked: the rest goes on as planned
    return current
