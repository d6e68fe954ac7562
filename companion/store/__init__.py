"""The companion's memory on disk: one SQLite file per companion (see `repository` for its promises).

`records` are the values it returns, `schema` its SQL history and migrations, `repository` the `Store`
that reads and writes them. Everything public is importable from `companion.store`.
"""

from companion.store.records import (
    StoreError, StoreDamaged, APPLICATION_ID, Day, DaySummary, TurnRecord, Candidate, Choice,
    ReplyRecord, Rating, Correction, Annotation, DreamRecord, Night, Checkpoint, Book, Hit, Lesson,
    LessonNight, Phrasing, PhrasingAdded, Recall, Schedule, LESSON_SOURCES, ROLES, TURN_SOURCES,
    CANDIDATE_ROLES, FINISHES, CHOICE_KINDS, CLOSE_REASONS, DREAM_SOURCES, NIGHT_STATUSES, BOOK_STATUSES,
    CHECKPOINT_REASONS,
)
from companion.store.repository import Store, fts_query, parse_time
from companion.store.schema import MIGRATIONS, SCHEMA_VERSION, Migration, copy_database

__all__ = [
    "StoreError", "StoreDamaged", "Store", "Migration", "MIGRATIONS", "SCHEMA_VERSION", "APPLICATION_ID",
    "Day", "DaySummary", "TurnRecord", "Candidate", "Choice", "ReplyRecord", "Rating",
    "Correction", "Annotation", "DreamRecord", "Night", "Checkpoint", "Book", "Hit", "Lesson", "LessonNight",
    "Phrasing", "PhrasingAdded", "Recall", "Schedule", "LESSON_SOURCES", "ROLES", "TURN_SOURCES",
    "CANDIDATE_ROLES", "FINISHES", "CHOICE_KINDS", "CLOSE_REASONS", "DREAM_SOURCES", "NIGHT_STATUSES",
    "BOOK_STATUSES", "CHECKPOINT_REASONS", "fts_query", "parse_time", "copy_database",
]
