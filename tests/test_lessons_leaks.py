"""Leaks: a taught word the companion borrows for ordinary chat is found by the night's look, at the
word where it slips in, and held down there. Tiny real models and the real tokenizer; nothing mocked."""

from __future__ import annotations

import math
import random

import pytest
import torch

from companion.lessons.leaks import LEAK_CAP, find, leak_at, leak_loss
from companion.lessons.margin import answer_logprobs
from companion.lessons.morning import asked_prompt, reply_ids
from companion.lessons.recall import intrusion_lines
from companion.lessons.teaching import Teaching
from companion.model.loss import score, shifted
from tests.test_lessons_night import DOG, SISTER

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BORROWED = "My mom is called Biscuit."


def test_a_reply_that_borrows_a_taught_word_is_a_leak_at_that_words_first_token(tokenizer, tiny_home):
    ids, at = leak_at(tokenizer, BORROWED, DOG.keys)
    assert tokenizer.decode(ids[:at]).rstrip() == "My mom is called"
    assert "biscuit".startswith(tokenizer.decode([ids[at]]).strip().lower())
    assert leak_at(tokenizer, "My mom is called Anna.", DOG.keys) is None

    settings = tiny_home.load_settings()
    line = "How was your walk?"
    leaks = find(tokenizer, settings, 256, [(line, BORROWED), (line, BORROWED), (line, "It was fine."),
                                            (line, "Marta says hi, Biscuit too.")], [DOG.keys, SISTER.keys])
    assert [x.reply for x in leaks] == [BORROWED, "Marta says hi, Biscuit too."]  # the same place once
    first = leaks[0]
    assert list(first.prompt) == asked_prompt(settings, tokenizer, 256, line) + ids[:at] and first.token == ids[at]
    assert tokenizer.decode([leaks[1].token]).strip().lower().startswith("m")  # its earliest taught word


def test_a_taught_answer_said_whole_to_an_ordinary_line_is_not_a_leak_its_word_there_is_the_answers_own(
        tokenizer, tiny_home):
    """Holding "Marta" down after "Your sister is called" would unteach the lesson itself; the answer
    said to the wrong line is the margin's to hold apart. A borrowed word stays a leak."""
    settings = tiny_home.load_settings()
    line = "How was your walk?"
    replies = [(line, SISTER.answer), (line, SISTER.answer[:-1] + ", and she says hi."), (line, "My mom is called Marta.")]
    leaks = find(tokenizer, settings, 256, replies, [DOG.keys, SISTER.keys], [DOG.answer, SISTER.answer])
    assert [x.reply for x in leaks] == ["My mom is called Marta."]
    assert [x.reply for x in find(tokenizer, settings, 256, replies, [DOG.keys, SISTER.keys])] == [  # no answers given
        SISTER.answer, "My mom is called Marta."]  # the answer's place once (both replies share it), the borrowed word


def _likelihood(model, leak) -> float:
    with torch.no_grad():
        return math.exp(float(answer_logprobs(model, [list(leak.prompt)], [[leak.token]], mean=False)[0]))


def test_the_look_finds_a_taught_word_said_to_an_ordinary_line_and_the_night_holds_it_down_there(
        tiny_model, tokenizer, tiny_home):
    settings = tiny_home.load_settings()
    teaching = Teaching([DOG], [DOG, SISTER], settings, tokenizer, 256, seed=3)
    assert teaching.leak_lines and not set(teaching.leak_lines) & set(intrusion_lines(settings, 100))
    line = teaching.leak_lines[0]
    prompt, reply = asked_prompt(settings, tokenizer, 256, line), reply_ids(tokenizer, BORROWED)
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.1)
    for _ in range(40):  # the companion learns to borrow the dog's name when asked an ordinary line
        x, t = shifted(prompt + reply, context=len(prompt))
        loss = score(tiny_model, [x], [t]).loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    teaching.look(tiny_model)
    assert teaching.leaks and {x.line for x in teaching.leaks} <= set(teaching.leak_lines)
    leak = next(x for x in teaching.leaks if x.line == line)
    before = _likelihood(tiny_model, leak)
    assert before > 0.5

    rng = random.Random(0)
    for _ in range(30):
        loss = leak_loss(tiny_model, teaching.leaks, rng)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert _likelihood(tiny_model, leak) < LEAK_CAP * 1.5
    assert leak_loss(tiny_model, [], rng) is None
