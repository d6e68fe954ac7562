"""Lessons are recorded through the day as the owner teaches: a correction, a written reply, and a
reply marked "remember this" each become a lesson with the question in its day. Tiny real home."""

from __future__ import annotations

import pytest

from companion.day import DayError, DaySession
from companion.transcript import Turn, encode_turns

from tests.test_day import BLOCK, day  # noqa: F401  (the same fresh day on tiny_home)


def test_a_correction_becomes_a_lesson_with_its_question(day):
    day.send("What is my dog called?")
    [candidate, _] = day.record_candidates(["I like dogs.", "No idea."])
    reply = day.correct(candidate.id, "Your dog is called Biscuit.")
    [lesson] = day.store.lessons()
    assert lesson.id == reply.lesson.id
    assert (lesson.source, lesson.question, lesson.answer) == ("correction", "What is my dog called?",
                                                               "Your dog is called Biscuit.")
    assert (lesson.day_number, lesson.status) == (day.day.number, "new")


def test_a_written_reply_becomes_a_lesson_whose_context_the_formatter_rebuilds(day):
    day.send("Where do I live?")
    day.record_candidates(["On the moon."])
    reply = day.write_reply("You live in Lisbon.")
    lesson = reply.lesson
    assert lesson.source == "written" and lesson.answer == "You live in Lisbon."
    context = day.store.lesson_context(lesson.id)
    # The day up to the answer: greeting, the question, the first-quarter line; then the answer.
    assert [t.source for t in context] == ["greeting", "typed", "indicator"]
    formatted = encode_turns(day.tokenizer, [*(Turn(t.role, t.text) for t in context),
                                             Turn("companion", lesson.answer)]).ids
    assert formatted == day.context_ids()  # exactly what the model read that day


def test_a_picked_reply_is_a_lesson_only_when_the_owner_says_remember_this(day):
    day.send("What is my favourite colour?")
    [candidate] = day.record_candidates(["Your favourite colour is purple."])
    reply = day.pick(candidate.id)
    assert reply.lesson is None and day.store.lessons() == []
    lesson = day.remember()  # the latest reply
    assert (lesson.source, lesson.question, lesson.answer) == ("remember", "What is my favourite colour?",
                                                               "Your favourite colour is purple.")
    assert lesson.reply_turn_id == reply.turn.id


def test_remember_this_before_any_reply_says_there_is_nothing_to_remember(day):
    with pytest.raises(DayError, match="nothing to remember"):
        day.remember()
    assert day.store.lessons() == []


def test_lessons_survive_a_restart_of_the_day(day):
    day.send("What is my job?")
    day.record_candidates(["I do not know."])
    day.write_reply("You work as a nurse.")
    again = DaySession(day.home, day.store, day.tokenizer, block_size=BLOCK)
    assert [x.answer for x in again.store.lessons()] == ["You work as a nurse."]
