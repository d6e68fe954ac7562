"""Which day's night to run: the one a quit interrupted or that never ran (`pending_night`, at start),
or the one `companion sleep --day N` names (`night_day`). Store queries only, no torch."""

from __future__ import annotations

from companion.night.report import OUTCOMES, NightError
from companion.store import Day, Store


def pending_night(store: Store) -> Day | None:
    """At start-up: the closed day whose night still has to run, or None.

    A night left `running` (the app was killed, or crashed) is first recorded `interrupted`. Then the
    last closed day is pending when it has no night yet, or its latest night was interrupted, and no
    newer day has been opened since. Call this only when no trainer thread is running."""
    running = store.running_night()
    if running is not None:
        store.finish_night(running.id, "interrupted",
                           reason="the app stopped during the night; it resumes from the pre-night weights")
    if store.current_day() is not None:
        return None
    closed = [d for d in store.days() if d.closed_at is not None]
    if not closed:
        return None
    nights = store.nights(closed[-1].id)
    if not nights or nights[-1].status == "interrupted":
        return closed[-1]
    return None


def night_day(store: Store, number: int | None = None) -> Day:
    """The day a night should run for: day `number`, else the pending one (NightError when there is none)."""
    if number is not None:
        day = store.get_day(number=number)
        if day is None:
            raise NightError(f"there is no day {number}")
        if day.closed_at is None:
            raise NightError(f"day {number} is still open; close it before its night")
        return day
    day = pending_night(store)
    if day is not None:
        return day
    closed = [d for d in store.days() if d.closed_at is not None]
    if not closed:
        raise NightError("no day has been closed yet: there is nothing to sleep on")
    last = closed[-1]
    if not store.nights(last.id):  # a newer day was opened before its night ran
        opened = store.current_day()
        after = f"day {opened.number} was opened before it ran" if opened is not None else "it never ran"
        raise NightError(f"day {last.number}, the last closed day, has had no night ({after}); "
                         f"run `companion sleep --day {last.number}` to sleep on it now")
    status = store.nights(last.id)[-1].status
    raise NightError(f"day {last.number}, the last closed day, already had its night ({OUTCOMES.get(status, status)}); "
                     f"name a day (--day N) to sleep on it again")
