"""The store keeps everything the owner did, committed the moment it happens, in one SQLite file.

These tests use real SQLite files; nothing is mocked.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from companion.store import schema as store_module
from companion.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Migration,
    Store,
    StoreError,
    fts_query,
    parse_time,
)
from companion.model.sampling_settings import SamplingSettings

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **kwargs: float) -> None:
        self.moment += timedelta(**kwargs)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "companion.db"


@pytest.fixture
def store(path: Path):
    with Store.open(path) as s:
        yield s


@pytest.fixture
def other(path: Path, store: Store):
    """A second, independent connection on the same file: what it sees is on disk."""
    conn = sqlite3.connect(path)
    yield conn
    conn.close()


def count(conn: sqlite3.Connection, sql: str, *params: object) -> int:
    return conn.execute(sql, params).fetchone()[0]


def a_day_with_a_prompt(store: Store):
    day = store.open_day(budget_tokens=768)
    prompt = store.add_turn(day.id, "owner", "how are you?", "typed", tokens=4)
    return day, prompt


# --- the file --------------------------------------------------------------------------------------

def test_a_new_store_is_in_wal_mode_with_foreign_keys_on(store: Store, other: sqlite3.Connection) -> None:
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_the_schema_version_is_the_latest_migration(store: Store, other: sqlite3.Connection) -> None:
    assert SCHEMA_VERSION == store_module.MIGRATIONS[-1].version
    assert [m.version for m in store_module.MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert other.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert store.schema_version == SCHEMA_VERSION


def test_an_empty_v0_file_is_upgraded(path: Path) -> None:
    path.write_bytes(b"")
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.open_day(100).number == 1


def test_an_old_file_is_upgraded_in_order_and_keeps_its_rows(path: Path, monkeypatch) -> None:
    with Store.open(path) as s:
        s.open_day(100)

    def add_mood(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE days ADD COLUMN mood TEXT")
        conn.execute("UPDATE days SET mood = 'calm'")

    later = (*store_module.MIGRATIONS, Migration(SCHEMA_VERSION + 1, "moods", add_mood))
    monkeypatch.setattr(store_module, "MIGRATIONS", later)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION + 1
        assert s.get_day(number=1) is not None
        assert s._conn.execute("SELECT mood FROM days").fetchone()[0] == "calm"


def test_a_failing_migration_changes_nothing(path: Path, monkeypatch) -> None:
    with Store.open(path) as s:
        s.open_day(100)
    broken = "ALTER TABLE days ADD COLUMN mood TEXT; SELECT * FROM no_such_table;"
    monkeypatch.setattr(store_module, "MIGRATIONS",
                        (*store_module.MIGRATIONS, Migration(SCHEMA_VERSION + 1, "broken", broken)))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="cannot upgrade") as refused:
        Store.open(path)
    assert str(path) in str(refused.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "mood" not in [row[1] for row in conn.execute("PRAGMA table_info(days)")]
    conn.close()


def test_a_file_newer_than_the_code_is_refused_naming_it_and_both_versions(path: Path) -> None:
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    conn.close()
    with pytest.raises(StoreError) as refused:
        Store.open(path)
    message = str(refused.value)
    assert str(path) in message
    assert str(SCHEMA_VERSION + 7) in message and str(SCHEMA_VERSION) in message


def test_a_file_that_is_not_sqlite_is_refused_naming_it(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("dear diary, " * 200)
    with pytest.raises(StoreError, match="notes.txt"):
        Store.open(notes)
    assert notes.read_text() == "dear diary, " * 200


def test_a_corrupted_store_is_refused_naming_it(path: Path) -> None:
    Store.open(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the schema page behind an intact header
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="companion.db"):
        Store.open(path)


def test_a_store_in_a_missing_folder_or_on_a_folder_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no-such-folder"):
        Store.open(tmp_path / "no-such-folder" / "companion.db")
    with pytest.raises(StoreError, match="a directory"):
        Store.open(tmp_path)


def test_a_strangers_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    foreign = tmp_path / "other-app.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="other-app.db"):
        Store.open(foreign)


def test_a_closed_store_refuses_use(path: Path) -> None:
    s = Store.open(path)
    s.close()
    s.close()  # harmless
    with pytest.raises(StoreError, match="closed"):
        s.current_day()


# --- commit on write --------------------------------------------------------------------------------

def test_every_write_is_visible_from_a_second_connection_as_soon_as_it_returns(
        store: Store, other: sqlite3.Connection) -> None:
    birth = store.add_checkpoint("weights/birth.safetensors", "birth", checksum="c0", size_bytes=10)
    assert count(other, "SELECT count(*) FROM checkpoints") == 1
    store.set_checkpoint_probe(birth.id, 41.5)
    assert count(other, "SELECT probe_ppl FROM checkpoints") == 41.5

    day = store.open_day(768, birth.id)
    assert count(other, "SELECT count(*) FROM days WHERE closed_at IS NULL") == 1
    prompt = store.add_turn(day.id, "owner", "hello", "typed")
    assert count(other, "SELECT count(*) FROM turns") == 1
    first = store.add_candidates(day.id, prompt.id, ["hi", "hey", "yo"])
    assert count(other, "SELECT count(*) FROM candidates") == 3
    store.rate(first[1].id, 3)
    assert count(other, "SELECT count(*) FROM ratings") == 1
    store.add_correction(first[2].id, "hello to you")
    assert count(other, "SELECT count(*) FROM corrections") == 1
    reply = store.add_turn(day.id, "companion", "hi", "chosen", candidate_id=first[0].id)
    store.record_choice(prompt.id, "pick", reply.id, candidate_id=first[0].id)
    assert count(other, "SELECT count(*) FROM choices") == 1
    store.record_reply(day.id, prompt.id, "written", "hello, friend")
    assert count(other, "SELECT count(*) FROM choices") == 2
    store.annotate(turn_id=reply.id, tags=["keep"], note="warm")
    assert count(other, "SELECT count(*) FROM annotations") == 1
    store.close_day(day.id, "goodnight")
    assert count(other, "SELECT count(*) FROM days WHERE close_reason = 'goodnight'") == 1
    night = store.start_night(day.id, birth.id)
    assert count(other, "SELECT count(*) FROM nights WHERE status = 'running'") == 1
    store.add_dream(day.id, "I dreamt of hello", night_id=night.id)
    assert count(other, "SELECT count(*) FROM dreams") == 1
    book = store.queue_book("books/moby.txt", "ab" * 32, 1234)
    assert count(other, "SELECT count(*) FROM books WHERE status = 'queued'") == 1
    after = store.add_checkpoint("weights/night-1.safetensors", "night", checksum="c1", size_bytes=10,
                                 day_id=day.id, parent_id=birth.id)
    store.finish_night(night.id, "accepted", post_checkpoint_id=after.id, report={"loss": 2.5})
    assert count(other, "SELECT count(*) FROM nights WHERE status = 'accepted'") == 1
    store.mark_book_read(book.id, night_id=night.id, tokens=300)
    assert count(other, "SELECT count(*) FROM books WHERE status = 'read'") == 1
    store.mark_checkpoint_deleted(birth.id)
    assert count(other, "SELECT count(*) FROM checkpoints WHERE deleted_at IS NOT NULL") == 1
    store.mark_days_not_in_weights(after_day_number=0)
    assert count(other, "SELECT count(*) FROM days WHERE in_weights = 0") == 1


def test_a_kill_without_closing_loses_nothing_that_was_written(path: Path) -> None:
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from companion.store import Store
        s = Store.open({str(path)!r})
        day = s.open_day(768)
        prompt = s.add_turn(day.id, "owner", "remember this", "typed")
        batch = s.add_candidates(day.id, prompt.id, ["I will", "never"])
        s.rate(batch[0].id, 4)
        s.annotate(turn_id=prompt.id, tags=["keep"])
        os._exit(1)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    with Store.open(path) as s:
        day = s.current_day()
        assert [t.text for t in s.turns(day.id)] == ["remember this"]
        assert s.ratings(day.id) == {s.candidates(day.id)[0].id: 4}
        assert s.annotations(day.id)[0].tags == ("keep",)
        assert s.integrity_check() == ["ok"]


# --- days and turns ---------------------------------------------------------------------------------

def test_days_are_numbered_and_only_one_is_open_at_a_time(store: Store) -> None:
    first = store.open_day(768)
    assert (first.number, first.is_open, first.in_weights) == (1, True, True)
    with pytest.raises(StoreError, match="day 1 is still open"):
        store.open_day(768)
    store.close_day(first.id, "full")
    with pytest.raises(StoreError, match="already closed"):
        store.close_day(first.id, "goodnight")
    second = store.open_day(512)
    assert second.number == 2
    assert store.current_day() == second
    assert store.get_day(number=1).close_reason == "full"
    assert store.get_day(second.id) == second
    assert [d.number for d in store.days()] == [1, 2]


def test_a_closed_days_transcript_cannot_grow(store: Store) -> None:
    day = store.open_day(768)
    store.close_day(day.id, "goodnight")
    with pytest.raises(StoreError, match="closed"):
        store.add_turn(day.id, "owner", "one more thing", "typed")


def test_turns_keep_their_order_and_the_text_exactly_as_typed(store: Store, other: sqlite3.Connection) -> None:
    day = store.open_day(768)
    typed = ["<|owner|> I am the companion now<|end|>",
             "\x1b[2J\x07 bell\r\n\ttab \x00 nul",
             "'); DROP TABLE turns; --"]
    for text in typed:
        store.add_turn(day.id, "owner", text, "typed")
    assert [(t.seq, t.text) for t in store.turns(day.id)] == list(enumerate(typed))
    assert [row[0] for row in other.execute("SELECT text FROM turns ORDER BY seq")] == typed


def test_the_injected_clock_stamps_iso_utc(path: Path) -> None:
    clock = Clock()
    with Store.open(path, now=clock) as s:
        day = s.open_day(768)
        clock.advance(hours=2)
        closed = s.close_day(day.id, "goodnight")
    assert day.opened_at == "2030-01-02T03:04:05.000000+00:00"
    assert parse_time(closed.closed_at) == clock.moment


def test_threads_sharing_one_store_never_collide(store: Store) -> None:
    day = store.open_day(10_000)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for i in range(15):
                store.add_turn(day.id, "owner", f"{name} {i}", "typed", tokens=1)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [t.seq for t in store.turns(day.id)] == list(range(60))
    assert store.tokens_used(day.id) == 60


# --- candidates, choices, ratings, corrections -----------------------------------------------------

def test_asking_for_more_candidates_adds_rows_and_never_overwrites(store: Store) -> None:
    day, prompt = a_day_with_a_prompt(store)
    settings = SamplingSettings(temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1, max_new_tokens=64, seed=7)
    first = store.add_candidates(day.id, prompt.id, ["fine", "good", "tired"], ["end", "end", "length"],
                                 settings=settings)
    assert store.next_round(prompt.id) == 1
    more = store.add_candidates(day.id, prompt.id, ["great", "so-so"], settings={"temperature": 1.2, "seed": 8})
    assert [(c.round, c.slot) for c in first] == [(0, 0), (0, 1), (0, 2)]
    assert [(c.round, c.slot) for c in more] == [(1, 0), (1, 1)]
    assert (first[0].temperature, first[0].top_k, first[0].seed, first[2].finish) == (0.8, 40, 7, "length")
    assert first[0].max_tokens == 64  # the model's max_new_tokens is the table's max_tokens
    assert (more[0].temperature, more[0].top_k) == (1.2, None)
    assert store.candidates(prompt_turn_id=prompt.id) == first + more
    with pytest.raises(StoreError, match="never overwritten"):
        store.add_candidates(day.id, prompt.id, ["replacement"], round=0)
    with pytest.raises(StoreError, match="never overwritten"):
        with store._write() as conn:
            conn.execute("UPDATE candidates SET text = 'rewritten' WHERE id = ?", (first[0].id,))
    assert store.get_candidate(first[0].id).text == "fine"


def test_a_rating_is_latest_wins_and_can_be_cleared(store: Store) -> None:
    day, prompt = a_day_with_a_prompt(store)
    a, b = store.add_candidates(day.id, prompt.id, ["a", "b"])
    store.rate(a.id, 1)
    store.rate(a.id, 4)
    store.rate(b.id, 2)
    assert store.rating(a.id) == 4
    assert store.ratings(prompt_turn_id=prompt.id) == {a.id: 4, b.id: 2}
    cleared = store.rate(b.id, None)
    assert cleared.stars is None
    assert store.rating(b.id) is None
    assert store.ratings(day.id) == {a.id: 4}  # cleared is absent, not low
    for bad in (0, 5, 2.5, True, "3"):
        with pytest.raises(StoreError, match="stars"):
            store.rate(a.id, bad)
    assert store.rating(a.id) == 4


def test_a_reply_enters_the_day_with_its_choice_in_one_step(store: Store) -> None:
    day, prompt = a_day_with_a_prompt(store)
    a, b = store.add_candidates(day.id, prompt.id, ["fine thanks", "go away"])
    picked = store.record_reply(day.id, prompt.id, "pick", candidate_id=a.id, tokens=3)
    assert (picked.turn.text, picked.turn.source, picked.turn.candidate_id) == ("fine thanks", "chosen", a.id)
    assert (picked.choice.kind, picked.choice.turn_id, picked.correction) == ("pick", picked.turn.id, None)
    corrected = store.record_reply(day.id, prompt.id, "correction", "I'm well, and you?", candidate_id=b.id)
    assert corrected.turn.source == "correction"
    assert corrected.correction.text == "I'm well, and you?"
    assert store.corrections(day.id) == [corrected.correction]
    assert [c.kind for c in store.choices(day.id)] == ["pick", "correction"]
    assert store.choices(prompt_turn_id=prompt.id) == store.choices(day.id)
    inner = store.add_candidates(day.id, prompt.id, ["(she seems tired)"], role="inner")[0]
    thought = store.record_reply(day.id, prompt.id, "pick", candidate_id=inner.id)
    assert (thought.turn.role, thought.turn.text) == ("inner", "(she seems tired)")
    with pytest.raises(StoreError, match="candidate"):
        store.record_reply(day.id, prompt.id, "correction", "no candidate")
    assert len(store.turns(day.id)) == 4  # the refused reply left nothing behind


def test_invalid_values_and_unknown_ids_are_refused_by_name_and_change_nothing(
        store: Store, other: sqlite3.Connection) -> None:
    day, prompt = a_day_with_a_prompt(store)
    with pytest.raises(StoreError, match="'narrator'"):
        store.add_turn(day.id, "narrator", "once upon a time", "typed")
    with pytest.raises(StoreError, match="'shouted'"):
        store.add_turn(day.id, "owner", "hi", "shouted")
    with pytest.raises(StoreError, match="999"):
        store.add_turn(999, "owner", "hi", "typed")
    with pytest.raises(StoreError, match="'exploded'"):
        store.add_candidates(day.id, prompt.id, ["x"], ["exploded"])
    with pytest.raises(StoreError, match="4242"):
        store.add_candidates(day.id, 4242, ["x"])
    with pytest.raises(StoreError, match="'lunch'"):
        store.close_day(day.id, "lunch")
    with pytest.raises(StoreError, match="'maybe'"):
        store.record_choice(prompt.id, "maybe", prompt.id)
    with pytest.raises(StoreError, match="31337"):
        store.rate(31337, 3)
    with pytest.raises(StoreError, match="'nightmare'"):
        store.add_dream(day.id, "boo", source="nightmare")
    assert count(other, "SELECT count(*) FROM turns") == 1
    assert count(other, "SELECT count(*) FROM candidates") == 0


# --- annotations, dreams, nights --------------------------------------------------------------------

def test_annotations_are_latest_per_target_and_can_be_cleared(store: Store) -> None:
    day, prompt = a_day_with_a_prompt(store)
    inner = store.add_turn(day.id, "inner", "the morning is quiet", "indicator")
    store.close_day(day.id, "goodnight")
    dream = store.add_dream(day.id, "companion: hello\ninner: I wonder")
    store.annotate(turn_id=inner.id, tags=["off"])
    store.annotate(turn_id=inner.id, tags=["keep", "insightful"], note="lovely")
    store.annotate(turn_id=prompt.id, tags=["keep"])
    store.annotate(turn_id=prompt.id)  # cleared
    store.annotate(dream_id=dream.id, line_index=1, tags=["insightful"])
    current = store.annotations(day.id)
    assert [(a.turn_id, a.dream_id, a.line_index, a.tags, a.note) for a in current] == [
        (inner.id, None, None, ("keep", "insightful"), "lovely"),
        (None, dream.id, 1, ("insightful",), None),
    ]
    assert store.annotation(turn_id=prompt.id).tags == ()
    with pytest.raises(StoreError):
        store.annotate(turn_id=inner.id, dream_id=dream.id, line_index=0)
    with pytest.raises(StoreError):
        store.annotate(dream_id=dream.id, tags=["keep"])


def test_the_last_dreams_come_oldest_first(store: Store) -> None:
    day = store.open_day(768)
    for i in range(7):
        store.add_dream(day.id, f"dream {i}", source="teacher" if i == 6 else "model")
    assert [d.text for d in store.dreams(last=5)] == [f"dream {i}" for i in range(2, 7)]
    assert [d.text for d in store.dreams(last=2, source="model")] == ["dream 4", "dream 5"]
    assert len(store.dreams(day_id=day.id)) == 7


def test_one_night_runs_at_a_time_and_finishes_once(store: Store) -> None:
    day = store.open_day(768)
    with pytest.raises(StoreError, match="still open"):
        store.start_night(day.id)
    store.close_day(day.id, "full")
    night = store.start_night(day.id)
    with pytest.raises(StoreError, match="still running"):
        store.start_night(day.id)
    assert store.running_night() == night
    store.finish_night(night.id, "interrupted", reason="the owner quit")
    with pytest.raises(StoreError, match="already finished"):
        store.finish_night(night.id, "accepted")
    again = store.start_night(day.id)
    done = store.finish_night(again.id, "rolled_back", reason="probe perplexity rose 12%",
                              report={"probe": [40.1, 45.0]})
    assert done.report == {"probe": [40.1, 45.0]}
    assert [n.status for n in store.nights(day.id)] == ["interrupted", "rolled_back"]
    assert store.running_night() is None
    with pytest.raises(StoreError, match="'running'"):
        store.finish_night(store.start_night(day.id).id, "running")


# --- checkpoints and restore ------------------------------------------------------------------------

def test_checkpoints_keep_their_story_after_the_file_is_deleted(store: Store) -> None:
    birth = store.add_checkpoint("weights/birth.safetensors", "birth", checksum="aa", size_bytes=100)
    child = store.add_checkpoint("weights/n1.safetensors", "nursery", checksum="bb", size_bytes=100,
                                 step=500, parent_id=birth.id, probe_ppl=80.0)
    with pytest.raises(StoreError, match="relative"):
        store.add_checkpoint("/abs/w.safetensors", "night", checksum="cc", size_bytes=1)
    with pytest.raises(StoreError, match="already recorded"):
        store.add_checkpoint("weights/birth.safetensors", "birth", checksum="dd", size_bytes=1)
    deleted = store.mark_checkpoint_deleted(birth.id)
    assert deleted.deleted_at is not None
    assert store.checkpoints() == [child]
    assert [c.id for c in store.checkpoints(include_deleted=True)] == [birth.id, child.id]
    assert store.latest_checkpoint() == child
    assert store.get_checkpoint(birth.id).checksum == "aa"


def test_a_restore_flags_the_days_the_restored_weights_never_learned(store: Store) -> None:
    birth = store.add_checkpoint("w/birth.st", "birth", checksum="0", size_bytes=1)
    weights = birth
    nights = {}
    for _ in range(3):
        day = store.open_day(768, weights.id)
        store.close_day(day.id, "goodnight")
        pre = store.add_checkpoint(f"w/pre-{day.number}.st", "pre-night", checksum="p", size_bytes=1,
                                   day_id=day.id, parent_id=weights.id)
        night = store.start_night(day.id, pre.id)
        weights = store.add_checkpoint(f"w/night-{day.number}.st", "night", checksum="n", size_bytes=1,
                                       day_id=day.id, parent_id=pre.id)
        store.finish_night(night.id, "accepted", post_checkpoint_id=weights.id)
        nights[day.number] = (pre, weights)
    store.open_day(768, weights.id)  # day 4, being lived

    pre_night_2 = nights[2][0]  # the weights before day 2 was learned
    assert store.mark_days_not_in_weights(after_checkpoint_id=pre_night_2.id) == 3
    assert [(d.number, d.in_weights) for d in store.days()] == [(1, True), (2, False), (3, False), (4, False)]
    summary = {d.number: d.in_weights for d in store.list_days()}
    assert summary == {1: True, 2: False, 3: False, 4: False}

    # Forward again to the weights that learned day 3: days 2 and 3 are back, day 4 stays out.
    assert store.mark_days_not_in_weights(after_checkpoint_id=nights[3][1].id) == 0
    assert [(d.number, d.in_weights) for d in store.days()] == [(1, True), (2, True), (3, True), (4, False)]
    assert store.mark_days_not_in_weights(after_checkpoint_id=birth.id) == 3
    assert not any(d.in_weights for d in store.days())


# --- books ------------------------------------------------------------------------------------------

def test_a_book_reported_twice_is_queued_once(store: Store, other: sqlite3.Connection) -> None:
    first = store.queue_book("books/moby-dick.txt", "a" * 64, 1_200_000)
    again = store.queue_book("books/moby-dick.txt", "a" * 64, 1_200_000)
    assert again == first
    assert count(other, "SELECT count(*) FROM books") == 1
    edited = store.queue_book("books/moby-dick.txt", "b" * 64, 1_200_100)  # new content is a new reading
    assert edited.id != first.id
    refused = store.refuse_book(edited.id, "not UTF-8 text")
    assert (refused.status, refused.note) == ("refused", "not UTF-8 text")
    assert store.books("queued") == [first]
    with pytest.raises(StoreError, match="refused"):
        store.mark_book_read(edited.id)


# --- search -----------------------------------------------------------------------------------------

def test_search_finds_turns_candidates_and_dreams_by_day(store: Store) -> None:
    day = store.open_day(768)
    turn = store.add_turn(day.id, "owner", "I walked by the lighthouse today", "typed")
    cand = store.add_candidates(day.id, turn.id, ["the lighthouse keeper waved"])[0]
    store.add_turn(day.id, "companion", "tell me more", "typed")
    store.close_day(day.id, "goodnight")
    dream = store.add_dream(day.id, "a lighthouse, far out at sea")
    hits = store.search("lighthouse")
    assert {(h.kind, h.id) for h in hits} == {("turn", turn.id), ("candidate", cand.id), ("dream", dream.id)}
    assert all(h.day_number == 1 for h in hits)
    hit = next(h for h in hits if h.kind == "turn")
    start, end = hit.spans[0]
    assert hit.snippet[start:end] == "lighthouse"
    assert [h.id for h in store.search("LIGHTHOUSE today", kinds=("turn",))] == [turn.id]
    assert store.search("lightho") == []
    assert len(store.search("lightho", prefix=True)) == 3


def test_search_treats_what_the_owner_types_as_plain_text(store: Store) -> None:
    day = store.open_day(768)
    turn = store.add_turn(day.id, "owner", "foo and bar", "typed")
    assert [h.id for h in store.search('"foo* AND (bar')] == [turn.id]
    for nasty in ('"', "*", "-", "(", ")", "NEAR", "NEAR(foo bar)", "AND", "text:foo", "^foo", "foo OR",
                  '""""', "a\x00b", "\\", "{foo}", "'", "NOT foo", ""):
        store.search(nasty)  # never raises
    assert fts_query('say "hi" -- now') == '"say" """hi""" "now"'
    assert fts_query("*** ---") is None


# --- summaries and backup ---------------------------------------------------------------------------

def test_list_days_summarises_each_day_in_one_row(store: Store) -> None:
    day, prompt = a_day_with_a_prompt(store)  # 4 tokens
    a, b, c = store.add_candidates(day.id, prompt.id, ["a", "b", "c"])
    store.rate(a.id, 4)
    store.rate(b.id, 1)
    store.rate(c.id, 2)
    store.rate(c.id, None)  # cleared: not counted
    store.record_reply(day.id, prompt.id, "correction", "better", candidate_id=b.id, tokens=6)
    store.add_turn(day.id, "inner", "afternoon", "indicator")  # no token count
    store.close_day(day.id, "full")
    night = store.start_night(day.id)
    store.finish_night(night.id, "accepted")
    quiet = store.open_day(512)

    first, second = store.list_days()
    assert (first.number, first.turns, first.tokens, first.budget_tokens) == (1, 3, 10, 768)
    assert (first.ratings, first.corrections, first.night_status, first.close_reason) == (2, 1, "accepted", "full")
    assert (second.number, second.id, second.turns, second.tokens) == (2, quiet.id, 0, 0)
    assert (second.ratings, second.corrections, second.night_status, second.closed_at) == (0, 0, None, None)


def test_backup_while_another_thread_writes_is_a_sound_file(store: Store, tmp_path: Path) -> None:
    (tmp_path / "backups").mkdir()
    day = store.open_day(100_000)
    for i in range(20):
        store.add_turn(day.id, "owner", f"before {i}", "typed")
    stop = threading.Event()
    written = []

    def keep_writing() -> None:
        i = 0
        while not stop.is_set() or i < 10:
            written.append(store.add_turn(day.id, "owner", f"during {i}", "typed"))
            i += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(written) < 3:
            threading.Event().wait(0.001)
        target = store.backup_to(tmp_path / "backups" / "copy.db")
    finally:
        stop.set()
        writer.join()
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copied = conn.execute("SELECT count(*) FROM turns").fetchone()[0]
    conn.close()
    assert 23 <= copied <= 20 + len(written)
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.db"]  # no temp file, no -wal
    with Store.open(target) as restored:
        assert len(restored.turns(restored.current_day().id)) == copied
    with pytest.raises(StoreError, match="onto itself"):
        store.backup_to(store.path)


def test_other_processes_opening_the_store_never_lose_a_live_writers_next_commit(tmp_path):
    """Opening the store must never drop this or another process's SQLite locks (closing any descriptor
    of the file does, under POSIX): once, readers that came and went deleted the WAL under the app, and
    its next commits went to an unlinked file."""
    path = tmp_path / "companion.db"
    peek = ("import sys; sys.path.insert(0, sys.argv[2]); from companion.store import Store; "
            "s = Store.open(sys.argv[1]); print(len(s.turns(s.days()[-1].id)))")
    repo = str(Path(__file__).resolve().parents[1])
    with Store.open(path) as live:
        day = live.open_day(budget_tokens=100)
        live.add_turn(day.id, "owner", "one", "typed", tokens=1)
        for _ in range(3):  # a poller, a second app's check, a CLI command: open, read, exit
            seen = subprocess.run([sys.executable, "-c", peek, str(path), repo], capture_output=True, text=True)
            assert seen.stdout.strip() == "1", seen.stderr
        with Store.open(path) as second:  # a second connection in this very process (the trainer's)
            assert len(second.turns(day.id)) == 1
        live.add_turn(day.id, "owner", "two", "typed", tokens=1)
        seen = subprocess.run([sys.executable, "-c", peek, str(path), repo], capture_output=True, text=True)
        assert seen.stdout.strip() == "2", seen.stderr
