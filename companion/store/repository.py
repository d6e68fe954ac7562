"""The companion's memory on disk: one SQLite file per companion.

Everything the owner does (every turn, every candidate shown, every pick, rating, correction and
annotation) is written here the moment it happens, because the weights are trained from this record
and it is the only thing from which a lost model could be taught again. Hence:

* **Commit on write.** Every public method that writes commits before it returns. A kill at any moment
  loses nothing that a method had returned from (design invariant 1). WAL mode with
  ``synchronous=FULL`` makes each commit durable, not just visible.
* **Append-only where it matters.** Turns, candidates, choices, ratings, corrections and annotations are
  never updated or deleted (triggers refuse it). Re-rating or re-annotating adds a row; the latest row
  counts. Asking for more candidates adds rows; earlier ones stay. Mending a reply adds a choice that
  supersedes the last one (``amend_reply``); ``turns()`` shows each reply as its latest version, and
  ``recorded_turn`` / ``amendments`` give what was first recorded and every version.
* **One connection, one lock.** The Textual UI thread, thread workers and the trainer thread share one
  ``Store``; a ``threading.RLock`` serialises use of the connection (``check_same_thread=False``).
* **Versioned schema.** ``PRAGMA user_version`` holds the schema version; ``schema.MIGRATIONS`` is the ordered
  list of upgrades, each applied in its own transaction. A file newer than this code is refused, never
  guessed at. Migrations are history: never edit one that has shipped, append a new one.
* **Bad input changes nothing.** Invalid values, unknown ids and unreadable files raise ``StoreError``
  with a message naming the value or the file; the transaction is rolled back.

Timestamps are ISO-8601 UTC strings (``2024-05-01T12:00:00.000000+00:00``); the clock is injectable so
that tests can control it. "Latest" always means the highest row id, never the newest timestamp, so
order is right even when the clock stands still or jumps back.

All user text is bound as a parameter, never formatted into SQL, and stored exactly as typed (control
characters, escape sequences, role-like markup such as ``<|owner|>`` included).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from companion.lessons.status import lesson_status
from companion.safety.private import create_private_file, make_private
from companion.safety.room import disk_full_sentence, is_disk_full
from companion.safety.text import surrogate_problem
from companion.model.atomic import fsync_dir
from companion.model.sampling_settings import SamplingSettings

from companion.store import schema
from companion.store.records import (
    APPLICATION_ID, Annotation, BOOK_STATUSES, Book, CANDIDATE_ROLES, CHOICE_KINDS, CLOSE_REASONS, Candidate,
    Checkpoint, Choice, Correction, DREAM_SOURCES, Day, DaySummary, DreamRecord, FINISHES, Hit, LESSON_SOURCES,
    Lesson, LessonNight, NIGHT_STATUSES, Night, Phrasing, PhrasingAdded, ROLES, Rating, Recall, ReplyRecord,
    Schedule, StoreDamaged, StoreError, TURN_SOURCES, TurnRecord,
)

# ---------------------------------------------------------------------------------------------------
# Helpers.

def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(stamp: str) -> datetime:
    """The aware UTC datetime of a timestamp written by the store."""
    return datetime.fromisoformat(stamp)


_MARK_START, _MARK_END = "\ue000", "\ue001"  # private-use characters bracket matches in snippets


def fts_query(text: str, *, prefix: bool = False) -> str | None:
    """TurnRecord what the owner typed into an FTS5 query that matches it as plain words.

    Every whitespace-separated word becomes a quoted FTS string, so characters and words that FTS5
    reads as syntax (``"`` ``*`` ``-`` ``(`` ``:`` ``NEAR`` ``AND`` ...) are just text. Words with no
    letter or digit cannot match anything and are dropped. Words are ANDed. Returns None when nothing
    searchable is left."""
    terms = []
    # NUL would end the query string inside SQLite; like other control characters it separates words.
    for word in text.replace("\x00", " ").split():
        if not any(ch.isalnum() for ch in word):
            continue
        terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " ".join(terms) if terms else None


def _unmark(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    start = None
    length = 0
    for ch in marked:
        if ch == _MARK_START:
            start = length
        elif ch == _MARK_END:
            if start is not None:
                spans.append((start, length))
            start = None
        else:
            plain.append(ch)
            length += 1
    return "".join(plain), tuple(spans)


def _question_key(text: str) -> str:
    """How two questions are compared: without case and extra spaces ("What is my name?" and
    "what is  my name?" are the same question; "What's my name?" is another)."""
    return " ".join(text.casefold().split())


def _quote(text: str, limit: int = 60) -> str:
    """A piece of the owner's text for a message: quoted, and shortened when long."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit - 1] + "…")


def _check_enum(what: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise StoreError(f"invalid {what} {value!r}: expected one of {', '.join(allowed)}")
    return value


def _check_text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} must be a string, not {type(value).__name__} {value!r}")
    problem = surrogate_problem(value, what)
    if problem is not None:  # it could never be written as UTF-8: refused here, not half-way through a commit
        raise StoreError(problem)
    return value


def _check_int(what: str, value: Any, *, minimum: int | None = None, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreError(f"invalid {what} {value!r}: expected an integer")
    if minimum is not None and value < minimum:
        raise StoreError(f"invalid {what} {value!r}: must be at least {minimum}")
    return value


def _sampling_columns(settings: SamplingSettings | Mapping[str, Any] | None) -> list[Any]:
    """The candidates table's sampling columns, from the model's one `SamplingSettings` (its
    `max_new_tokens` is the `max_tokens` column) or from a mapping keyed by column name (missing: NULL)."""
    names = ("temperature", "top_k", "top_p", "repetition_penalty", "max_tokens", "seed")
    if settings is None:
        return [None] * len(names)
    if isinstance(settings, Mapping):
        return [settings.get(name) for name in names]
    return [getattr(settings, "max_new_tokens" if name == "max_tokens" else name, None) for name in names]


_T = TypeVar("_T")


def _record(cls: type[_T], row: sqlite3.Row | None) -> _T | None:
    if row is None:
        return None
    keys = row.keys()
    values = {f.name: row[f.name] for f in fields(cls) if f.name in keys}  # type: ignore[arg-type]
    if "in_weights" in values:
        values["in_weights"] = bool(values["in_weights"])
    if "implicit" in values:
        values["implicit"] = bool(values["implicit"])
    if "amended" in values:
        values["amended"] = bool(values["amended"])
    if cls is Annotation:
        values["tags"] = tuple(json.loads(values["tags"]))
    if cls is Night and values["report"] is not None:
        values["report"] = json.loads(values["report"])
    return cls(**values)


def _records(cls: type[_T], rows: Sequence[sqlite3.Row]) -> list[_T]:
    return [_record(cls, row) for row in rows]  # type: ignore[misc]


_TABLE_WHAT = {
    "days": "day", "turns": "turn", "candidates": "candidate", "dreams": "dream",
    "nights": "night", "checkpoints": "checkpoint", "books": "book",
    "lessons": "lesson", "lesson_phrasings": "phrasing",
}


#: A turn as the day holds it now: the latest amendment of a reply replaces its text, source,
#: candidate and token count. Everything that reads a day (the context, the night, the personality
#: book, past days) reads turns through this.
_TURNS = """
SELECT t.id, t.day_id, t.seq, t.role, COALESCE(a.text, t.text) AS text,
       CASE a.kind WHEN 'pick' THEN 'chosen' WHEN 'correction' THEN 'correction'
                   WHEN 'written' THEN 'written' ELSE t.source END AS source,
       CASE WHEN a.id IS NULL THEN t.candidate_id ELSE a.candidate_id END AS candidate_id,
       CASE WHEN a.id IS NULL THEN t.tokens ELSE a.tokens END AS tokens,
       t.created_at, a.id IS NOT NULL AS amended
  FROM turns t
  LEFT JOIN choices a ON a.id = (SELECT MAX(c.id) FROM choices c WHERE c.turn_id = t.id AND c.supersedes IS NOT NULL)
"""

#: Choices that a later amendment superseded.
_SUPERSEDED = "SELECT supersedes FROM choices WHERE supersedes IS NOT NULL"


# ---------------------------------------------------------------------------------------------------

class Store:
    """One companion's SQLite file. Thread-safe; every write method commits before it returns."""

    def __init__(self, path: str | os.PathLike[str], *, now: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._now = now or _utcnow
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            if self.path.is_dir():
                raise StoreError(f"cannot open store {self.path}: it is a directory")
            _make_store_private(self.path)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot open store {self.path}: WAL mode refused (journal mode {mode!r})")
            # FULL: each commit is on disk, not only in the OS cache, when the write method returns.
            conn.execute("PRAGMA synchronous = FULL")
            # A fast structural check at every open: a damaged file is named now, before anything is
            # written into it (the full `integrity_check` runs before every backup).
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreDamaged(self.path, problems)
            self._migrate(conn)
            _make_store_private(self.path)
        except sqlite3.DatabaseError as e:
            conn.close()
            if "malformed" in str(e):
                raise StoreDamaged(self.path, [str(e)]) from e
            if isinstance(e, sqlite3.OperationalError):
                raise StoreError(f"cannot open store {self.path}: {_explain(e, self.path)}") from e
            raise StoreError(f"{self.path} is not a readable companion store "
                             f"(not a SQLite database, or corrupted): {e}") from e
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, now: Callable[[], datetime] | None = None) -> Store:
        """Open (creating or upgrading) the store at ``path``."""
        return cls(path, now=now)

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- plumbing -----------------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            objects = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
            if objects:
                raise StoreError(f"{self.path} is a SQLite database but not a companion store "
                                 f"(it has tables and no schema version)")
        else:
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            if app != APPLICATION_ID:
                raise StoreError(f"{self.path} is a SQLite database but not a companion store "
                                 f"(application id {app:#x}, expected {APPLICATION_ID:#x})")
            self._refuse_newer(version)
        for migration in schema.MIGRATIONS:
            if migration.version <= version:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have upgraded the file while we waited for the write lock.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                self._refuse_newer(version)
                if migration.version <= version:
                    conn.execute("ROLLBACK")
                    continue
                if callable(migration.apply):
                    migration.apply(conn)
                else:
                    for statement in schema._statements(migration.apply):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                conn.execute("COMMIT")
                version = migration.version
            except sqlite3.Error as e:
                _rollback(conn)
                raise StoreError(f"cannot upgrade {self.path} from schema version {version} to "
                                 f"{migration.version} ({migration.description}); the file is unchanged: {e}") from e
            except BaseException:
                _rollback(conn)
                raise

    def _refuse_newer(self, version: int) -> None:
        if version > schema.SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this program knows "
                             f"(version {schema.SCHEMA_VERSION}); update companion to open it")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed on exit: the unit of 'every write is committed when it happens'."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # Also when COMMIT itself failed (a full disk): never leave a transaction open.
                    _rollback(conn)
                    raise
            except sqlite3.IntegrityError as e:
                raise StoreError(f"refused by {self.path}: {e}") from e
            except sqlite3.Error as e:
                raise StoreError(f"cannot write to store {self.path}: {_explain(e, self.path)}") from e

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as e:
                raise StoreError(f"cannot read store {self.path}: {_explain(e, self.path)}") from e

    def _stamp(self) -> str:
        moment = self._now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")

    @staticmethod
    def _require(conn: sqlite3.Connection, table: str, row_id: Any, *, optional: bool = False) -> sqlite3.Row | None:
        """The row ``row_id`` of ``table``, or a StoreError naming the missing id (foreign keys alone
        would only say 'FOREIGN KEY constraint failed')."""
        what = _TABLE_WHAT[table]
        if row_id is None and optional:
            return None
        _check_int(f"{what} id", row_id)
        row = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise StoreError(f"no {what} with id {row_id}")
        return row

    def integrity_check(self) -> list[str]:
        """SQLite's full integrity check: ``['ok']`` when the file is sound. Reads the whole file,
        so it is not run on every open."""
        with self._read() as conn:
            return [row[0] for row in conn.execute("PRAGMA integrity_check")]

    @property
    def schema_version(self) -> int:
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # -- days ---------------------------------------------------------------------------------------

    def open_day(self, budget_tokens: int, checkpoint_id: int | None = None) -> Day:
        """Open the next day. Refused while another day is still open: the transcript is one context."""
        _check_int("budget_tokens", budget_tokens, minimum=1)
        with self._write() as conn:
            open_day = conn.execute("SELECT number FROM days WHERE closed_at IS NULL").fetchone()
            if open_day is not None:
                raise StoreError(f"day {open_day['number']} is still open; close it before opening another")
            self._require(conn, "checkpoints", checkpoint_id, optional=True)
            number = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM days").fetchone()[0]
            cur = conn.execute(
                "INSERT INTO days (number, opened_at, budget_tokens, checkpoint_id) VALUES (?, ?, ?, ?)",
                (number, self._stamp(), budget_tokens, checkpoint_id))
            return _record(Day, conn.execute("SELECT * FROM days WHERE id = ?", (cur.lastrowid,)).fetchone())

    def close_day(self, day_id: int, reason: str) -> Day:
        """Close the day: it is full, or the owner said good night. Its night may begin."""
        _check_enum("close reason", reason, CLOSE_REASONS)
        with self._write() as conn:
            day = self._require(conn, "days", day_id)
            if day["closed_at"] is not None:
                raise StoreError(f"day {day['number']} is already closed ({day['close_reason']})")
            conn.execute("UPDATE days SET closed_at = ?, close_reason = ? WHERE id = ?",
                         (self._stamp(), reason, day_id))
            return _record(Day, conn.execute("SELECT * FROM days WHERE id = ?", (day_id,)).fetchone())

    def current_day(self) -> Day | None:
        """The open day, if there is one."""
        with self._read() as conn:
            return _record(Day, conn.execute("SELECT * FROM days WHERE closed_at IS NULL").fetchone())

    def get_day(self, day_id: int | None = None, *, number: int | None = None) -> Day | None:
        """A day by id, or by its number (``get_day(number=3)``)."""
        if (day_id is None) == (number is None):
            raise StoreError("get_day needs exactly one of day_id or number")
        with self._read() as conn:
            if day_id is not None:
                row = conn.execute("SELECT * FROM days WHERE id = ?", (day_id,)).fetchone()
            else:
                row = conn.execute("SELECT * FROM days WHERE number = ?", (number,)).fetchone()
            return _record(Day, row)

    def days(self) -> list[Day]:
        with self._read() as conn:
            return _records(Day, conn.execute("SELECT * FROM days ORDER BY number").fetchall())

    def list_days(self) -> list[DaySummary]:
        """Every day with its counts, in one query (the days list must stay quick after years)."""
        sql = """
            SELECT d.id, d.number, d.opened_at, d.closed_at, d.close_reason, d.budget_tokens, d.in_weights,
                   (SELECT COUNT(*) FROM turns t WHERE t.day_id = d.id) AS turns,
                   (SELECT COALESCE(SUM(t.tokens), 0) FROM ({_TURNS}) t WHERE t.day_id = d.id) AS tokens,
                   (SELECT COUNT(*) FROM candidates c WHERE c.day_id = d.id
                      AND (SELECT r.stars FROM ratings r WHERE r.candidate_id = c.id
                           ORDER BY r.id DESC LIMIT 1) IS NOT NULL) AS ratings,
                   (SELECT COUNT(*) FROM corrections k JOIN candidates c ON c.id = k.candidate_id
                     WHERE c.day_id = d.id AND k.id NOT IN (
                       SELECT correction_id FROM choices WHERE correction_id IS NOT NULL
                          AND id IN ({_SUPERSEDED}))) AS corrections,
                   (SELECT n.status FROM nights n WHERE n.day_id = d.id
                     ORDER BY n.id DESC LIMIT 1) AS night_status
              FROM days d ORDER BY d.number
        """.replace("{_TURNS}", _TURNS).replace("{_SUPERSEDED}", _SUPERSEDED)
        with self._read() as conn:
            return _records(DaySummary, conn.execute(sql).fetchall())

    def tokens_used(self, day_id: int) -> int:
        """Sum of the day's turn token counts (turns without a count add nothing): the gauge."""
        with self._read() as conn:
            return conn.execute(f"SELECT COALESCE(SUM(tokens), 0) FROM ({_TURNS}) WHERE day_id = ?",
                                (day_id,)).fetchone()[0]

    def mark_days_not_in_weights(self, *, after_checkpoint_id: int | None = None,
                                 after_day_number: int | None = None) -> int:
        """After a restore: flag the days the restored weights never learned (``in_weights = 0``).

        With ``after_day_number=N`` every day numbered above N is flagged. With
        ``after_checkpoint_id`` the store works out which days those weights hold by walking the
        checkpoint's ancestry (``parent_id``): a day is held if an accepted night of it produced a
        checkpoint in that line, or a ``'night'`` checkpoint of it is in that line. Days after the
        last held day are flagged; held days are marked in the weights again (a restore forward).
        Returns how many days were flagged."""
        if (after_checkpoint_id is None) == (after_day_number is None):
            raise StoreError("mark_days_not_in_weights needs exactly one of after_checkpoint_id or after_day_number")
        with self._write() as conn:
            if after_day_number is not None:
                _check_int("day number", after_day_number, minimum=0)
                cutoff = after_day_number
            else:
                self._require(conn, "checkpoints", after_checkpoint_id)
                held = [row[0] for row in conn.execute("""
                    WITH RECURSIVE lineage(id) AS (
                        SELECT ?
                        UNION
                        SELECT c.parent_id FROM checkpoints c JOIN lineage l ON c.id = l.id
                         WHERE c.parent_id IS NOT NULL
                    )
                    SELECT n.day_id FROM nights n
                     WHERE n.status = 'accepted' AND n.post_checkpoint_id IN (SELECT id FROM lineage)
                    UNION
                    SELECT c.day_id FROM checkpoints c
                     WHERE c.reason = 'night' AND c.day_id IS NOT NULL AND c.id IN (SELECT id FROM lineage)
                """, (after_checkpoint_id,))]
                cutoff = 0
                if held:
                    marks = ",".join("?" * len(held))
                    conn.execute(f"UPDATE days SET in_weights = 1 WHERE id IN ({marks})", held)
                    cutoff = conn.execute(f"SELECT MAX(number) FROM days WHERE id IN ({marks})", held).fetchone()[0]
            cur = conn.execute("UPDATE days SET in_weights = 0 WHERE number > ? AND in_weights = 1", (cutoff,))
            return cur.rowcount

    # -- turns --------------------------------------------------------------------------------------

    def _insert_turn(self, conn: sqlite3.Connection, day_id: int, role: str, text: str, source: str,
                     candidate_id: int | None, tokens: int | None) -> TurnRecord:
        _check_enum("role", role, ROLES)
        _check_enum("turn source", source, TURN_SOURCES)
        _check_text("turn text", text)
        _check_int("tokens", tokens, minimum=0, optional=True)
        day = self._require(conn, "days", day_id)
        if day["closed_at"] is not None:
            raise StoreError(f"day {day['number']} is closed; its transcript cannot grow")
        self._require(conn, "candidates", candidate_id, optional=True)
        seq = conn.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM turns WHERE day_id = ?", (day_id,)).fetchone()[0]
        cur = conn.execute(
            "INSERT INTO turns (day_id, seq, role, text, source, candidate_id, tokens, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (day_id, seq, role, text, source, candidate_id, tokens, self._stamp()))
        return _record(TurnRecord, conn.execute(f"{_TURNS} WHERE t.id = ?", (cur.lastrowid,)).fetchone())

    def add_turn(self, day_id: int, role: str, text: str, source: str, candidate_id: int | None = None,
                 tokens: int | None = None) -> TurnRecord:
        """Append a turn to an open day's transcript (``seq`` is assigned in order)."""
        with self._write() as conn:
            return self._insert_turn(conn, day_id, role, text, source, candidate_id, tokens)

    def turns(self, day_id: int) -> list[TurnRecord]:
        """The day's transcript, in order, as it stands now (amended replies carry their latest text)."""
        with self._read() as conn:
            return _records(TurnRecord, conn.execute(f"{_TURNS} WHERE t.day_id = ? ORDER BY t.seq",
                                               (day_id,)).fetchall())

    def recorded_turn(self, turn_id: int) -> TurnRecord | None:
        """A turn exactly as first recorded, before any amendment."""
        with self._read() as conn:
            return _record(TurnRecord, conn.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchone())

    def get_turn(self, turn_id: int) -> TurnRecord | None:
        with self._read() as conn:
            return _record(TurnRecord, conn.execute(f"{_TURNS} WHERE t.id = ?", (turn_id,)).fetchone())

    # -- candidates ---------------------------------------------------------------------------------

    def add_candidates(self, day_id: int, prompt_turn_id: int | None, texts: Sequence[str],
                       finishes: Sequence[str] | str = "end", *, round: int | None = None,
                       settings: SamplingSettings | Mapping[str, Any] | None = None, role: str = "companion",
                       checkpoint_id: int | None = None) -> list[Candidate]:
        """Record a batch of sampled candidates, slots 0..K-1, all in one transaction.

        ``round=None`` takes the next round for this prompt (0 for the first batch), decided inside
        the transaction so two batches can never collide. Earlier rounds are never touched."""
        texts = list(texts)
        if not texts:
            raise StoreError("add_candidates needs at least one text")
        for text in texts:
            _check_text("candidate text", text)
        finish_list = [finishes] * len(texts) if isinstance(finishes, str) else list(finishes)
        if len(finish_list) != len(texts):
            raise StoreError(f"{len(texts)} candidate texts but {len(finish_list)} finish values")
        for finish in finish_list:
            _check_enum("finish", finish, FINISHES)
        _check_enum("candidate role", role, CANDIDATE_ROLES)
        _check_int("round", round, minimum=0, optional=True)
        values = _sampling_columns(settings)
        with self._write() as conn:
            self._require(conn, "days", day_id)
            prompt = self._require(conn, "turns", prompt_turn_id, optional=True)
            if prompt is not None and prompt["day_id"] != day_id:
                raise StoreError(f"turn {prompt_turn_id} belongs to another day (id {prompt['day_id']}), "
                                 f"not day id {day_id}")
            self._require(conn, "checkpoints", checkpoint_id, optional=True)
            if round is None:
                round = self._next_round(conn, day_id, prompt_turn_id)
            elif conn.execute("SELECT 1 FROM candidates WHERE prompt_turn_id IS ? AND day_id = ? AND round = ?",
                              (prompt_turn_id, day_id, round)).fetchone():
                raise StoreError(f"round {round} of candidates for turn {prompt_turn_id} already exists; "
                                 f"candidates are never overwritten")
            stamp = self._stamp()
            ids = []
            for slot, (text, finish) in enumerate(zip(texts, finish_list)):
                cur = conn.execute(
                    "INSERT INTO candidates (day_id, prompt_turn_id, round, slot, role, text, finish,"
                    " temperature, top_k, top_p, repetition_penalty, max_tokens, seed, checkpoint_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (day_id, prompt_turn_id, round, slot, role, text, finish, *values, checkpoint_id, stamp))
                ids.append(cur.lastrowid)
            marks = ",".join("?" * len(ids))
            return _records(Candidate, conn.execute(
                f"SELECT * FROM candidates WHERE id IN ({marks}) ORDER BY slot", ids).fetchall())

    @staticmethod
    def _next_round(conn: sqlite3.Connection, day_id: int | None, prompt_turn_id: int | None) -> int:
        if prompt_turn_id is not None:
            row = conn.execute("SELECT MAX(round) FROM candidates WHERE prompt_turn_id = ?",
                               (prompt_turn_id,)).fetchone()
        else:
            row = conn.execute("SELECT MAX(round) FROM candidates WHERE prompt_turn_id IS NULL AND day_id = ?",
                               (day_id,)).fetchone()
        return 0 if row[0] is None else row[0] + 1

    def next_round(self, prompt_turn_id: int | None, *, day_id: int | None = None) -> int:
        """The round number the next batch for this prompt will get (0 if none yet). Candidates
        answering no turn (``prompt_turn_id=None``) are counted per day, so pass ``day_id``."""
        if prompt_turn_id is None and day_id is None:
            raise StoreError("next_round for candidates without a prompt turn needs day_id")
        with self._read() as conn:
            return self._next_round(conn, day_id, prompt_turn_id)

    def candidates(self, day_id: int | None = None, *, prompt_turn_id: int | None = None) -> list[Candidate]:
        """All candidates of a day, or of one prompt, ordered by round then slot."""
        if (day_id is None) == (prompt_turn_id is None):
            raise StoreError("candidates needs exactly one of day_id or prompt_turn_id")
        with self._read() as conn:
            if day_id is not None:
                rows = conn.execute("SELECT * FROM candidates WHERE day_id = ? ORDER BY id", (day_id,))
            else:
                rows = conn.execute("SELECT * FROM candidates WHERE prompt_turn_id = ? ORDER BY round, slot",
                                    (prompt_turn_id,))
            return _records(Candidate, rows.fetchall())

    def get_candidate(self, candidate_id: int) -> Candidate | None:
        with self._read() as conn:
            return _record(Candidate, conn.execute("SELECT * FROM candidates WHERE id = ?",
                                                   (candidate_id,)).fetchone())

    # -- choices, ratings, corrections --------------------------------------------------------------

    def _insert_choice(self, conn: sqlite3.Connection, prompt_turn_id: int | None, kind: str, turn_id: int,
                       candidate_id: int | None, *, implicit: bool = False, supersedes: int | None = None,
                       text: str | None = None, correction_id: int | None = None,
                       tokens: int | None = None) -> Choice:
        _check_enum("choice kind", kind, CHOICE_KINDS)
        if kind != "written" and candidate_id is None:
            raise StoreError(f"a {kind!r} choice needs the candidate it came from")
        self._require(conn, "turns", prompt_turn_id, optional=True)
        self._require(conn, "turns", turn_id)
        self._require(conn, "candidates", candidate_id, optional=True)
        cur = conn.execute(
            "INSERT INTO choices (prompt_turn_id, candidate_id, kind, turn_id, created_at, implicit, supersedes,"
            " text, correction_id, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (prompt_turn_id, candidate_id, kind, turn_id, self._stamp(), int(bool(implicit)), supersedes,
             text, correction_id, tokens))
        return _record(Choice, conn.execute("SELECT * FROM choices WHERE id = ?", (cur.lastrowid,)).fetchone())

    def _insert_correction(self, conn: sqlite3.Connection, candidate_id: int, text: str) -> Correction:
        _check_text("correction text", text)
        self._require(conn, "candidates", candidate_id)
        cur = conn.execute("INSERT INTO corrections (candidate_id, text, created_at) VALUES (?, ?, ?)",
                           (candidate_id, text, self._stamp()))
        return _record(Correction, conn.execute("SELECT * FROM corrections WHERE id = ?",
                                                (cur.lastrowid,)).fetchone())

    def record_choice(self, prompt_turn_id: int | None, kind: str, turn_id: int,
                      candidate_id: int | None = None) -> Choice:
        """Record which reply the owner let into the transcript: a picked candidate, a correction of
        one, or a reply they wrote. ``turn_id`` is the transcript turn it produced."""
        with self._write() as conn:
            return self._insert_choice(conn, prompt_turn_id, kind, turn_id, candidate_id)

    def record_reply(self, day_id: int, prompt_turn_id: int | None, kind: str, text: str | None = None, *,
                     candidate_id: int | None = None, tokens: int | None = None,
                     role: str | None = None, implicit: bool = False) -> ReplyRecord:
        """The usual way a reply enters the day, all in one transaction (a kill never leaves a turn
        without its choice): for ``'pick'`` the candidate's text becomes a 'chosen' turn (``text`` may
        be omitted); for ``'correction'`` ``text`` is stored as a correction of the candidate and
        becomes a 'correction' turn; for ``'written'`` ``text`` becomes a 'written' turn. The turn's
        ``role`` defaults to the candidate's role ('companion' for a written reply). ``implicit``: a pick
        the owner made by replying without picking (the highlighted card was taken).

        A correction or written reply of the companion to an owner's message is a lesson: it is
        recorded in the same transaction (``ReplyRecord.lesson``), with the message as its question."""
        if implicit and kind != "pick":
            raise StoreError(f"only a pick can be implicit, not a {kind!r} choice")
        _check_enum("choice kind", kind, CHOICE_KINDS)
        with self._write() as conn:
            correction = None
            if candidate_id is not None and role is None:
                role = self._require(conn, "candidates", candidate_id)["role"]
            role = role or "companion"
            if kind == "pick":
                candidate = self._require(conn, "candidates", candidate_id)
                if text is None:
                    text = candidate["text"]
                source = "chosen"
            elif kind == "correction":
                if candidate_id is None:
                    raise StoreError("a 'correction' reply needs the candidate it corrects")
                if text is None:
                    raise StoreError("a 'correction' reply needs its text")
                correction = self._insert_correction(conn, candidate_id, text)
                source = "correction"
            else:
                if text is None:
                    raise StoreError("a 'written' reply needs its text")
                source = "written"
            turn = self._insert_turn(conn, day_id, role, text, source, candidate_id, tokens)
            choice = self._insert_choice(conn, prompt_turn_id, kind, turn.id, candidate_id, implicit=implicit,
                                         correction_id=correction.id if correction else None)
            lesson = None
            if kind != "pick" and role == "companion" and prompt_turn_id is not None:
                prompt = conn.execute("SELECT role, text FROM turns WHERE id = ?", (prompt_turn_id,)).fetchone()
                if prompt["role"] == "owner" and prompt["text"].strip() and text.strip():
                    lesson_id = self._insert_lesson(conn, source, prompt["text"], text, day_id=day_id,
                                                    prompt_turn_id=prompt_turn_id, reply_turn_id=turn.id,
                                                    answer_tokens=tokens, budget_tokens=None)
                    lesson = self._lessons(conn, ids=[lesson_id])[0]
            return ReplyRecord(turn, choice, correction, lesson)

    def amend_reply(self, turn_id: int, kind: str, text: str | None = None, *, candidate_id: int | None = None,
                    tokens: int | None = None) -> ReplyRecord:
        """Mend a reply already in the day: another pick, a new correction, or a new written reply.

        Nothing is rewritten: a new choice for the same turn supersedes the latest one and carries the
        reply's text from now on (a correction also adds its correction row). Refused once the day is
        closed: its night has it. ``latest_choice(turn_id)`` finds the version in force."""
        _check_enum("choice kind", kind, CHOICE_KINDS)
        _check_int("tokens", tokens, minimum=0, optional=True)
        with self._write() as conn:
            turn = self._require(conn, "turns", turn_id)
            day = self._require(conn, "days", turn["day_id"])
            if day["closed_at"] is not None:
                raise StoreError(f"day {day['number']} is closed and its night has it; its replies can no "
                                 f"longer be amended")
            last = conn.execute("SELECT * FROM choices WHERE turn_id = ? ORDER BY id DESC LIMIT 1",
                                (turn_id,)).fetchone()
            if last is None:
                raise StoreError(f"turn {turn_id} is not a reply the owner chose; there is nothing to amend")
            correction = None
            if kind == "pick":
                candidate = self._require(conn, "candidates", candidate_id)
                text = candidate["text"]
            elif kind == "correction":
                if candidate_id is None or text is None:
                    raise StoreError("an amended correction needs the candidate it corrects and its text")
                correction = self._insert_correction(conn, candidate_id, text)
            else:
                if text is None:
                    raise StoreError("an amended written reply needs its text")
                _check_text("reply text", text)
                candidate_id = None
            if candidate_id is not None:
                candidate = self._require(conn, "candidates", candidate_id)
                if candidate["prompt_turn_id"] != last["prompt_turn_id"]:
                    raise StoreError(f"candidate {candidate_id} does not answer the message this reply answers")
            choice = self._insert_choice(conn, last["prompt_turn_id"], kind, turn_id, candidate_id,
                                         supersedes=last["id"], text=text,
                                         correction_id=correction.id if correction else None, tokens=tokens)
            new_turn = _record(TurnRecord, conn.execute(f"{_TURNS} WHERE t.id = ?", (turn_id,)).fetchone())
            # A pick mended into a correction or a written reply becomes a lesson; a lesson already held
            # by this reply follows the amendment (its answer is read from the latest choice).
            lesson = None
            held = conn.execute("SELECT id FROM lessons WHERE reply_turn_id = ?", (turn_id,)).fetchone()
            if held is None and kind != "pick" and last["prompt_turn_id"] is not None and turn["role"] == "companion":
                prompt = conn.execute("SELECT role, text FROM turns WHERE id = ?", (last["prompt_turn_id"],)).fetchone()
                if prompt["role"] == "owner" and prompt["text"].strip() and text.strip():
                    held_id = self._insert_lesson(conn, "correction" if kind == "correction" else "written",
                                                  prompt["text"], text, day_id=turn["day_id"],
                                                  prompt_turn_id=last["prompt_turn_id"], reply_turn_id=turn_id,
                                                  answer_tokens=tokens, budget_tokens=None)
                    lesson = self._lessons(conn, ids=[held_id])[0]
            elif held is not None:
                lesson = self._lessons(conn, ids=[held["id"]])[0]
            return ReplyRecord(new_turn, choice, correction, lesson)

    def latest_choice(self, turn_id: int) -> Choice | None:
        """The version of a reply in force: the latest choice for this turn (an amendment, or the
        original choice when it was never amended). None if the turn is not a chosen reply."""
        with self._read() as conn:
            return _record(Choice, conn.execute("SELECT * FROM choices WHERE turn_id = ? ORDER BY id DESC LIMIT 1",
                                                (turn_id,)).fetchone())

    def amendments(self, turn_id: int) -> list[Choice]:
        """Every version of a reply, oldest first: the original choice, then each amendment."""
        with self._read() as conn:
            return _records(Choice, conn.execute("SELECT * FROM choices WHERE turn_id = ? ORDER BY id",
                                                 (turn_id,)).fetchall())

    def choices(self, day_id: int | None = None, *, prompt_turn_id: int | None = None,
                history: bool = False) -> list[Choice]:
        """Choices in force of a day (by the turn they produced), or for one prompt, in the order their
        replies were first chosen. An amended reply is listed once, by its latest choice; ``history``
        lists every version instead, oldest first."""
        if (day_id is None) == (prompt_turn_id is None):
            raise StoreError("choices needs exactly one of day_id or prompt_turn_id")
        current = "" if history else f" AND ch.id NOT IN ({_SUPERSEDED})"
        order = "ch.id" if history else "ch.turn_id, ch.id"
        with self._read() as conn:
            if day_id is not None:
                rows = conn.execute("SELECT ch.* FROM choices ch JOIN turns t ON t.id = ch.turn_id"
                                    f" WHERE t.day_id = ?{current} ORDER BY {order}", (day_id,))
            else:
                rows = conn.execute(f"SELECT ch.* FROM choices ch WHERE ch.prompt_turn_id = ?{current}"
                                    f" ORDER BY {order}", (prompt_turn_id,))
            return _records(Choice, rows.fetchall())

    def rate(self, candidate_id: int, stars: int | None) -> Rating:
        """Rate a candidate 1-4 stars, or clear its rating with ``None`` (no rating is not a low
        rating). Adds a row each time; the latest row counts."""
        if stars is not None:
            if not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 4:
                raise StoreError(f"invalid stars {stars!r}: expected 1, 2, 3, 4 or None to clear")
        with self._write() as conn:
            self._require(conn, "candidates", candidate_id)
            cur = conn.execute("INSERT INTO ratings (candidate_id, stars, created_at) VALUES (?, ?, ?)",
                               (candidate_id, stars, self._stamp()))
            return _record(Rating, conn.execute("SELECT * FROM ratings WHERE id = ?", (cur.lastrowid,)).fetchone())

    def rating(self, candidate_id: int) -> int | None:
        """The candidate's current stars, or None if never rated or cleared."""
        with self._read() as conn:
            row = conn.execute("SELECT stars FROM ratings WHERE candidate_id = ? ORDER BY id DESC LIMIT 1",
                               (candidate_id,)).fetchone()
            return None if row is None else row[0]

    def ratings(self, day_id: int | None = None, *, prompt_turn_id: int | None = None) -> dict[int, int]:
        """Current ratings as ``{candidate_id: stars}`` for a day or a prompt; unrated and cleared
        candidates are absent."""
        if (day_id is None) == (prompt_turn_id is None):
            raise StoreError("ratings needs exactly one of day_id or prompt_turn_id")
        column = "c.day_id" if day_id is not None else "c.prompt_turn_id"
        with self._read() as conn:
            rows = conn.execute(f"""
                SELECT c.id AS candidate_id,
                       (SELECT r.stars FROM ratings r WHERE r.candidate_id = c.id ORDER BY r.id DESC LIMIT 1) AS stars
                  FROM candidates c WHERE {column} = ?
            """, (day_id if day_id is not None else prompt_turn_id,)).fetchall()
            return {row["candidate_id"]: row["stars"] for row in rows if row["stars"] is not None}

    def add_correction(self, candidate_id: int, text: str) -> Correction:
        """The owner's edit of a candidate into what it should have said."""
        with self._write() as conn:
            return self._insert_correction(conn, candidate_id, text)

    def corrections(self, day_id: int | None = None, *, candidate_id: int | None = None) -> list[Correction]:
        if (day_id is None) == (candidate_id is None):
            raise StoreError("corrections needs exactly one of day_id or candidate_id")
        with self._read() as conn:
            superseded = (f" AND k.id NOT IN (SELECT correction_id FROM choices WHERE correction_id IS NOT NULL"
                          f" AND id IN ({_SUPERSEDED}))")
            if day_id is not None:
                rows = conn.execute("SELECT k.* FROM corrections k JOIN candidates c ON c.id = k.candidate_id"
                                    f" WHERE c.day_id = ?{superseded} ORDER BY k.id", (day_id,))
            else:
                rows = conn.execute(f"SELECT k.* FROM corrections k WHERE k.candidate_id = ?{superseded}"
                                    " ORDER BY k.id", (candidate_id,))
            return _records(Correction, rows.fetchall())

    # -- annotations --------------------------------------------------------------------------------

    def annotate(self, *, turn_id: int | None = None, dream_id: int | None = None, line_index: int | None = None,
                 tags: Sequence[str] = (), note: str | None = None) -> Annotation:
        """Tag and/or note a turn, or one line of a dream. Adds a row; the latest per target counts.
        Empty tags and no note clear the annotation."""
        if isinstance(tags, str):
            raise StoreError(f"tags must be a list of strings, not the string {tags!r}")
        tags = list(tags)
        for tag in tags:
            _check_text("tag", tag)
        if note is not None:
            _check_text("note", note)
        if turn_id is not None:
            if dream_id is not None or line_index is not None:
                raise StoreError("annotate either a turn (turn_id) or a dream line (dream_id, line_index), not both")
        elif dream_id is None or line_index is None:
            raise StoreError("annotate needs turn_id, or dream_id with line_index")
        else:
            _check_int("line_index", line_index, minimum=0)
        with self._write() as conn:
            self._require(conn, "turns", turn_id, optional=True)
            self._require(conn, "dreams", dream_id, optional=True)
            cur = conn.execute(
                "INSERT INTO annotations (turn_id, dream_id, line_index, tags, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (turn_id, dream_id, line_index, json.dumps(tags, ensure_ascii=False), note, self._stamp()))
            return _record(Annotation, conn.execute("SELECT * FROM annotations WHERE id = ?",
                                                    (cur.lastrowid,)).fetchone())

    def annotation(self, *, turn_id: int | None = None, dream_id: int | None = None,
                   line_index: int | None = None) -> Annotation | None:
        """The current annotation of one target (None if never annotated; a cleared one is returned
        with empty tags and no note)."""
        with self._read() as conn:
            if turn_id is not None:
                row = conn.execute("SELECT * FROM annotations WHERE turn_id = ? ORDER BY id DESC LIMIT 1",
                                   (turn_id,)).fetchone()
            else:
                row = conn.execute("SELECT * FROM annotations WHERE dream_id = ? AND line_index = ?"
                                   " ORDER BY id DESC LIMIT 1", (dream_id, line_index)).fetchone()
            return _record(Annotation, row)

    def annotations(self, day_id: int) -> list[Annotation]:
        """Current annotations of the day's turns and of its dreams' lines, latest per target,
        cleared ones left out; oldest target first."""
        with self._read() as conn:
            rows = conn.execute("""
                SELECT a.* FROM annotations a
                  JOIN (SELECT MAX(a2.id) AS id FROM annotations a2 JOIN turns t ON t.id = a2.turn_id
                         WHERE t.day_id = ? GROUP BY a2.turn_id
                        UNION ALL
                        SELECT MAX(a3.id) FROM annotations a3 JOIN dreams d ON d.id = a3.dream_id
                         WHERE d.day_id = ? GROUP BY a3.dream_id, a3.line_index) latest ON latest.id = a.id
                 WHERE a.tags <> '[]' OR a.note IS NOT NULL
                 ORDER BY a.turn_id IS NULL, a.turn_id, a.dream_id, a.line_index
            """, (day_id, day_id)).fetchall()
            return _records(Annotation, rows)

    # -- dreams -------------------------------------------------------------------------------------

    def add_dream(self, day_id: int, text: str, source: str = "model", night_id: int | None = None) -> DreamRecord:
        """A dream of the day: the model's own continuation ('model') or a teacher-written one."""
        _check_text("dream text", text)
        _check_enum("dream source", source, DREAM_SOURCES)
        with self._write() as conn:
            self._require(conn, "days", day_id)
            self._require(conn, "nights", night_id, optional=True)
            cur = conn.execute("INSERT INTO dreams (day_id, night_id, text, source, created_at) VALUES (?, ?, ?, ?, ?)",
                               (day_id, night_id, text, source, self._stamp()))
            return _record(DreamRecord, conn.execute("SELECT * FROM dreams WHERE id = ?", (cur.lastrowid,)).fetchone())

    def dreams(self, last: int | None = None, *, day_id: int | None = None, source: str | None = None) -> list[DreamRecord]:
        """Dreams oldest first: all of them, the ``last`` n (the night trains on the last 5), and/or
        those of one day or one source."""
        _check_int("last", last, minimum=0, optional=True)
        if source is not None:
            _check_enum("dream source", source, DREAM_SOURCES)
        with self._read() as conn:
            rows = conn.execute("""
                SELECT * FROM (SELECT * FROM dreams WHERE (? IS NULL OR day_id = ?) AND (? IS NULL OR source = ?)
                                ORDER BY id DESC LIMIT ?) ORDER BY id
            """, (day_id, day_id, source, source, -1 if last is None else last)).fetchall()
            return _records(DreamRecord, rows)

    # -- nights -------------------------------------------------------------------------------------

    def start_night(self, day_id: int, pre_checkpoint_id: int | None = None) -> Night:
        """Begin the night of a closed day. Only one night runs at a time; one left 'running' by a
        quit is found with ``running_night()`` and finished as 'interrupted' before another starts."""
        with self._write() as conn:
            day = self._require(conn, "days", day_id)
            if day["closed_at"] is None:
                raise StoreError(f"day {day['number']} is still open; its night cannot start")
            running = conn.execute("SELECT id, day_id FROM nights WHERE status = 'running'").fetchone()
            if running is not None:
                raise StoreError(f"night {running['id']} is still running; finish it first")
            self._require(conn, "checkpoints", pre_checkpoint_id, optional=True)
            cur = conn.execute("INSERT INTO nights (day_id, started_at, status, pre_checkpoint_id)"
                               " VALUES (?, ?, 'running', ?)", (day_id, self._stamp(), pre_checkpoint_id))
            return _record(Night, conn.execute("SELECT * FROM nights WHERE id = ?", (cur.lastrowid,)).fetchone())

    def finish_night(self, night_id: int, status: str, *, reason: str | None = None, report: Any = None,
                     post_checkpoint_id: int | None = None, pre_checkpoint_id: int | None = None) -> Night:
        """End a running night: accepted, rolled back (say why in ``reason``), interrupted, nothing to
        do, or failed. ``report`` is anything JSON can hold (losses, probe scores, counts...)."""
        _check_enum("night status", status, [s for s in NIGHT_STATUSES if s != "running"])
        if reason is not None:
            _check_text("night reason", reason)
        try:
            report_json = None if report is None else json.dumps(report, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"night report is not JSON: {e}") from e
        with self._write() as conn:
            night = self._require(conn, "nights", night_id)
            if night["status"] != "running":
                raise StoreError(f"night {night_id} already finished ({night['status']})")
            self._require(conn, "checkpoints", post_checkpoint_id, optional=True)
            self._require(conn, "checkpoints", pre_checkpoint_id, optional=True)
            conn.execute("""
                UPDATE nights SET finished_at = ?, status = ?, reason = ?, report = ?,
                       post_checkpoint_id = ?, pre_checkpoint_id = COALESCE(?, pre_checkpoint_id)
                 WHERE id = ?
            """, (self._stamp(), status, reason, report_json, post_checkpoint_id, pre_checkpoint_id, night_id))
            return _record(Night, conn.execute("SELECT * FROM nights WHERE id = ?", (night_id,)).fetchone())

    def get_night(self, night_id: int) -> Night | None:
        with self._read() as conn:
            return _record(Night, conn.execute("SELECT * FROM nights WHERE id = ?", (night_id,)).fetchone())

    def running_night(self) -> Night | None:
        """The night still marked running: after a restart, one that a quit interrupted."""
        with self._read() as conn:
            return _record(Night, conn.execute("SELECT * FROM nights WHERE status = 'running'").fetchone())

    def nights(self, day_id: int | None = None) -> list[Night]:
        """All nights, or those of one day, oldest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM nights WHERE (? IS NULL OR day_id = ?) ORDER BY id",
                                (day_id, day_id)).fetchall()
            return _records(Night, rows)

    # -- checkpoints --------------------------------------------------------------------------------

    def add_checkpoint(self, path: str | os.PathLike[str], reason: str, *, checksum: str, size_bytes: int,
                       step: int = 0, day_id: int | None = None, parent_id: int | None = None,
                       probe_ppl: float | None = None, probe_set: str | None = None) -> Checkpoint:
        """Record a saved weights file and its story. ``path`` is relative to the companion home, so
        the home can move. ``parent_id``: the weights these came from (restores rely on it).
        ``probe_set`` names the probe that measured ``probe_ppl``, so figures are only ever compared
        with figures of the same probe."""
        path_str = os.fspath(path)
        _check_text("checkpoint path", path_str)
        if not path_str or Path(path_str).is_absolute():
            raise StoreError(f"checkpoint path {path_str!r} must be relative to the companion home")
        _check_text("checkpoint reason", reason)
        if not reason:
            raise StoreError("checkpoint reason must not be empty")
        _check_text("checksum", checksum)
        _check_int("size_bytes", size_bytes, minimum=0)
        _check_int("step", step, minimum=0)
        with self._write() as conn:
            self._require(conn, "days", day_id, optional=True)
            self._require(conn, "checkpoints", parent_id, optional=True)
            if conn.execute("SELECT 1 FROM checkpoints WHERE path = ? AND deleted_at IS NULL", (path_str,)).fetchone():
                raise StoreError(f"a checkpoint at {path_str!r} is already recorded")
            cur = conn.execute(
                "INSERT INTO checkpoints (path, reason, day_id, step, parent_id, created_at, checksum, probe_ppl,"
                " size_bytes, probe_set)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path_str, reason, day_id, step, parent_id, self._stamp(), checksum, probe_ppl, size_bytes,
                 probe_set if probe_ppl is not None else None))
            return _record(Checkpoint, conn.execute("SELECT * FROM checkpoints WHERE id = ?",
                                                    (cur.lastrowid,)).fetchone())

    def set_checkpoint_probe(self, checkpoint_id: int, probe_ppl: float, probe_set: str | None = None) -> Checkpoint:
        """Record the probe perplexity once it has been measured, and which probe measured it."""
        with self._write() as conn:
            self._require(conn, "checkpoints", checkpoint_id)
            conn.execute("UPDATE checkpoints SET probe_ppl = ?, probe_set = ? WHERE id = ?",
                         (float(probe_ppl), probe_set, checkpoint_id))
            return _record(Checkpoint, conn.execute("SELECT * FROM checkpoints WHERE id = ?",
                                                    (checkpoint_id,)).fetchone())

    def mark_checkpoint_deleted(self, checkpoint_id: int) -> Checkpoint:
        """The file was removed (pruning); its story stays. Marking twice keeps the first time."""
        with self._write() as conn:
            self._require(conn, "checkpoints", checkpoint_id)
            conn.execute("UPDATE checkpoints SET deleted_at = COALESCE(deleted_at, ?) WHERE id = ?",
                         (self._stamp(), checkpoint_id))
            return _record(Checkpoint, conn.execute("SELECT * FROM checkpoints WHERE id = ?",
                                                    (checkpoint_id,)).fetchone())

    def mark_checkpoint_damaged(self, checkpoint_id: int, why: str) -> Checkpoint:
        """A load found the checkpoint's file damaged: the list marks it so, with the reason (the
        latest reason counts; a file that loads again later is unmarked with ``why=''``)."""
        _check_text("damage note", why)
        with self._write() as conn:
            self._require(conn, "checkpoints", checkpoint_id)
            conn.execute("UPDATE checkpoints SET damaged = ? WHERE id = ?", (why or None, checkpoint_id))
            return _record(Checkpoint, conn.execute("SELECT * FROM checkpoints WHERE id = ?",
                                                    (checkpoint_id,)).fetchone())

    def get_checkpoint(self, checkpoint_id: int) -> Checkpoint | None:
        with self._read() as conn:
            return _record(Checkpoint, conn.execute("SELECT * FROM checkpoints WHERE id = ?",
                                                    (checkpoint_id,)).fetchone())

    def checkpoints(self, *, include_deleted: bool = False, reason: str | None = None) -> list[Checkpoint]:
        """Checkpoints oldest first (the restore menu), without deleted ones unless asked."""
        with self._read() as conn:
            rows = conn.execute("""
                SELECT * FROM checkpoints WHERE (? OR deleted_at IS NULL) AND (? IS NULL OR reason = ?) ORDER BY id
            """, (bool(include_deleted), reason, reason)).fetchall()
            return _records(Checkpoint, rows)

    def latest_checkpoint(self, reason: str | None = None) -> Checkpoint | None:
        """The most recently recorded checkpoint whose file still exists (optionally of one reason)."""
        with self._read() as conn:
            return _record(Checkpoint, conn.execute("""
                SELECT * FROM checkpoints WHERE deleted_at IS NULL AND (? IS NULL OR reason = ?)
                 ORDER BY id DESC LIMIT 1
            """, (reason, reason)).fetchone())

    # -- books --------------------------------------------------------------------------------------

    def queue_book(self, path: str | os.PathLike[str], sha256: str, bytes: int) -> Book:
        """Queue a book for the next night. Idempotent: the same file with the same content, reported
        again by the watcher, returns the row it already has (whatever its status)."""
        path_str = os.fspath(path)
        _check_text("book path", path_str)
        _check_text("sha256", sha256)
        _check_int("bytes", bytes, minimum=0)
        with self._write() as conn:
            conn.execute("INSERT INTO books (path, sha256, bytes, status, added_at) VALUES (?, ?, ?, 'queued', ?)"
                         " ON CONFLICT (path, sha256) DO NOTHING", (path_str, sha256, bytes, self._stamp()))
            return _record(Book, conn.execute("SELECT * FROM books WHERE path = ? AND sha256 = ?",
                                              (path_str, sha256)).fetchone())

    def books(self, status: str | None = None) -> list[Book]:
        if status is not None:
            _check_enum("book status", status, BOOK_STATUSES)
        with self._read() as conn:
            return _records(Book, conn.execute("SELECT * FROM books WHERE (? IS NULL OR status = ?) ORDER BY id",
                                               (status, status)).fetchall())

    def get_book(self, book_id: int) -> Book | None:
        with self._read() as conn:
            return _record(Book, conn.execute("SELECT * FROM books WHERE id = ?", (book_id,)).fetchone())

    def _finish_book(self, book_id: int, status: str, **values: Any) -> Book:
        with self._write() as conn:
            book = self._require(conn, "books", book_id)
            self._require(conn, "nights", values.get("night_id"), optional=True)
            if book["status"] != "queued":
                raise StoreError(f"book {book_id} ({book['path']}) is {book['status']}, not queued")
            conn.execute("UPDATE books SET status = ?, read_at = ?, night_id = ?, tokens = COALESCE(?, tokens),"
                         " note = COALESCE(?, note) WHERE id = ?",
                         (status, values.get("read_at"), values.get("night_id"), values.get("tokens"),
                          values.get("note"), book_id))
            return _record(Book, conn.execute("SELECT * FROM books WHERE id = ?", (book_id,)).fetchone())

    def mark_book_read(self, book_id: int, *, night_id: int | None = None, tokens: int | None = None) -> Book:
        """The book was read in an accepted night."""
        _check_int("tokens", tokens, minimum=0, optional=True)
        return self._finish_book(book_id, "read", read_at=self._stamp(), night_id=night_id, tokens=tokens)

    def refuse_book(self, book_id: int, note: str) -> Book:
        """The book will not be read (unreadable, too large, not text); ``note`` tells the owner why."""
        _check_text("note", note)
        return self._finish_book(book_id, "refused", note=note)

    # -- lessons ------------------------------------------------------------------------------------

    def _insert_lesson(self, conn: sqlite3.Connection, source: str, question: str, answer: str, *,
                       day_id: int | None, prompt_turn_id: int | None, reply_turn_id: int | None,
                       answer_tokens: int | None, budget_tokens: int | None) -> int:
        _check_enum("lesson source", source, LESSON_SOURCES)
        _check_text("lesson question", question)
        _check_text("lesson answer", answer)
        if not question.strip():
            raise StoreError("a lesson needs the question it answers; the question is empty")
        if not answer.strip():
            raise StoreError(f"a lesson needs an answer; the answer to {_quote(question)} is empty")
        _check_int("answer_tokens", answer_tokens, minimum=0, optional=True)
        _check_int("budget_tokens", budget_tokens, minimum=1, optional=True)
        day = self._require(conn, "days", day_id, optional=True)
        if budget_tokens is None and day is not None:
            budget_tokens = day["budget_tokens"]
        if answer_tokens is not None and budget_tokens is not None and answer_tokens > budget_tokens:
            raise StoreError(f"the answer to {_quote(question)} is {answer_tokens:,} tokens, longer than a day "
                             f"({budget_tokens:,} tokens): a lesson must fit in one day")
        for turn_id in (prompt_turn_id, reply_turn_id):
            turn = self._require(conn, "turns", turn_id, optional=True)
            if turn is not None and day_id is not None and turn["day_id"] != day_id:
                raise StoreError(f"turn {turn_id} belongs to another day (id {turn['day_id']}), not day id {day_id}")
        if reply_turn_id is not None:
            held = conn.execute("SELECT id, source FROM lessons WHERE reply_turn_id = ?", (reply_turn_id,)).fetchone()
            if held is not None:
                raise StoreError(f"that reply is already lesson {held['id']} ({held['source']})")
        cur = conn.execute(
            "INSERT INTO lessons (day_id, prompt_turn_id, reply_turn_id, source, question, answer, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (day_id, prompt_turn_id, reply_turn_id, source, question, answer, self._stamp()))
        return cur.lastrowid

    def add_lesson(self, question: str, answer: str, source: str = "written", *, day_id: int | None = None,
                   prompt_turn_id: int | None = None, reply_turn_id: int | None = None,
                   answer_tokens: int | None = None, budget_tokens: int | None = None) -> Lesson:
        """Record a lesson directly (a personality book read back, a script). Lessons lived in a day
        are recorded by ``record_reply`` and ``remember``, in the transaction of the reply itself.

        Refused, changing nothing: an empty question or answer, and an answer longer than a day
        (``answer_tokens`` against ``budget_tokens``, or the budget of ``day_id`` when not given:
        the day knows its budget). The message names the question and both counts."""
        with self._write() as conn:
            lesson_id = self._insert_lesson(conn, source, question, answer, day_id=day_id,
                                            prompt_turn_id=prompt_turn_id, reply_turn_id=reply_turn_id,
                                            answer_tokens=answer_tokens, budget_tokens=budget_tokens)
            return self._lessons(conn, ids=[lesson_id])[0]

    def remember(self, reply_turn_id: int) -> Lesson:
        """The owner marks a reply of the companion "remember this": it becomes a lesson (source
        'remember') whose question is the owner's message it answered. Refused for a turn that is not
        the companion's reply to an owner message, and for a reply that is already a lesson (every
        correction and written reply already is one), naming that lesson."""
        with self._write() as conn:
            turn = self._require(conn, "turns", reply_turn_id)
            choice = conn.execute("SELECT * FROM choices WHERE turn_id = ? ORDER BY id DESC LIMIT 1",
                                  (reply_turn_id,)).fetchone()
            prompt = None
            if choice is not None and choice["prompt_turn_id"] is not None:
                prompt = conn.execute("SELECT * FROM turns WHERE id = ?", (choice["prompt_turn_id"],)).fetchone()
            if turn["role"] != "companion" or prompt is None or prompt["role"] != "owner":
                raise StoreError(f"turn {reply_turn_id} is not the companion's reply to a message of yours; "
                                 f"only such a reply can be remembered")
            lesson_id = self._insert_lesson(conn, "remember", prompt["text"], turn["text"], day_id=turn["day_id"],
                                            prompt_turn_id=prompt["id"], reply_turn_id=turn["id"],
                                            answer_tokens=turn["tokens"], budget_tokens=None)
            return self._lessons(conn, ids=[lesson_id])[0]

    def lesson_for_turn(self, reply_turn_id: int) -> Lesson | None:
        """The lesson a reply turn became, if any."""
        with self._read() as conn:
            row = conn.execute("SELECT id FROM lessons WHERE reply_turn_id = ?", (reply_turn_id,)).fetchone()
            return None if row is None else self._lessons(conn, ids=[row["id"]])[0]

    def get_lesson(self, lesson_id: int, *, history: int | None = None) -> Lesson | None:
        with self._read() as conn:
            found = self._lessons(conn, ids=[lesson_id], history=history)
            return found[0] if found else None

    def lessons(self, *, include_retired: bool = True, history: int | None = None) -> list[Lesson]:
        """Every lesson, oldest first, with its phrasings, its recall night by night (only the last
        ``history`` nights when given; the status always reads them all), its schedule and status."""
        _check_int("history", history, minimum=0, optional=True)
        with self._read() as conn:
            found = self._lessons(conn, history=history)
        return found if include_retired else [lesson for lesson in found if not lesson.retired]

    def due_lessons(self, day_number: int, *, night_id: int | None = None) -> list[Lesson]:
        """The lessons the night of day ``day_number`` teaches and tests: not retired, and either
        never scheduled (new), scheduled for this day or earlier (a missed night does not skip
        a lesson), or not in the weights (a restore went back before it: teach it again whatever
        its schedule said). The night reads this list once, at its start, and keeps it: with ``night_id``, a
        lesson retired (or un-retired) while that night was running counts as it was when the
        night began, so retiring takes effect the next night."""
        _check_int("day number", day_number, minimum=1)
        with self._read() as conn:
            self._require(conn, "nights", night_id, optional=True)
            found = self._lessons(conn, as_of_night=night_id)
        return [lesson for lesson in found if not lesson.retired
                and (lesson.schedule is None or lesson.schedule.due_day <= day_number or not lesson.in_weights)]

    def lesson_context(self, lesson_id: int) -> list[TurnRecord]:
        """The turns of the lesson's day before its answer (its question, and the lines injected
        after it, included): format them with ``companion.transcript`` to teach the lesson in its
        own day. Empty for a lesson with no day (one read back from a book)."""
        with self._read() as conn:
            lesson = conn.execute("SELECT * FROM lessons WHERE id = ?", (lesson_id,)).fetchone()
            if lesson is None:
                raise StoreError(f"no lesson with id {lesson_id}")
            if lesson["day_id"] is None:
                return []
            end = lesson["reply_turn_id"] or lesson["prompt_turn_id"]
            if end is None:
                return []
            seq = conn.execute("SELECT seq FROM turns WHERE id = ?", (end,)).fetchone()["seq"]
            op = "<" if lesson["reply_turn_id"] is not None else "<="
            return _records(TurnRecord, conn.execute(f"SELECT * FROM turns WHERE day_id = ? AND seq {op} ? ORDER BY seq",
                                               (lesson["day_id"], seq)).fetchall())

    def retire_lesson(self, lesson_id: int, retired: bool = True) -> Lesson:
        """Retire a lesson (or bring it back with ``retired=False``): nights stop teaching and testing
        it. An appended event; the lesson and its history stay. Retiring a retired lesson changes
        nothing. If a night is running it keeps the lesson it read at its start (see
        ``due_lessons``): the change takes effect the next night."""
        with self._write() as conn:
            self._require(conn, "lessons", lesson_id)
            latest = conn.execute("SELECT kind FROM lesson_events WHERE lesson_id = ? ORDER BY id DESC LIMIT 1",
                                  (lesson_id,)).fetchone()
            now_retired = latest is not None and latest["kind"] == "retire"
            if now_retired != bool(retired):
                running = conn.execute("SELECT id FROM nights WHERE status = 'running'").fetchone()
                conn.execute("INSERT INTO lesson_events (lesson_id, kind, during_night_id, created_at)"
                             " VALUES (?, ?, ?, ?)", (lesson_id, "retire" if retired else "unretire",
                                                      None if running is None else running["id"], self._stamp()))
            return self._lessons(conn, ids=[lesson_id])[0]

    def add_phrasing(self, lesson_id: int, text: str) -> PhrasingAdded:
        """Another way the owner asks this lesson's question ("also asked as ...").

        Refused: empty text, or the lesson's own question or phrasing again (compared without case
        or extra spaces). Allowed but named: the question (or a phrasing) of another lesson; both
        lessons are kept, apart by their answers, and ``note`` says which lesson shares it."""
        _check_text("phrasing", text)
        if not text.strip():
            raise StoreError("a phrasing needs some words; this one is empty")
        key = _question_key(text)
        with self._write() as conn:
            lesson = self._require(conn, "lessons", lesson_id)
            own = [lesson["question"]] + [row[0] for row in conn.execute(
                "SELECT text FROM lesson_phrasings WHERE lesson_id = ?", (lesson_id,))]
            if any(_question_key(q) == key for q in own):
                raise StoreError(f"lesson {lesson_id} is already asked as {_quote(text)}")
            shared = sorted({row["id"] for row in conn.execute("""
                SELECT id, question AS q FROM lessons WHERE id <> ?
                UNION ALL SELECT lesson_id, text FROM lesson_phrasings WHERE lesson_id <> ?
            """, (lesson_id, lesson_id)) if _question_key(row["q"]) == key})
            cur = conn.execute("INSERT INTO lesson_phrasings (lesson_id, text, created_at) VALUES (?, ?, ?)",
                               (lesson_id, text, self._stamp()))
            phrasing = _record(Phrasing, conn.execute("SELECT * FROM lesson_phrasings WHERE id = ?",
                                                      (cur.lastrowid,)).fetchone())
            note = None
            if shared:
                answers = [conn.execute("SELECT answer FROM lessons WHERE id = ?", (i,)).fetchone()[0] for i in shared]
                others = "; ".join(f"lesson {i} (answer {_quote(a)})" for i, a in zip(shared, answers))
                note = (f"{_quote(text)} is also how you ask {others}; kept apart by their answers "
                        f"(this one: {_quote(lesson['answer'])})")
            return PhrasingAdded(phrasing, tuple(shared), note)

    def phrasings(self, lesson_id: int) -> list[Phrasing]:
        with self._read() as conn:
            return _records(Phrasing, conn.execute("SELECT * FROM lesson_phrasings WHERE lesson_id = ? ORDER BY id",
                                                   (lesson_id,)).fetchall())

    def record_recalls(self, night_id: int, results: Sequence[Mapping[str, Any]]) -> list[Recall]:
        """A night's recall test, all lessons in one transaction. Each result is a mapping with
        ``lesson_id``, ``hits``, ``samples`` and optionally ``phrasing_id`` (None: the question) and
        ``crosstalk`` (replies that said another lesson's answer). Each (lesson, phrasing) is tested
        once a night; hits and cross-talk cannot exceed the samples."""
        rows = []
        for i, result in enumerate(results):
            if not isinstance(result, Mapping):
                raise StoreError(f"recall result {i} must be a mapping, not {type(result).__name__}")
            lesson_id = _check_int(f"lesson id (recall result {i})", result.get("lesson_id"))
            phrasing_id = _check_int(f"phrasing id (recall result {i})", result.get("phrasing_id"), optional=True)
            samples = _check_int(f"samples (recall result {i})", result.get("samples"), minimum=0)
            hits = _check_int(f"hits (recall result {i})", result.get("hits"), minimum=0)
            crosstalk = _check_int(f"crosstalk (recall result {i})", result.get("crosstalk", 0), minimum=0)
            if hits > samples or crosstalk > samples:
                raise StoreError(f"recall result {i} of lesson {lesson_id}: {hits} hits and {crosstalk} cross-talk "
                                 f"out of {samples} samples")
            rows.append((lesson_id, phrasing_id, hits, samples, crosstalk))
        with self._write() as conn:
            self._require(conn, "nights", night_id)
            stamp = self._stamp()
            ids = []
            for lesson_id, phrasing_id, hits, samples, crosstalk in rows:
                self._require(conn, "lessons", lesson_id)
                phrasing = self._require(conn, "lesson_phrasings", phrasing_id, optional=True)
                if phrasing is not None and phrasing["lesson_id"] != lesson_id:
                    raise StoreError(f"phrasing {phrasing_id} belongs to lesson {phrasing['lesson_id']}, "
                                     f"not lesson {lesson_id}")
                if conn.execute("SELECT 1 FROM lesson_recalls WHERE night_id = ? AND lesson_id = ?"
                                " AND phrasing_id IS ?", (night_id, lesson_id, phrasing_id)).fetchone():
                    raise StoreError(f"night {night_id} already recorded the recall of lesson {lesson_id}"
                                     + ("" if phrasing_id is None else f", phrasing {phrasing_id}"))
                cur = conn.execute(
                    "INSERT INTO lesson_recalls (lesson_id, night_id, phrasing_id, hits, samples, crosstalk, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (lesson_id, night_id, phrasing_id, hits, samples, crosstalk, stamp))
                ids.append(cur.lastrowid)
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            return _records(Recall, conn.execute(f"SELECT * FROM lesson_recalls WHERE id IN ({marks}) ORDER BY id",
                                                 ids).fetchall())

    def recalls(self, *, lesson_id: int | None = None, night_id: int | None = None) -> list[Recall]:
        """Recall rows of one lesson and/or one night, oldest first."""
        with self._read() as conn:
            return _records(Recall, conn.execute(
                "SELECT * FROM lesson_recalls WHERE (? IS NULL OR lesson_id = ?) AND (? IS NULL OR night_id = ?)"
                " ORDER BY id", (lesson_id, lesson_id, night_id, night_id)).fetchall())

    def schedule_lessons(self, schedules: Mapping[int, tuple[int, int]], *, night_id: int | None = None
                         ) -> list[Schedule]:
        """The night's plan for when lessons come back: ``{lesson_id: (interval_nights, due_day)}``,
        one transaction. ``due_day`` is the number of the day whose night teaches it next."""
        rows = []
        for lesson_id, plan in schedules.items():
            _check_int("lesson id", lesson_id)
            if not isinstance(plan, (tuple, list)) or len(plan) != 2:
                raise StoreError(f"schedule of lesson {lesson_id} must be (interval_nights, due_day), not {plan!r}")
            interval = _check_int(f"interval_nights of lesson {lesson_id}", plan[0], minimum=1)
            due = _check_int(f"due_day of lesson {lesson_id}", plan[1], minimum=1)
            rows.append((lesson_id, interval, due))
        with self._write() as conn:
            self._require(conn, "nights", night_id, optional=True)
            stamp = self._stamp()
            ids = []
            for lesson_id, interval, due in rows:
                self._require(conn, "lessons", lesson_id)
                ids.append(conn.execute(
                    "INSERT INTO lesson_schedule (lesson_id, night_id, interval_nights, due_day, created_at)"
                    " VALUES (?, ?, ?, ?, ?)", (lesson_id, night_id, interval, due, stamp)).lastrowid)
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            return _records(Schedule, conn.execute(f"SELECT * FROM lesson_schedule WHERE id IN ({marks}) ORDER BY id",
                                                   ids).fetchall())

    def _lessons(self, conn: sqlite3.Connection, *, ids: Sequence[int] | None = None, history: int | None = None,
                 as_of_night: int | None = None) -> list[Lesson]:
        """Build full ``Lesson`` records in a few queries (one per kind of row, not one per lesson)."""
        if ids is not None:
            for lesson_id in ids:
                _check_int("lesson id", lesson_id)
            marks = ",".join("?" * len(ids)) or "NULL"
            where, params = f"WHERE l.id IN ({marks})", list(ids)
        else:
            where, params = "", []
        # The answer in force: an amended reply's latest text (the lesson row keeps what was first taught).
        rows = conn.execute(f"""
            SELECT l.*, d.number AS day_number, d.in_weights AS day_in_weights,
                   (SELECT c.text FROM choices c WHERE c.turn_id = l.reply_turn_id AND c.text IS NOT NULL
                     ORDER BY c.id DESC LIMIT 1) AS amended_answer
              FROM lessons l LEFT JOIN days d ON d.id = l.day_id {where} ORDER BY l.id
        """, params).fetchall()
        if not rows:
            return []
        # All lessons: no id list (SQLite caps the number of bound values; a lifetime may pass it).
        found = [row["id"] for row in rows] if ids is not None else []
        marks = ",".join("?" * len(found)) if ids is not None else "SELECT id FROM lessons"
        retired = {row["lesson_id"]: row["kind"] == "retire" for row in conn.execute(f"""
            SELECT e.lesson_id, e.kind FROM lesson_events e
             WHERE e.id = (SELECT MAX(e2.id) FROM lesson_events e2 WHERE e2.lesson_id = e.lesson_id
                             AND (? IS NULL OR e2.during_night_id IS NOT ?))
               AND e.lesson_id IN ({marks})
        """, (as_of_night, as_of_night, *found))}
        phrasings: dict[int, list[Phrasing]] = {}
        for row in conn.execute(f"SELECT * FROM lesson_phrasings WHERE lesson_id IN ({marks}) ORDER BY id", found):
            phrasings.setdefault(row["lesson_id"], []).append(_record(Phrasing, row))
        nights: dict[int, list[LessonNight]] = {}
        for row in conn.execute(f"""
            SELECT r.lesson_id, r.night_id, d.number AS day_number, n.status = 'accepted' AS accepted,
                   SUM(r.hits) AS hits, SUM(r.samples) AS samples, SUM(r.crosstalk) AS crosstalk,
                   d.in_weights AS in_weights
              FROM lesson_recalls r JOIN nights n ON n.id = r.night_id JOIN days d ON d.id = n.day_id
             WHERE r.lesson_id IN ({marks}) GROUP BY r.lesson_id, r.night_id ORDER BY r.night_id
        """, found):
            nights.setdefault(row["lesson_id"], []).append(LessonNight(
                row["night_id"], row["day_number"], bool(row["accepted"]), row["hits"], row["samples"],
                row["crosstalk"], bool(row["in_weights"])))
        schedules = {row["lesson_id"]: _record(Schedule, row) for row in conn.execute(f"""
            SELECT s.* FROM lesson_schedule s
             WHERE s.id = (SELECT MAX(s2.id) FROM lesson_schedule s2 WHERE s2.lesson_id = s.lesson_id)
               AND s.lesson_id IN ({marks})
        """, found)}
        lessons = []
        for row in rows:
            lesson_id = row["id"]
            is_retired = retired.get(lesson_id, False)
            full = nights.get(lesson_id, [])
            shown = full if history is None else full[len(full) - history:] if history else []
            lessons.append(Lesson(
                id=lesson_id, day_id=row["day_id"], day_number=row["day_number"],
                prompt_turn_id=row["prompt_turn_id"], reply_turn_id=row["reply_turn_id"], source=row["source"],
                question=row["question"], answer=row["amended_answer"] or row["answer"], created_at=row["created_at"],
                retired=is_retired,
                in_weights=bool(row["day_in_weights"]) if row["day_id"] is not None else True,
                phrasings=tuple(phrasings.get(lesson_id, ())), history=tuple(shown),
                schedule=schedules.get(lesson_id), status=lesson_status(full, retired=is_retired)))
        return lessons

    # -- search -------------------------------------------------------------------------------------

    def search(self, text: str, limit: int = 50, *, prefix: bool = False,
               kinds: Sequence[str] = ("turn", "candidate", "dream")) -> list[Hit]:
        """Find past turns, candidates and dreams containing every word of ``text``, best first.

        ``text`` is plain text (see ``fts_query``): nothing the owner types acts as a search operator
        or raises. ``prefix=True`` lets each word match as the start of a word (search as you type)."""
        _check_text("search text", text)
        _check_int("limit", limit, minimum=0)
        for kind in kinds:
            _check_enum("search kind", kind, ("turn", "candidate", "dream"))
        query = fts_query(text, prefix=prefix)
        if query is None or not kinds or limit == 0:
            return []
        parts = []
        params: list[Any] = []
        for kind, table in (("turn", "turns"), ("candidate", "candidates"), ("dream", "dreams")):
            if kind not in kinds:
                continue
            parts.append(f"""
                SELECT '{kind}' AS kind, x.id AS id, d.id AS day_id, d.number AS day_number,
                       snippet({table}_fts, 0, ?, ?, '…', 16) AS snippet, bm25({table}_fts) AS score
                  FROM {table}_fts JOIN {table} x ON x.id = {table}_fts.rowid JOIN days d ON d.id = x.day_id
                 WHERE {table}_fts MATCH ?""")
            params += [_MARK_START, _MARK_END, query]
        sql = " UNION ALL ".join(parts) + " ORDER BY score, day_number DESC, id DESC LIMIT ?"
        with self._read() as conn:
            rows = conn.execute(sql, (*params, limit)).fetchall()
        hits = []
        for row in rows:
            snippet, spans = _unmark(row["snippet"] or "")
            hits.append(Hit(row["kind"], row["id"], row["day_id"], row["day_number"], snippet, spans))
        return hits

    # -- backup -------------------------------------------------------------------------------------

    def backup_to(self, path: str | os.PathLike[str]) -> Path:
        """Copy the whole store to ``path`` while it stays in use (SQLite's online backup, read through
        a separate connection, so other threads keep writing). The copy is written beside the target
        and renamed into place, so a crash never leaves a half backup; it is a single self-contained
        file (rollback journal, no -wal)."""
        dest = Path(path)
        if dest.exists() and dest.resolve() == self.path.resolve():
            raise StoreError(f"cannot back up {self.path} onto itself")
        self._connection()  # refuse on a closed store
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            schema.copy_database(self.path, tmp)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except (sqlite3.Error, OSError) as e:
            for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                try:
                    leftover.unlink()
                except OSError:
                    pass
            why = disk_full_sentence(dest) if is_disk_full(e) else e
            raise StoreError(f"cannot back up {self.path} to {dest}: {why}") from e
        return dest


def _make_store_private(path: Path) -> None:
    """The store and its -wal and -shm are 0600 whatever the umask (SQLite gives the -wal and -shm the
    mode of the main file, so creating that one private is most of it).

    An existing store is only chmod-ed, never opened: closing any descriptor of the file drops every
    POSIX lock this process holds on it, SQLite's included. A second connection opened that way (a
    poller, the trainer thread) once let a closing connection think it was the last one and delete the
    WAL under a live writer, whose commits then went to an unlinked file."""
    if path.exists():
        make_private(path)
    else:
        create_private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        make_private(Path(f"{path}{suffix}"))


def _explain(error: sqlite3.Error, path: Path) -> str:
    """SQLite's words, and the plain reason when the disk is full ("disk I/O error" says too little)."""
    text = str(error)
    if is_disk_full(error) or "disk i/o error" in text.lower():
        try:
            import shutil

            full = shutil.disk_usage(path.parent).free < 1024 * 1024
        except OSError:
            full = False
        if full or is_disk_full(error):
            return f"{text}: {disk_full_sentence(path)}"
    return text


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open, without hiding the error that brought us here."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
