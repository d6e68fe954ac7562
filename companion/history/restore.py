"""Restoring a checkpoint, headless: the one code path the menu and `companion restore` share.

A restore must never lose weights, so the weights the companion lives on now are saved first as a
``pre-restore`` checkpoint (whose parent is the checkpoint they were loaded from): restoring that
checkpoint undoes the restore exactly. When a live checkpoint already holds exactly those weights
(same checksum: the usual case, and always when undoing a restore) it is referred to instead, so a
restore and its undo never leave two files of one set of weights. The days lived after the restored checkpoint stay in the store;
they are only marked as not in the weights, and marked back when a later restore brings them back.
Lessons follow their day: those taught on a day that leaves are not in the weights (and are due again
at the next night), and the recall measured by nights that leave no longer counts for their status.

Everything that can refuse is checked before anything is written: a night running, an unknown or
deleted checkpoint, a missing or damaged file. A refusal is a ``RestoreError`` with a message for the
owner and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from companion.history.pointer import Pointer
from companion.home import Home
from companion.store import Checkpoint, Day, Store

__all__ = ["RestoreError", "RestorePlan", "RestoreResult", "plan_restore", "restore", "describe_plan"]


class RestoreError(Exception):
    """A restore that cannot happen now; the message says why, and nothing was changed."""


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would change, said to the owner before they confirm."""

    target: Checkpoint
    current: Checkpoint | None
    target_day_number: int | None
    days_leaving: tuple[int, ...]     # day numbers that will be marked as not in the weights
    days_returning: tuple[int, ...]   # day numbers marked out that the target's weights do hold
    lessons_leaving: tuple[int, ...] = ()    # ids of lessons taught on the days leaving
    lessons_returning: tuple[int, ...] = ()  # ids of lessons taught on the days returning


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did. ``saved`` is the pre-restore checkpoint: restore it to undo."""

    restored: Checkpoint
    saved: Checkpoint | None
    previous: Checkpoint | None
    days_marked: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    lessons_marked: int = 0  # lessons now marked as not in the weights (their days left)
    lessons_returned: int = 0  # lessons in the weights again (an undo)


def _lineage(store: Store, checkpoint: Checkpoint) -> set[int]:
    seen: set[int] = set()
    node: Checkpoint | None = checkpoint
    while node is not None and node.id not in seen:
        seen.add(node.id)
        node = store.get_checkpoint(node.parent_id) if node.parent_id is not None else None
    return seen


def _held_day_ids(store: Store, checkpoint: Checkpoint) -> set[int]:
    """Days the checkpoint's weights learned: the same rule as ``Store.mark_days_not_in_weights``."""
    line = _lineage(store, checkpoint)
    held = {n.day_id for n in store.nights() if n.status == "accepted" and n.post_checkpoint_id in line}
    for cid in line:
        c = store.get_checkpoint(cid)
        if c is not None and c.reason == "night" and c.day_id is not None:
            held.add(c.day_id)
    return held


def _day_number(store: Store, day_id: int | None) -> int | None:
    if day_id is None:
        return None
    day = store.get_day(day_id)
    return day.number if day else None


def _check_target(home: Home, store: Store, checkpoint_id: int) -> Checkpoint:
    if store.running_night() is not None:
        raise RestoreError("a night is running; restore is refused until it ends (the night may still "
                           "change the weights)")
    target = store.get_checkpoint(checkpoint_id)
    if target is None:
        raise RestoreError(f"there is no checkpoint {checkpoint_id}")
    if target.deleted_at is not None:
        raise RestoreError(f"checkpoint {checkpoint_id} was pruned on {target.deleted_at[:10]}; its file is gone")
    if not (home.path / target.path).is_file():
        raise RestoreError(f"checkpoint {checkpoint_id} is missing: its file {target.path} was deleted "
                           "outside the app")
    return target


def plan_restore(home: Home, store: Store, checkpoint_id: int) -> RestorePlan:
    """Check that the restore can happen and say what it would change (nothing is written)."""
    target = _check_target(home, store, checkpoint_id)
    current = Pointer(home, store).current()
    if current is not None and current.id == target.id:
        raise RestoreError(f"checkpoint {checkpoint_id} is already the one the companion lives on")
    held = _held_day_ids(store, target)
    days: list[Day] = store.days()
    cutoff = max((d.number for d in days if d.id in held), default=0)
    leaving = tuple(d.number for d in days if d.number > cutoff and d.in_weights)
    returning = tuple(d.number for d in days if d.id in held and not d.in_weights)
    lessons = store.lessons(history=0)
    lessons_leaving = tuple(x.id for x in lessons if x.day_number in leaving)
    lessons_returning = tuple(x.id for x in lessons if x.day_number in returning)
    return RestorePlan(target, current, _day_number(store, target.day_id), leaving, returning,
                       lessons_leaving, lessons_returning)


def _span(numbers: tuple[int, ...]) -> str:
    if len(numbers) == 1:
        return f"day {numbers[0]}"
    if numbers == tuple(range(numbers[0], numbers[-1] + 1)):
        return f"days {numbers[0]}–{numbers[-1]}"
    return "days " + ", ".join(str(n) for n in numbers)


def describe_plan(plan: RestorePlan) -> str:
    """The confirmation text: which weights go, which come, what happens to the days."""
    t = plan.target
    day = f", day {plan.target_day_number}" if plan.target_day_number is not None else ""
    lines = [f"Restore checkpoint {t.id} ({t.reason}{day}, {t.created_at[:16].replace('T', ' ')})."]
    if plan.current is not None:
        lines.append(f"The weights it lives on now (checkpoint {plan.current.id}) are kept (saved first as a "
                     "pre-restore checkpoint unless a checkpoint already holds them), so this can be undone.")
    if plan.days_leaving:
        verb = "stays" if len(plan.days_leaving) == 1 else "stay"
        lines.append(f"{_span(plan.days_leaving).capitalize()} {verb} in the history but will be marked as not "
                     "in the weights.")
    if plan.days_returning:
        lines.append(f"{_span(plan.days_returning).capitalize()} will be in the weights again.")
    if plan.lessons_leaving:
        n = len(plan.lessons_leaving)
        lines.append(f"{n} lesson{'s' if n != 1 else ''} taught on those days will be marked as not in the "
                     "weights; the nights will teach them again.")
    if plan.lessons_returning:
        n = len(plan.lessons_returning)
        lines.append(f"{n} lesson{'s' if n != 1 else ''} will be in the weights again.")
    if not plan.days_leaving and not plan.days_returning:
        lines.append("No day changes.")
    return "\n".join(lines)


def restore(home: Home, store: Store, checkpoint_id: int) -> RestoreResult:
    """Make ``checkpoint_id`` current: save the current weights as ``pre-restore`` first, point CURRENT at
    the target, mark the days the target never learned. The caller reloads the model afterwards."""
    plan = plan_restore(home, store, checkpoint_id)
    target = plan.target
    from companion.history.weights import Weights
    from companion.model.checkpoint import CheckpointError

    weights = Weights(home, store)
    try:  # a damaged target (or its tokenizer) is refused before the current weights are touched
        weights.load(target)
    except CheckpointError as exc:
        raise RestoreError(f"checkpoint {target.id} cannot be restored: {exc}") from exc
    notes: list[str] = []
    saved: Checkpoint | None = None
    previous = plan.current
    if previous is not None:
        try:
            loaded = weights.load_current()
        except CheckpointError as exc:
            notes.append(f"the current weights could not be read, so they were not saved first ({exc})")
        else:
            notes += loaded.notes
            source = loaded.checkpoint
            saved = weights.identical(loaded.model)  # restore then undo: never two files of one set of weights
            if saved is None:
                saved = weights.save(loaded.model, "pre-restore", step=loaded.meta.step, day_id=source.day_id,
                                     day_number=loaded.meta.day, parent_id=source.id, probe_ppl=source.probe_ppl,
                                     make_current=False)
    weights.set_current(target, why="restore")
    marked = store.mark_days_not_in_weights(after_checkpoint_id=target.id)
    # Lessons follow their day (``Lesson.in_weights``): nothing more to write, only to say.
    return RestoreResult(target, saved, previous, marked, tuple(notes),
                         lessons_marked=len(plan.lessons_leaving), lessons_returned=len(plan.lessons_returning))
