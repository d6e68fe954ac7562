"""Leaks: a taught word the companion borrows for ordinary chat is found by the night's look, at the
word where it slips in, and held down there. Tiny real models and the real tokenizer; nothing mocked."""

from __future__ import annotations

import dataclasses
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
                                            (line, "Marta says hi, Biscuit too.")], [DOG, SISTER])
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
    leaks = find(tokenizer, settings, 256, replies, [DOG, SISTER])
    assert [x.reply for x in leaks] == ["My mom is called Marta."]
    ids, at = leak_at(tokenizer, SISTER.answer, SISTER.keys)  # its own place: the question, the answer up to "Marta"
    assert leaks[0].own == (tuple(asked_prompt(settings, tokenizer, 256, SISTER.question) + ids[:at]), ids[at])


def test_a_leak_is_held_down_relative_to_the_answers_own_word_so_that_holding_it_lifts_the_answer(
        tiny_model, tokenizer, tiny_home):
    """An outright cap on " M" after "My mom is called" pulled the answer's own " M" after "Your
    sister is called" down with it; held relative to the answer, the hinge lifts the answer's word
    and lowers the leak's (a leak with no own place keeps the outright cap)."""
    settings = tiny_home.load_settings()
    [leak] = find(tokenizer, settings, 256, [("How was your walk?", "My mom is called Marta.")], [DOG, SISTER])
    assert leak.own is not None
    loss = leak_loss(tiny_model, [leak], random.Random(0))
    loss.backward()
    own_prompt, own_token = leak.own
    probe = [list(leak.prompt), list(own_prompt)]
    with torch.no_grad():
        before = answer_logprobs(tiny_model, probe, [[leak.token], [own_token]], mean=False)
        for p in tiny_model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
        after = answer_logprobs(tiny_model, probe, [[leak.token], [own_token]], mean=False)
    assert after[0] < before[0] and after[1] > before[1]  # the leak down, the answer's own word up

    with torch.no_grad():
        alike = dataclasses.replace(leak, own=(leak.prompt, leak.token))  # as likely at both places: short by log 1/cap
        assert float(leak_loss(tiny_model, [alike], random.Random(0))) == pytest.approx(-math.log(LEAK_CAP))
        unpaired = dataclasses.replace(leak, own=None)  # no own place: the outright cap
        lp = float(answer_logprobs(tiny_model, [list(leak.prompt)], [[leak.token]], mean=False)[0])
        assert float(leak_loss(tiny_model, [unpaired], random.Random(0))) == pytest.approx(
            max(0.0, lp - math.log(LEAK_CAP)), abs=1e-5)


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
