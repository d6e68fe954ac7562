"""The store's schema and its history: the SQL of every version, applied in order (``MIGRATIONS``),
and the one way to copy a whole database (backups, recovery). Migrations are history: never edit one
that has shipped, append a new one; each is self-contained so that branches can be renumbered."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from companion.safety.private import create_private_file

from companion.store.records import APPLICATION_ID

# ---------------------------------------------------------------------------------------------------
# Schema and migrations.

@dataclass(frozen=True)
class Migration:
    """One step of the schema's history: ``apply`` is an SQL script, or a function given the
    connection inside the migration's transaction (it must use ``execute``, never ``executescript``,
    which would commit)."""
    version: int
    description: str
    apply: str | Callable[[sqlite3.Connection], None]


_V1 = f"""
PRAGMA application_id = {APPLICATION_ID};

CREATE TABLE checkpoints (
    id          INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL CHECK (path <> ''),
    reason      TEXT    NOT NULL CHECK (reason <> ''),
    day_id      INTEGER REFERENCES days(id),
    step        INTEGER NOT NULL DEFAULT 0 CHECK (step >= 0),
    parent_id   INTEGER REFERENCES checkpoints(id),
    created_at  TEXT    NOT NULL,
    checksum    TEXT    NOT NULL,
    probe_ppl   REAL,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    deleted_at  TEXT
);
CREATE UNIQUE INDEX checkpoints_live_path ON checkpoints(path) WHERE deleted_at IS NULL;
CREATE INDEX checkpoints_day ON checkpoints(day_id);
CREATE INDEX checkpoints_parent ON checkpoints(parent_id);

CREATE TABLE days (
    id             INTEGER PRIMARY KEY,
    number         INTEGER NOT NULL UNIQUE CHECK (number >= 1),
    opened_at      TEXT    NOT NULL,
    closed_at      TEXT,
    close_reason   TEXT    CHECK (close_reason IN ('full', 'goodnight')),
    budget_tokens  INTEGER NOT NULL CHECK (budget_tokens > 0),
    checkpoint_id  INTEGER REFERENCES checkpoints(id),
    in_weights     INTEGER NOT NULL DEFAULT 1 CHECK (in_weights IN (0, 1)),
    CHECK ((closed_at IS NULL) = (close_reason IS NULL))
);
-- At most one open day: every open day has the same indexed value, so a second one collides.
CREATE UNIQUE INDEX days_one_open ON days((closed_at IS NULL)) WHERE closed_at IS NULL;
CREATE INDEX days_checkpoint ON days(checkpoint_id);

CREATE TABLE turns (
    id            INTEGER PRIMARY KEY,
    day_id        INTEGER NOT NULL REFERENCES days(id),
    seq           INTEGER NOT NULL CHECK (seq >= 0),
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'companion', 'inner')),
    text          TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    candidate_id  INTEGER REFERENCES candidates(id),
    tokens        INTEGER CHECK (tokens IS NULL OR tokens >= 0),
    created_at    TEXT    NOT NULL,
    UNIQUE (day_id, seq)
);
CREATE INDEX turns_candidate ON turns(candidate_id);

CREATE TABLE candidates (
    id                  INTEGER PRIMARY KEY,
    day_id              INTEGER NOT NULL REFERENCES days(id),
    prompt_turn_id      INTEGER REFERENCES turns(id),
    round               INTEGER NOT NULL CHECK (round >= 0),
    slot                INTEGER NOT NULL CHECK (slot >= 0),
    role                TEXT    NOT NULL CHECK (role IN ('companion', 'inner')),
    text                TEXT    NOT NULL,
    finish              TEXT    NOT NULL CHECK (finish IN ('end', 'length', 'stopped')),
    temperature         REAL,
    top_k               INTEGER,
    top_p               REAL,
    repetition_penalty  REAL,
    max_tokens          INTEGER,
    seed                INTEGER,
    checkpoint_id       INTEGER REFERENCES checkpoints(id),
    created_at          TEXT    NOT NULL,
    UNIQUE (prompt_turn_id, round, slot)
);
CREATE INDEX candidates_day ON candidates(day_id);
CREATE INDEX candidates_checkpoint ON candidates(checkpoint_id);

CREATE TABLE choices (
    id              INTEGER PRIMARY KEY,
    prompt_turn_id  INTEGER REFERENCES turns(id),
    candidate_id    INTEGER REFERENCES candidates(id),
    kind            TEXT    NOT NULL CHECK (kind IN ('pick', 'correction', 'written')),
    turn_id         INTEGER NOT NULL REFERENCES turns(id),
    created_at      TEXT    NOT NULL,
    CHECK (kind = 'written' OR candidate_id IS NOT NULL)
);
CREATE INDEX choices_prompt ON choices(prompt_turn_id);
CREATE INDEX choices_candidate ON choices(candidate_id);
CREATE INDEX choices_turn ON choices(turn_id);

CREATE TABLE ratings (
    id            INTEGER PRIMARY KEY,
    candidate_id  INTEGER NOT NULL REFERENCES candidates(id),
    stars         INTEGER CHECK (stars IS NULL OR stars BETWEEN 1 AND 4),
    created_at    TEXT    NOT NULL
);
CREATE INDEX ratings_candidate ON ratings(candidate_id, id);

CREATE TABLE corrections (
    id            INTEGER PRIMARY KEY,
    candidate_id  INTEGER NOT NULL REFERENCES candidates(id),
    text          TEXT    NOT NULL,
    created_at    TEXT    NOT NULL
);
CREATE INDEX corrections_candidate ON corrections(candidate_id);

CREATE TABLE nights (
    id                  INTEGER PRIMARY KEY,
    day_id              INTEGER NOT NULL REFERENCES days(id),
    started_at          TEXT    NOT NULL,
    finished_at         TEXT,
    status              TEXT    NOT NULL,
    reason              TEXT,
    report              TEXT    CHECK (report IS NULL OR json_valid(report)),
    pre_checkpoint_id   INTEGER REFERENCES checkpoints(id),
    post_checkpoint_id  INTEGER REFERENCES checkpoints(id)
);
-- At most one night running: the trainer is one thread.
CREATE UNIQUE INDEX nights_one_running ON nights((status = 'running')) WHERE status = 'running';
CREATE INDEX nights_day ON nights(day_id);
CREATE INDEX nights_pre ON nights(pre_checkpoint_id);
CREATE INDEX nights_post ON nights(post_checkpoint_id);

CREATE TABLE dreams (
    id          INTEGER PRIMARY KEY,
    day_id      INTEGER NOT NULL REFERENCES days(id),
    night_id    INTEGER REFERENCES nights(id),
    text        TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('model', 'teacher')),
    created_at  TEXT    NOT NULL
);
CREATE INDEX dreams_day ON dreams(day_id);
CREATE INDEX dreams_night ON dreams(night_id);

CREATE TABLE annotations (
    id          INTEGER PRIMARY KEY,
    turn_id     INTEGER REFERENCES turns(id),
    dream_id    INTEGER REFERENCES dreams(id),
    line_index  INTEGER,
    tags        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
    note        TEXT,
    created_at  TEXT    NOT NULL,
    CHECK ((turn_id IS NOT NULL AND dream_id IS NULL AND line_index IS NULL)
        OR (turn_id IS NULL AND dream_id IS NOT NULL AND line_index IS NOT NULL AND line_index >= 0))
);
CREATE INDEX annotations_turn ON annotations(turn_id, id);
CREATE INDEX annotations_dream ON annotations(dream_id, line_index, id);

CREATE TABLE books (
    id        INTEGER PRIMARY KEY,
    path      TEXT    NOT NULL,
    sha256    TEXT    NOT NULL,
    bytes     INTEGER NOT NULL CHECK (bytes >= 0),
    tokens    INTEGER CHECK (tokens IS NULL OR tokens >= 0),
    status    TEXT    NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'read', 'refused')),
    note      TEXT,
    added_at  TEXT    NOT NULL,
    read_at   TEXT,
    night_id  INTEGER REFERENCES nights(id),
    UNIQUE (path, sha256)
);
CREATE INDEX books_status ON books(status);
CREATE INDEX books_night ON books(night_id);

-- What the owner did is never rewritten or removed.
CREATE TRIGGER turns_append_only_u BEFORE UPDATE ON turns
BEGIN SELECT RAISE(ABORT, 'turns are append-only'); END;
CREATE TRIGGER turns_append_only_d BEFORE DELETE ON turns
BEGIN SELECT RAISE(ABORT, 'turns are append-only'); END;
CREATE TRIGGER candidates_append_only_u BEFORE UPDATE ON candidates
BEGIN SELECT RAISE(ABORT, 'candidates are never overwritten'); END;
CREATE TRIGGER candidates_append_only_d BEFORE DELETE ON candidates
BEGIN SELECT RAISE(ABORT, 'candidates are never overwritten'); END;
CREATE TRIGGER choices_append_only_u BEFORE UPDATE ON choices
BEGIN SELECT RAISE(ABORT, 'choices are append-only'); END;
CREATE TRIGGER choices_append_only_d BEFORE DELETE ON choices
BEGIN SELECT RAISE(ABORT, 'choices are append-only'); END;
CREATE TRIGGER ratings_append_only_u BEFORE UPDATE ON ratings
BEGIN SELECT RAISE(ABORT, 'ratings are append-only'); END;
CREATE TRIGGER ratings_append_only_d BEFORE DELETE ON ratings
BEGIN SELECT RAISE(ABORT, 'ratings are append-only'); END;
CREATE TRIGGER corrections_append_only_u BEFORE UPDATE ON corrections
BEGIN SELECT RAISE(ABORT, 'corrections are append-only'); END;
CREATE TRIGGER corrections_append_only_d BEFORE DELETE ON corrections
BEGIN SELECT RAISE(ABORT, 'corrections are append-only'); END;
CREATE TRIGGER annotations_append_only_u BEFORE UPDATE ON annotations
BEGIN SELECT RAISE(ABORT, 'annotations are append-only'); END;
CREATE TRIGGER annotations_append_only_d BEFORE DELETE ON annotations
BEGIN SELECT RAISE(ABORT, 'annotations are append-only'); END;

-- Full-text search: external-content FTS5 tables kept in sync by triggers. The update and delete
-- triggers cannot fire while the append-only guards stand, but they keep the index right if a later
-- migration ever lifts a guard.
CREATE VIRTUAL TABLE turns_fts USING fts5(
    text, content='turns', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns
BEGIN INSERT INTO turns_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns
BEGIN INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TRIGGER turns_fts_au AFTER UPDATE OF text ON turns
BEGIN
    INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO turns_fts(rowid, text) VALUES (new.id, new.text);
END;

CREATE VIRTUAL TABLE candidates_fts USING fts5(
    text, content='candidates', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER candidates_fts_ai AFTER INSERT ON candidates
BEGIN INSERT INTO candidates_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER candidates_fts_ad AFTER DELETE ON candidates
BEGIN INSERT INTO candidates_fts(candidates_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TRIGGER candidates_fts_au AFTER UPDATE OF text ON candidates
BEGIN
    INSERT INTO candidates_fts(candidates_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO candidates_fts(rowid, text) VALUES (new.id, new.text);
END;

CREATE VIRTUAL TABLE dreams_fts USING fts5(
    text, content='dreams', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER dreams_fts_ai AFTER INSERT ON dreams
BEGIN INSERT INTO dreams_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER dreams_fts_ad AFTER DELETE ON dreams
BEGIN INSERT INTO dreams_fts(dreams_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TRIGGER dreams_fts_au AFTER UPDATE OF text ON dreams
BEGIN
    INSERT INTO dreams_fts(dreams_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO dreams_fts(rowid, text) VALUES (new.id, new.text);
END;
"""


# Lessons: what the owner taught on purpose. Self-contained (one entry in MIGRATIONS) so that it can be
# renumbered if another branch adds a migration first.
_LESSONS = """
CREATE TABLE lessons (
    id              INTEGER PRIMARY KEY,
    day_id          INTEGER REFERENCES days(id),
    prompt_turn_id  INTEGER REFERENCES turns(id),
    reply_turn_id   INTEGER REFERENCES turns(id),
    source          TEXT    NOT NULL CHECK (source IN ('correction', 'written', 'remember', 'book')),
    question        TEXT    NOT NULL CHECK (question <> ''),
    answer          TEXT    NOT NULL CHECK (answer <> ''),
    created_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX lessons_reply_turn ON lessons(reply_turn_id) WHERE reply_turn_id IS NOT NULL;
CREATE INDEX lessons_day ON lessons(day_id);

CREATE TABLE lesson_phrasings (
    id          INTEGER PRIMARY KEY,
    lesson_id   INTEGER NOT NULL REFERENCES lessons(id),
    text        TEXT    NOT NULL CHECK (text <> ''),
    created_at  TEXT    NOT NULL
);
CREATE INDEX lesson_phrasings_lesson ON lesson_phrasings(lesson_id, id);

-- Retiring (and un-retiring) is an event; the latest counts. during_night_id: the night that was
-- running when it happened, which keeps the lesson it had read at its start.
CREATE TABLE lesson_events (
    id               INTEGER PRIMARY KEY,
    lesson_id        INTEGER NOT NULL REFERENCES lessons(id),
    kind             TEXT    NOT NULL CHECK (kind IN ('retire', 'unretire')),
    during_night_id  INTEGER REFERENCES nights(id),
    created_at       TEXT    NOT NULL
);
CREATE INDEX lesson_events_lesson ON lesson_events(lesson_id, id);

CREATE TABLE lesson_recalls (
    id           INTEGER PRIMARY KEY,
    lesson_id    INTEGER NOT NULL REFERENCES lessons(id),
    night_id     INTEGER NOT NULL REFERENCES nights(id),
    phrasing_id  INTEGER REFERENCES lesson_phrasings(id),
    hits         INTEGER NOT NULL CHECK (hits >= 0),
    samples      INTEGER NOT NULL CHECK (samples >= 0 AND hits <= samples),
    crosstalk    INTEGER NOT NULL DEFAULT 0 CHECK (crosstalk >= 0 AND crosstalk <= samples),
    created_at   TEXT    NOT NULL
);
CREATE UNIQUE INDEX lesson_recalls_once ON lesson_recalls(night_id, lesson_id, COALESCE(phrasing_id, 0));
CREATE INDEX lesson_recalls_lesson ON lesson_recalls(lesson_id, night_id);

CREATE TABLE lesson_schedule (
    id               INTEGER PRIMARY KEY,
    lesson_id        INTEGER NOT NULL REFERENCES lessons(id),
    night_id         INTEGER REFERENCES nights(id),
    interval_nights  INTEGER NOT NULL CHECK (interval_nights >= 1),
    due_day          INTEGER NOT NULL CHECK (due_day >= 1),
    created_at       TEXT    NOT NULL
);
CREATE INDEX lesson_schedule_lesson ON lesson_schedule(lesson_id, id);

-- A store lived before lessons existed: its corrections and written replies (of the companion, to an
-- owner's message) were lessons all along.
INSERT INTO lessons (day_id, prompt_turn_id, reply_turn_id, source, question, answer, created_at)
SELECT r.day_id, p.id, r.id, ch.kind, p.text, COALESCE(ch.text, r.text), ch.created_at
  FROM choices ch JOIN turns r ON r.id = ch.turn_id JOIN turns p ON p.id = ch.prompt_turn_id
 WHERE ch.kind IN ('correction', 'written') AND r.role = 'companion' AND p.role = 'owner'
   AND trim(p.text) <> '' AND trim(COALESCE(ch.text, r.text)) <> ''
   AND ch.id = (SELECT MAX(c2.id) FROM choices c2 WHERE c2.turn_id = ch.turn_id)
 ORDER BY ch.id;

CREATE TRIGGER lessons_append_only_u BEFORE UPDATE ON lessons
BEGIN SELECT RAISE(ABORT, 'lessons are append-only'); END;
CREATE TRIGGER lessons_append_only_d BEFORE DELETE ON lessons
BEGIN SELECT RAISE(ABORT, 'lessons are append-only'); END;
CREATE TRIGGER lesson_phrasings_append_only_u BEFORE UPDATE ON lesson_phrasings
BEGIN SELECT RAISE(ABORT, 'lesson phrasings are append-only'); END;
CREATE TRIGGER lesson_phrasings_append_only_d BEFORE DELETE ON lesson_phrasings
BEGIN SELECT RAISE(ABORT, 'lesson phrasings are append-only'); END;
CREATE TRIGGER lesson_events_append_only_u BEFORE UPDATE ON lesson_events
BEGIN SELECT RAISE(ABORT, 'lesson events are append-only'); END;
CREATE TRIGGER lesson_events_append_only_d BEFORE DELETE ON lesson_events
BEGIN SELECT RAISE(ABORT, 'lesson events are append-only'); END;
CREATE TRIGGER lesson_recalls_append_only_u BEFORE UPDATE ON lesson_recalls
BEGIN SELECT RAISE(ABORT, 'lesson recalls are append-only'); END;
CREATE TRIGGER lesson_recalls_append_only_d BEFORE DELETE ON lesson_recalls
BEGIN SELECT RAISE(ABORT, 'lesson recalls are append-only'); END;
CREATE TRIGGER lesson_schedule_append_only_u BEFORE UPDATE ON lesson_schedule
BEGIN SELECT RAISE(ABORT, 'lesson schedules are append-only'); END;
CREATE TRIGGER lesson_schedule_append_only_d BEFORE DELETE ON lesson_schedule
BEGIN SELECT RAISE(ABORT, 'lesson schedules are append-only'); END;
"""

# Implicit picks and amendments (self-contained: renumber freely at a merge).
# An amendment never rewrites a row: it is a new choice for the same reply turn, naming the choice it
# supersedes and carrying the reply's text (and token count) from then on. The latest choice of a turn
# is the one the night, the personality book and the day's context use.
_AMENDMENTS = """
ALTER TABLE choices ADD COLUMN implicit INTEGER NOT NULL DEFAULT 0 CHECK (implicit IN (0, 1));
ALTER TABLE choices ADD COLUMN supersedes INTEGER REFERENCES choices(id);
ALTER TABLE choices ADD COLUMN text TEXT;
ALTER TABLE choices ADD COLUMN correction_id INTEGER REFERENCES corrections(id);
ALTER TABLE choices ADD COLUMN tokens INTEGER CHECK (tokens IS NULL OR tokens >= 0);
CREATE INDEX choices_supersedes ON choices(supersedes);
CREATE INDEX choices_correction ON choices(correction_id);
"""

#: The schema's history, oldest first. Append only; the version of the last one is the current one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "days, turns, candidates, choices, ratings, corrections, annotations, dreams, "
                 "nights, checkpoints, books, full-text search", _V1),
    Migration(2, "checkpoints.probe_set: which probe measured a checkpoint's perplexity",
              "ALTER TABLE checkpoints ADD COLUMN probe_set TEXT;"),
    Migration(3, "implicit picks and amendments (a later choice supersedes an earlier one)", _AMENDMENTS),
    Migration(4, "checkpoints.damaged: why a checkpoint's file would not load, marked in the list",
              "ALTER TABLE checkpoints ADD COLUMN damaged TEXT;"),
    Migration(5, "lessons: what the owner taught, their phrasings, retirements, recall and schedule", _LESSONS),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def copy_database(source: str | os.PathLike[str], tmp: Path, *, read_only: bool = False) -> None:
    """Copy a whole SQLite database into the new private file ``tmp`` with SQLite's online backup (other
    connections may keep writing to the source), as one self-contained file (rollback journal, no
    -wal), fsynced. The caller renames ``tmp`` into place. ``read_only`` opens the source read-only."""
    create_private_file(tmp)  # a copy of the diary is as private as the diary
    uri = f"file:{Path(source)}?mode=ro" if read_only else None
    src = sqlite3.connect(uri, uri=True) if uri else sqlite3.connect(source, timeout=10.0)
    try:
        target = sqlite3.connect(tmp)
        try:
            src.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
    finally:
        src.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into whole statements (trigger bodies included), so that a migration runs
    inside one transaction with ``execute`` (``executescript`` would commit first)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().strip(";").strip():
                yield pending.strip()
            pending = ""
    if pending.strip().strip(";").strip():
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:80]!r}")

