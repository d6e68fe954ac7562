"""How quickly the store lists lessons after years of teaching: the lessons screen and every night
read them all (with phrasings, recall night by night, schedule and status).

    python bench/lessons_store.py --days 3650 --lessons-per-day 3 --tested 20

Builds a throwaway store (a temporary folder): DAYS days, each teaching LESSONS_PER_DAY lessons by
written replies, each lesson with one phrasing; each day's night records recall of up to TESTED due
lessons and schedules them. Then times ``Store.lessons(history=24)`` (the screen) and
``Store.due_lessons`` (a night's start), best of three. No torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion.store import Store  # noqa: E402


def build(store: Store, days: int, per_day: int, tested: int) -> None:
    for n in range(1, days + 1):
        day = store.open_day(budget_tokens=384)
        for i in range(per_day):
            prompt = store.add_turn(day.id, "owner", f"Question {n}.{i}: what is fact {n * per_day + i}?", "typed",
                                    tokens=12)
            lesson = store.record_reply(day.id, prompt.id, "written", f"Fact {n * per_day + i} is {n}.", tokens=9).lesson
            store.add_phrasing(lesson.id, f"Tell me fact {n * per_day + i}.")
        store.close_day(day.id, "goodnight")
        night = store.start_night(day.id)
        due = store.due_lessons(n, night_id=night.id)[:tested]
        store.record_recalls(night.id, [{"lesson_id": x.id, "hits": (x.id * 7 + n) % 21, "samples": 20}
                                        for x in due])
        store.schedule_lessons({x.id: (2, n + 2) for x in due}, night_id=night.id)
        store.finish_night(night.id, "accepted")


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3650)
    parser.add_argument("--lessons-per-day", type=int, default=3)
    parser.add_argument("--tested", type=int, default=20, help="lessons a night tests at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with Store.open(Path(tmp) / "bench.db") as store:
            start = time.perf_counter()
            build(store, args.days, args.lessons_per_day, args.tested)
            built = time.perf_counter() - start
            lessons = store.lessons()
            recalls = sum(len(x.history) for x in lessons)
            listing = best(lambda: store.lessons(history=24))
            due = best(lambda: store.due_lessons(args.days + 1))
            size = os.path.getsize(store.path)
    print(f"{args.days} days, {len(lessons)} lessons, {recalls} night recalls; store {size / 1e6:.1f} MB "
          f"(built in {built:.0f} s)")
    print(f"lessons(history=24): {listing * 1000:.0f} ms   due_lessons: {due * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
