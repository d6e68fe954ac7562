"""Which checkpoints are kept, and pruning the rest: the first of the three layers of protection.

The policy (``decide``) is a pure function of the checkpoint records, the current checkpoint and the
time, so that a test can simulate years of nights with a clock it controls:

* the current checkpoint is always kept;
* ``birth``, ``seedling``, ``pre-restore``, ``growth`` and ``import`` checkpoints are kept forever
  (they are the beginnings, the undo of a restore, and the points where the model changed shape);
* the pre-night checkpoint of a night still running is kept (the night may roll back to it);
* every other checkpoint (nights, nursery, pre-night) made in the last 30 days is kept;
* older than that, the newest of each ISO week (UTC) is kept, forever.

Weights are identified by their checksum. A set of weights the policy keeps never loses its last copy:
when the kept record's file is missing (deleted behind the app's back), the newest other live copy with
the same checksum is kept in its place; a duplicate of kept weights may go. Records whose file is already
missing are never marked deleted here: the checkpoints menu must keep saying "missing".

Pruning deletes the file first, then marks the record deleted (its story stays in the store).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from companion.history.pointer import Pointer
from companion.home import Home
from companion.store import Checkpoint, Store, parse_time

__all__ = ["KEEP_FOREVER", "WINDOW_DAYS", "Decision", "decide", "prune"]

KEEP_FOREVER = frozenset({"birth", "seedling", "pre-restore", "growth", "import"})
WINDOW_DAYS = 30


@dataclass(frozen=True)
class Decision:
    """What the policy says: ``keep`` maps checkpoint id to why; ``delete`` is the rest, oldest first."""

    keep: dict[int, str]
    delete: tuple[Checkpoint, ...]
    missing: tuple[Checkpoint, ...]   # live records whose file is gone: left alone, shown as missing


def _week(c: Checkpoint) -> tuple[int, int]:
    year, week, _ = parse_time(c.created_at).isocalendar()
    return year, week


def decide(checkpoints: Iterable[Checkpoint], *, current_id: int | None, now: datetime,
           exists: Callable[[Checkpoint], bool] = lambda c: True, protect: Iterable[int] = (),
           window_days: int = WINDOW_DAYS) -> Decision:
    """Apply the policy to the live checkpoint records (deleted ones are ignored)."""
    live = [c for c in checkpoints if c.deleted_at is None]
    present = [c for c in live if exists(c)]
    missing = tuple(c for c in live if not exists(c))
    protected = set(protect)
    cutoff = now - timedelta(days=window_days)
    keep: dict[int, str] = {}
    newest_of_week: dict[tuple[int, int], Checkpoint] = {}
    for c in live:  # rules first, on every record (a missing one's weights must survive elsewhere)
        if c.id == current_id:
            keep[c.id] = "current"
        elif c.reason in KEEP_FOREVER:
            keep[c.id] = c.reason
        elif c.id in protected:
            keep[c.id] = "running night"
        elif parse_time(c.created_at) >= cutoff:
            keep[c.id] = f"last {window_days} days"
        else:
            week = _week(c)
            if week not in newest_of_week or c.id > newest_of_week[week].id:
                newest_of_week[week] = c
    for (year, week), c in newest_of_week.items():
        keep.setdefault(c.id, f"week {year}-W{week:02d}")
    # Never lose the last copy of kept weights: stand in a live duplicate for a missing kept record.
    present_ids = {c.id for c in present}
    by_checksum: dict[str, list[Checkpoint]] = {}
    for c in present:
        by_checksum.setdefault(c.checksum, []).append(c)
    for c in live:
        if c.id in keep and c.id not in present_ids:
            copies = by_checksum.get(c.checksum, [])
            if copies and not any(k.id in keep for k in copies):
                stand_in = max(copies, key=lambda k: k.id)
                keep[stand_in.id] = f"only copy of checkpoint {c.id}'s weights"
    keep = {cid: why for cid, why in keep.items() if cid in present_ids}
    delete = tuple(c for c in present if c.id not in keep)
    return Decision(keep, delete, missing)


def prune(home: Home, store: Store, *, now: datetime | None = None,
          current_id: int | None = None) -> Decision:
    """Delete the files the policy does not keep and mark their records deleted. ``current_id``
    defaults to the CURRENT pointer. Returns the decision; a file that cannot be deleted is skipped
    (left recorded as live) rather than half-forgotten."""
    now = now or datetime.now(timezone.utc)
    if current_id is None:
        current = Pointer(home, store).current()
        current_id = current.id if current is not None else None
    running = store.running_night()
    protect = [running.pre_checkpoint_id] if running and running.pre_checkpoint_id else []
    decision = decide(store.checkpoints(), current_id=current_id, now=now, protect=protect,
                      exists=lambda c: (home.path / c.path).is_file())
    done = []
    for c in decision.delete:
        try:
            os.unlink(home.path / c.path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        store.mark_checkpoint_deleted(c.id)
        done.append(c)
    return Decision(decision.keep, tuple(done), decision.missing)
