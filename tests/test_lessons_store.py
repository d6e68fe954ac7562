"""Lessons are records in the one store: what the owner taught, its phrasings, its recall night by
night, its schedule, retirements; a status read from the recall. Real SQLite files, nothing mocked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from companion.lessons.status import lesson_status
from companion.store import LessonNight, Store, StoreError


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "companion.db") as s:
        yield s


def taught(store: Store, question: str = "What is my dog called?", answer: str = "Your dog is called Biscuit.",
           kind: str = "written", budget: int = 192):
    """A day in which the owner asks and then corrects or writes the reply."""
    day = store.current_day() or store.open_day(budget_tokens=budget)
    prompt = store.add_turn(day.id, "owner", question, "typed", tokens=8)
    if kind == "written":
        return day, store.record_reply(day.id, prompt.id, "written", answer, tokens=9)
    [candidate] = store.add_candidates(day.id, prompt.id, ["I do not know."])
    if kind == "pick":
        return day, store.record_reply(day.id, prompt.id, "pick", candidate_id=candidate.id, tokens=6)
    return day, store.record_reply(day.id, prompt.id, "correction", answer, candidate_id=candidate.id, tokens=9)


def a_night(store: Store, day_id: int, status: str = "accepted"):
    night = store.start_night(day_id)
    return night, lambda: store.finish_night(night.id, status)


# --- recorded with the reply -------------------------------------------------------------------------

def test_a_written_reply_is_a_lesson_recorded_in_the_same_transaction(store: Store) -> None:
    day, reply = taught(store, kind="written")
    assert reply.lesson is not None
    lesson = reply.lesson
    assert (lesson.source, lesson.question, lesson.answer) == ("written", "What is my dog called?",
                                                               "Your dog is called Biscuit.")
    assert (lesson.day_id, lesson.day_number, lesson.reply_turn_id) == (day.id, 1, reply.turn.id)
    assert lesson.status == "new" and lesson.in_weights and not lesson.retired
    assert [x.id for x in store.lessons()] == [lesson.id]


def test_a_correction_is_a_lesson_and_a_plain_pick_is_not(store: Store) -> None:
    _, corrected = taught(store, "What is my name?", "Your name is Trey.", kind="correction")
    _, picked = taught(store, "How are you?", kind="pick")
    assert corrected.lesson.source == "correction" and corrected.lesson.answer == "Your name is Trey."
    assert picked.lesson is None
    assert [x.question for x in store.lessons()] == ["What is my name?"]


def test_a_picked_reply_marked_remember_this_becomes_a_lesson(store: Store) -> None:
    _, picked = taught(store, "How are you?", kind="pick")
    lesson = store.remember(picked.turn.id)
    assert (lesson.source, lesson.question, lesson.answer) == ("remember", "How are you?", "I do not know.")
    assert store.lesson_for_turn(picked.turn.id).id == lesson.id


def test_remembering_a_reply_that_already_is_a_lesson_names_it_and_changes_nothing(store: Store) -> None:
    _, reply = taught(store, kind="correction")
    with pytest.raises(StoreError, match=rf"already lesson {reply.lesson.id} \(correction\)"):
        store.remember(reply.turn.id)
    assert len(store.lessons()) == 1


def test_only_the_companions_reply_to_the_owner_can_be_remembered(store: Store) -> None:
    day, reply = taught(store)
    with pytest.raises(StoreError, match=f"turn {reply.lesson.prompt_turn_id} is not the companion's reply"):
        store.remember(reply.lesson.prompt_turn_id)
    with pytest.raises(StoreError, match="no turn with id 999"):
        store.remember(999)


def test_the_lessons_context_is_its_day_up_to_the_answer(store: Store) -> None:
    day, reply = taught(store)
    store.add_turn(day.id, "inner", "It is still morning.", "indicator", tokens=5)  # after: not context
    context = store.lesson_context(reply.lesson.id)
    assert [t.text for t in context] == ["What is my dog called?"]


# --- bad input ---------------------------------------------------------------------------------------

def test_an_empty_answer_is_refused_naming_the_question(store: Store) -> None:
    with pytest.raises(StoreError, match="the answer to 'What is my name\\?' is empty"):
        store.add_lesson("What is my name?", "   ")
    assert store.lessons() == []


def test_an_answer_longer_than_a_day_is_refused_with_both_counts(store: Store) -> None:
    day = store.open_day(budget_tokens=192)
    with pytest.raises(StoreError, match="is 500 tokens, longer than a day \\(192 tokens\\)"):
        store.add_lesson("Tell me everything.", "word " * 400, day_id=day.id, answer_tokens=500)
    with pytest.raises(StoreError, match="is 300 tokens, longer than a day \\(256 tokens\\)"):
        store.add_lesson("Tell me everything.", "word " * 200, answer_tokens=300, budget_tokens=256)
    assert store.lessons() == []


def test_a_phrasing_shared_with_another_lessons_question_is_kept_and_named(store: Store) -> None:
    _, dog = taught(store, "What is my pet called?", "Your dog is called Biscuit.")
    _, cat = taught(store, "What is my cat called?", "Your cat is called Miso.")
    added = store.add_phrasing(dog.lesson.id, "what is my cat   called?")
    assert added.shared_with == (cat.lesson.id,)
    assert f"lesson {cat.lesson.id}" in added.note and "Miso" in added.note and "Biscuit" in added.note
    both = {x.id: x for x in store.lessons()}
    assert both[dog.lesson.id].questions == ("What is my pet called?", "what is my cat   called?")
    assert both[cat.lesson.id].answer == "Your cat is called Miso."  # kept apart by their answers


def test_a_phrasing_the_lesson_already_has_or_an_empty_one_is_refused(store: Store) -> None:
    _, reply = taught(store)
    store.add_phrasing(reply.lesson.id, "Who is my dog?")
    for same in ("what is my DOG called?", "Who is my dog?"):
        with pytest.raises(StoreError, match="is already asked as"):
            store.add_phrasing(reply.lesson.id, same)
    with pytest.raises(StoreError, match="empty"):
        store.add_phrasing(reply.lesson.id, "  ")
    assert len(store.phrasings(reply.lesson.id)) == 1


def test_recall_results_that_do_not_add_up_are_refused_and_nothing_is_written(store: Store) -> None:
    day, reply = taught(store)
    store.close_day(day.id, "goodnight")
    night = store.start_night(day.id)
    with pytest.raises(StoreError, match="recall result 1 .*21 hits"):
        store.record_recalls(night.id, [{"lesson_id": reply.lesson.id, "hits": 3, "samples": 20},
                                        {"lesson_id": reply.lesson.id, "phrasing_id": None, "hits": 21,
                                         "samples": 20}])
    assert store.recalls(night_id=night.id) == []


# --- recall, status, schedule ------------------------------------------------------------------------

def test_status_follows_recall_over_accepted_nights() -> None:
    def nights(*rates, accepted=True):
        return [LessonNight(i, i, accepted, hits, 20, 0) for i, hits in enumerate(rates, 1)]
    assert lesson_status([]) == "new"
    assert lesson_status(nights(19, accepted=False)) == "new"
    assert lesson_status(nights(3, 10)) == "learning"
    assert lesson_status(nights(3, 19)) == "learned"
    assert lesson_status(nights(19, 20, 12)) == "fading"
    assert lesson_status(nights(19), retired=True) == "retired"


def test_a_nights_recall_is_the_lessons_history_and_status(store: Store) -> None:
    day, reply = taught(store)
    lesson = reply.lesson
    phrasing = store.add_phrasing(lesson.id, "Who is my dog?").phrasing
    store.close_day(day.id, "goodnight")
    night = store.start_night(day.id)
    store.record_recalls(night.id, [
        {"lesson_id": lesson.id, "hits": 20, "samples": 20},
        {"lesson_id": lesson.id, "phrasing_id": phrasing.id, "hits": 17, "samples": 20, "crosstalk": 1}])
    assert store.get_lesson(lesson.id).status == "new"  # the night is not accepted yet
    store.finish_night(night.id, "accepted")
    after = store.get_lesson(lesson.id)
    assert after.status == "learned"
    assert [(n.hits, n.samples, n.crosstalk, n.day_number) for n in after.history] == [(37, 40, 1, 1)]
    with pytest.raises(StoreError, match="already recorded the recall"):
        store.record_recalls(night.id, [{"lesson_id": lesson.id, "hits": 1, "samples": 20}])


def test_lessons_are_due_until_scheduled_and_then_on_their_day(store: Store) -> None:
    day, reply = taught(store)
    store.close_day(day.id, "goodnight")
    night = store.start_night(day.id)
    assert [x.id for x in store.due_lessons(1, night_id=night.id)] == [reply.lesson.id]  # new: due
    [plan] = store.schedule_lessons({reply.lesson.id: (2, 3)}, night_id=night.id)
    store.finish_night(night.id, "accepted")
    assert (plan.interval_nights, plan.due_day) == (2, 3)
    assert store.due_lessons(2) == []
    assert [x.id for x in store.due_lessons(3)] == [reply.lesson.id]
    assert [x.id for x in store.due_lessons(4)] == [reply.lesson.id]  # a missed night does not skip it


def test_a_lesson_retired_while_a_night_runs_counts_from_the_next_night(store: Store) -> None:
    day, reply = taught(store)
    lesson_id = reply.lesson.id
    store.close_day(day.id, "goodnight")
    night = store.start_night(day.id)
    retired = store.retire_lesson(lesson_id)
    assert retired.retired and retired.status == "retired"
    assert [x.id for x in store.due_lessons(1, night_id=night.id)] == [lesson_id]  # this night keeps it
    store.finish_night(night.id, "accepted")
    assert store.due_lessons(2) == []
    assert store.lessons(include_retired=False) == []
    assert not store.retire_lesson(lesson_id, retired=False).retired
    assert [x.id for x in store.due_lessons(2)] == [lesson_id]


def test_lesson_rows_are_append_only(store: Store, tmp_path: Path) -> None:
    _, reply = taught(store)
    conn = sqlite3.connect(tmp_path / "companion.db")
    try:
        for sql in ("UPDATE lessons SET answer = 'x'", "DELETE FROM lessons"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
    finally:
        conn.close()


def test_lessons_of_days_a_restore_leaves_are_not_in_the_weights(store: Store) -> None:
    day1, first = taught(store, "What is my name?", "Your name is Trey.")
    store.close_day(day1.id, "goodnight")
    day2, second = taught(store, "What is my dog called?", "Your dog is called Biscuit.")
    store.close_day(day2.id, "goodnight")
    store.mark_days_not_in_weights(after_day_number=1)
    by_id = {x.id: x for x in store.lessons()}
    assert by_id[first.lesson.id].in_weights and not by_id[second.lesson.id].in_weights


def test_a_store_lived_before_lessons_has_its_corrections_and_written_replies_as_lessons(tmp_path, monkeypatch):
    from companion.store import schema as store_module

    path = tmp_path / "old.db"
    before_lessons = store_module.MIGRATIONS[:-1]  # lessons are the newest migration
    monkeypatch.setattr(store_module, "MIGRATIONS", before_lessons)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", before_lessons[-1].version)
    with Store.open(path) as old:  # written the way version 1 wrote replies: turn, choice, correction
        day = old.open_day(budget_tokens=192)
        for question, kind, answer in [("What is my name?", "correction", "Your name is Trey."),
                                       ("How are you?", "pick", "I do not know."),
                                       ("Where do I live?", "written", "You live in Lisbon.")]:
            prompt = old.add_turn(day.id, "owner", question, "typed", tokens=8)
            [candidate] = old.add_candidates(day.id, prompt.id, ["I do not know."])
            source = {"pick": "chosen"}.get(kind, kind)
            used = None if kind == "written" else candidate.id
            reply = old.add_turn(day.id, "companion", answer, source, candidate_id=used, tokens=9)
            old.record_choice(prompt.id, kind, reply.id, used)
            if kind == "correction":
                old.add_correction(candidate.id, answer)
        assert old.schema_version == before_lessons[-1].version
    monkeypatch.undo()
    with Store.open(path) as upgraded:
        assert upgraded.schema_version == store_module.SCHEMA_VERSION
        assert [(x.source, x.question, x.answer, x.day_number) for x in upgraded.lessons()] == [
            ("correction", "What is my name?", "Your name is Trey.", 1),
            ("written", "Where do I live?", "You live in Lisbon.", 1)]
