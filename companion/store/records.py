"""What the store holds, as Python values: the records a query returns (a day, a turn, a candidate, a
checkpoint, a lesson ...), the closed sets of allowed values, and the store's errors. Plain frozen
dataclasses with no behaviour beyond reading them, so that screens and widgets can show them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any



class StoreError(Exception):
    """Anything the store refuses: an unreadable or too-new file, an unknown id, an invalid value."""


class StoreDamaged(StoreError):
    """The file fails SQLite's check: it is named, and can be restored from the newest verified backup
    (`companion recover-store`, or the app's offer), the damaged file kept aside."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path, self.problems = Path(path), list(problems)
        super().__init__(f"{path} is damaged (SQLite's check: {'; '.join(self.problems[:3])}); nothing was "
                         f"changed. Restore it from the newest verified backup with `companion recover-store` "
                         f"(the damaged file is kept aside)")


# ---------------------------------------------------------------------------------------------------
# Allowed values. Closed sets that are part of the data model also have CHECK constraints in the schema;
# sets that are expected to grow (turn sources, night statuses, checkpoint reasons) are checked here
# only, so that adding a value never needs a table rebuild of a lifelong file.

ROLES = ("owner", "companion", "inner")
TURN_SOURCES = (
    "greeting", "goodnight", "indicator", "typed", "chosen", "correction", "written",
    "model_inner", "owner_inner",
)
CANDIDATE_ROLES = ("companion", "inner")
FINISHES = ("end", "length", "stopped")
CHOICE_KINDS = ("pick", "correction", "written")
CLOSE_REASONS = ("full", "goodnight")
DREAM_SOURCES = ("model", "teacher")
NIGHT_STATUSES = ("running", "accepted", "rolled_back", "interrupted", "nothing", "failed")
BOOK_STATUSES = ("queued", "read", "refused")
#: Reasons known today. Checkpoint reasons are open: any non-empty string is accepted.
#: Where a lesson came from: a correction or a written reply (recorded with the reply itself), a reply
#: the owner marked "remember this", or a personality book read back.
LESSON_SOURCES = ("correction", "written", "remember", "book")
#: Reasons known today. Checkpoint reasons are open: any non-empty string is accepted.
CHECKPOINT_REASONS = ("birth", "nursery", "night", "pre-night", "pre-restore", "seedling", "growth", "import")

#: Written to the file header so that a stranger's SQLite file is never mistaken for a companion store.
APPLICATION_ID = 0x436F6D70  # "Comp"


# ---------------------------------------------------------------------------------------------------
# Records. Small frozen dataclasses; field names are the column names.

@dataclass(frozen=True, slots=True)
class Day:
    """One context window of life. ``checkpoint_id``: the weights it was lived on.
    ``in_weights`` turns False when a restore goes back to weights that never learned this day."""
    id: int
    number: int
    opened_at: str
    closed_at: str | None
    close_reason: str | None
    budget_tokens: int
    checkpoint_id: int | None
    in_weights: bool

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One row of the days list: the day and what happened in it, computed in one query."""
    id: int
    number: int
    opened_at: str
    closed_at: str | None
    close_reason: str | None
    budget_tokens: int
    in_weights: bool
    turns: int
    tokens: int
    ratings: int        # candidates whose latest rating is a star count (cleared ratings do not count)
    corrections: int
    night_status: str | None  # status of the day's latest night, None if it has had none


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: int
    day_id: int
    seq: int
    role: str
    text: str
    source: str
    candidate_id: int | None
    tokens: int | None
    created_at: str
    amended: bool = False
    """The owner mended this reply: ``text``, ``source``, ``candidate_id`` and ``tokens`` are the
    latest amendment's (the original stays in the turns table, untouched)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    day_id: int
    prompt_turn_id: int | None
    round: int
    slot: int
    role: str
    text: str
    finish: str
    temperature: float | None
    top_k: int | None
    top_p: float | None
    repetition_penalty: float | None
    max_tokens: int | None
    seed: int | None
    checkpoint_id: int | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Choice:
    """Which reply the owner let into the day. ``implicit``: the owner replied without picking and the
    highlighted card was taken (a weaker signal). An amendment is a later choice for the same
    ``turn_id``: it names the choice it ``supersedes`` and carries the reply's ``text`` from then on
    (``text`` is None on an original choice: the turn's own text)."""
    id: int
    prompt_turn_id: int | None
    candidate_id: int | None
    kind: str
    turn_id: int
    created_at: str
    implicit: bool = False
    supersedes: int | None = None
    text: str | None = None
    correction_id: int | None = None
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Rating:
    id: int
    candidate_id: int
    stars: int | None  # None: the rating was cleared
    created_at: str


@dataclass(frozen=True, slots=True)
class Correction:
    id: int
    candidate_id: int
    text: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """What ``record_reply`` wrote in one transaction."""
    turn: TurnRecord
    choice: Choice
    correction: Correction | None
    lesson: Lesson | None = None  # a correction or a written reply is a lesson, recorded with it


@dataclass(frozen=True, slots=True)
class Annotation:
    """Tags and a note on a transcript turn (``turn_id``) or on one line of a dream
    (``dream_id``, ``line_index``). Empty tags and no note mean the annotation was cleared."""
    id: int
    turn_id: int | None
    dream_id: int | None
    line_index: int | None
    tags: tuple[str, ...]
    note: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class DreamRecord:
    id: int
    day_id: int
    night_id: int | None
    text: str
    source: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Night:
    id: int
    day_id: int
    started_at: str
    finished_at: str | None
    status: str
    reason: str | None
    report: Any  # parsed JSON (usually a dict), or None
    pre_checkpoint_id: int | None
    post_checkpoint_id: int | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A saved set of weights and its story. ``path`` is relative to the companion home."""
    id: int
    path: str
    reason: str
    day_id: int | None
    step: int
    parent_id: int | None
    created_at: str
    checksum: str
    probe_ppl: float | None
    size_bytes: int
    deleted_at: str | None
    probe_set: str | None = None  # which probe measured probe_ppl (see companion.night.guards.probe_set_name)
    damaged: str | None = None  # why the file would not load, when a load found it damaged


@dataclass(frozen=True, slots=True)
class Book:
    id: int
    path: str
    sha256: str
    bytes: int
    tokens: int | None
    status: str
    note: str | None
    added_at: str
    read_at: str | None
    night_id: int | None


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result. ``kind`` is 'turn', 'candidate' or 'dream' and ``id`` is that row's id.
    ``snippet`` is plain text; ``spans`` are (start, end) offsets of the matched words in it."""
    kind: str
    id: int
    day_id: int
    day_number: int
    snippet: str
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Phrasing:
    """Another way the owner asks a lesson's question ("also asked as ...")."""
    id: int
    lesson_id: int
    text: str
    created_at: str


@dataclass(frozen=True, slots=True)
class PhrasingAdded:
    """What ``add_phrasing`` wrote, and the other lessons already asked exactly this way
    (``shared_with``: their ids). Sharing is allowed: the lessons stay apart by their answers, and
    ``note`` says so in words for the owner (None when nothing is shared)."""
    phrasing: Phrasing
    shared_with: tuple[int, ...]
    note: str | None


@dataclass(frozen=True, slots=True)
class Recall:
    """One night's test of one lesson on one phrasing (``phrasing_id`` None: the lesson's question):
    ``hits`` of ``samples`` fresh replies said the answer; ``crosstalk`` of them said another
    lesson's answer instead."""
    id: int
    lesson_id: int
    night_id: int
    phrasing_id: int | None
    hits: int
    samples: int
    crosstalk: int
    created_at: str


@dataclass(frozen=True, slots=True)
class LessonNight:
    """One night's recall of one lesson, all its phrasings summed: a point of the sparkline.
    ``accepted``: the night's weights were kept; ``in_weights``: and no restore has gone back before
    that night (its day is in the weights). Only nights with both count for the status."""
    night_id: int
    day_number: int
    accepted: bool
    hits: int
    samples: int
    crosstalk: int
    in_weights: bool = True

    @property
    def counts(self) -> bool:
        """Whether this measurement was of weights the companion still lives on."""
        return self.accepted and self.in_weights

    @property
    def rate(self) -> float:
        return self.hits / self.samples if self.samples else 0.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a lesson comes back: every ``interval_nights`` nights, next on the night of day
    ``due_day``. Written by the night; the latest row counts."""
    id: int
    lesson_id: int
    night_id: int | None
    interval_nights: int
    due_day: int
    created_at: str


@dataclass(frozen=True, slots=True)
class Lesson:
    """What the owner taught on purpose, with everything the lessons screen and the night need.

    ``day_id``/``prompt_turn_id``/``reply_turn_id`` place it in its day, so that its context can be
    rebuilt with the one transcript formatter (``Store.lesson_context``); a lesson read back from a
    personality book has none. ``in_weights`` follows its day: False once a restore went back to
    weights that never lived that day (and True again when an undo brings the day back); a lesson
    with no day (read back from a book) came with the weights it was born with. Recall measured by
    nights a restore went back before no longer counts for the status. ``retired`` is the latest retire
    event; ``history`` is its recall night by night, oldest first (the last ``history`` nights asked
    for); ``status`` comes from the whole history (``companion.lessons.status``)."""
    id: int
    day_id: int | None
    day_number: int | None
    prompt_turn_id: int | None
    reply_turn_id: int | None
    source: str
    question: str
    answer: str
    created_at: str
    retired: bool
    in_weights: bool
    phrasings: tuple[Phrasing, ...]
    history: tuple[LessonNight, ...]
    schedule: Schedule | None
    status: str

    @property
    def questions(self) -> tuple[str, ...]:
        """The question and every phrasing of it, in the order they were taught."""
        return (self.question, *(p.text for p in self.phrasings))

