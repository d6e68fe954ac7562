"""The night's reading and writing of lessons in the store (`Store.due_lessons`, `lesson_context`,
`record_recalls`, `schedule_lessons`). Torch-free.

The night reads its lessons once, at its start (a lesson retired while it runs is still taught this
night and not the next). It teaches the due ones and checks, besides, the learned ones resting, so a
night that quietly loses a learned lesson is caught. After the night every measured phrasing is
recorded (a rolled back night too: its row says what the discarded weights said, and the status
ignores it); an accepted night also writes the next schedule of each lesson (`schedule`).
"""

from __future__ import annotations

from collections.abc import Sequence

from companion.lessons.schedule import REST_RECALL, next_schedule
from companion.lessons.status import LEARNED_RECALL
from companion.lessons.text import LessonText
from companion.store import Lesson, Store
from companion.transcript import Turn

__all__ = ["read_lessons", "write_lessons", "as_text"]


def as_text(store: Store, lesson: Lesson) -> LessonText:
    """The night's view of a stored lesson: its texts and its own day up to the question."""
    context = tuple(Turn(t.role, t.text) for t in store.lesson_context(lesson.id)
                    if t.role in ("owner", "companion", "inner"))
    return LessonText(lesson.question, lesson.answer, tuple(p.text for p in lesson.phrasings), context,
                      id=lesson.id, learned=lesson.status == "learned")


def read_lessons(store: Store, day_number: int, night_id: int | None, most: int
                 ) -> tuple[list[LessonText], list[LessonText]]:
    """(taught, checked) for the night of `day_number`: the due lessons (oldest first, at most
    `most`) and, checked besides them, the learned lessons resting."""
    due = store.due_lessons(day_number, night_id=night_id)[:most]
    due_ids = {x.id for x in due}
    resting = [x for x in store.lessons(include_retired=False) if x.id not in due_ids and x.status == "learned"]
    taught = [as_text(store, x) for x in due]
    return taught, taught + [as_text(store, x) for x in resting[: max(0, most - len(taught))]]


def write_lessons(store: Store, night_id: int, day_number: int, taught: Sequence[LessonText], recall,
                  accepted: bool) -> None:
    """Record the night's recall of each stored lesson (every phrasing), and on an accepted night the
    next schedule (`next_schedule`). `recall` is a `companion.lessons.recall.Recall`."""
    stored = {x.id: x for x in store.lessons() if x.id is not None}
    taught_ids = {x.id for x in taught}
    rows, plans = [], {}
    for row in recall.lessons:
        lesson = stored.get(row.lesson.id)
        if lesson is None:
            continue
        ids = {lesson.question: None, **{p.text: p.id for p in lesson.phrasings}}
        for question, hits in row.hits.items():
            if question in ids:
                rows.append({"lesson_id": lesson.id, "phrasing_id": ids[question], "hits": hits,
                             "samples": row.samples, "crosstalk": row.crosstalks.get(question, 0)})
        if accepted:
            said = row.rate >= LEARNED_RECALL
            streak = 0
            for past in reversed([n for n in lesson.history if n.accepted and n.samples]):
                if past.rate < REST_RECALL:
                    break
                streak += 1
            plan = next_schedule(lesson.schedule.interval_nights if lesson.schedule else None, said, day_number,
                                 taught=lesson.id in taught_ids, streak=streak + 1 if row.rate >= REST_RECALL else 0)
            if plan is not None:
                plans[lesson.id] = plan
    if rows:
        store.record_recalls(night_id, rows)
    if plans:
        store.schedule_lessons(plans, night_id=night_id)
