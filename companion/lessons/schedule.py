"""Spaced repetition: when a lesson is taught again. Torch-free.

A lesson not yet said back returns every night. Once nights that taught it have found it said back
two nights in a row (consolidated), it rests for a growing number of nights (2, then 4, 8, ... up to `MAX_INTERVAL`), so that it is revisited
before it fades without crowding out newer lessons. A lesson found not said back (a miss, whether it
was being taught or only checked while resting) returns the very next night. Only accepted nights
schedule: a rolled back night's weights were thrown away, so a lesson it taught stays due.

Intervals are counted in days (one night per day): a lesson due on day d is taught in the night of
day d or of any later day (`Store.due_lessons`), so a missed night never skips a lesson.
"""

from __future__ import annotations

__all__ = ["next_schedule", "FIRST_INTERVAL", "MAX_INTERVAL", "CONSOLIDATE", "REST_RECALL"]

FIRST_INTERVAL = 2
MAX_INTERVAL = 64


CONSOLIDATE = 2  # nights in a row a lesson must be said back before it first rests

REST_RECALL = 1.0
"""The share of a night's samples that counts toward the streak that lets a lesson rest: every one.
Said back in 9 of the night's 10 draws is said back (`status.LEARNED_RECALL`), but measured, such a
lesson left resting slipped to 16 of 20 in the bench's draws two nights later; one said back in
every draw two nights in a row is consolidated with margin. Until then it stays due (on a night
that only consolidates, with fewer steps: `Teaching.steps`)."""


def next_schedule(interval: int | None, said_back: bool, day_number: int, *, taught: bool = True,
                  streak: int = CONSOLIDATE) -> tuple[int, int] | None:
    """(interval, due day) after the night of `day_number`, from the lesson's interval so far (None:
    never scheduled), whether it was said back, whether this night taught it or only checked it, and
    `streak`: the accepted nights in a row, this one included, that said it back in every draw
    (`REST_RECALL`). A lesson first rests
    once said back `CONSOLIDATE` nights in a row: measured, a lesson said back after a single night
    and then left out was overwritten by the next night's similar questions. None: nothing changes (a
    resting lesson said back keeps its plan)."""
    if not said_back:
        return 1, day_number + 1
    if not taught:
        return None
    if streak < CONSOLIDATE:
        return 1, day_number + 1
    grown = FIRST_INTERVAL if (interval or 1) <= 1 else min(MAX_INTERVAL, interval * 2)
    return grown, day_number + grown
