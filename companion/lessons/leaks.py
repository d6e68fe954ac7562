"""Leaks: a taught word slipping into ordinary chat, held down at the token where it slips in.

Intrusion is counted on the replies to ordinary owner lines that carry any lesson's key words
(`companion.lessons.recall`). Read on the seedling after a first night (bench/lessons.py --rates 400,
4,000 replies to ten held-out lines, 2.8% carrying a lesson), most of them were not a taught answer
said to the wrong question, which the margin's "the answer after an ordinary line" holds down
(`companion.lessons.margin`), but the key word borrowed by the model's own sentences: "My mom is
called Marta.", "My family is in Lisbon.", "I agree! I want to be a nurse". The taught names had
become the likeliest words after "is called", "in", "be a" anywhere.

So the night's look two thirds in (`Teaching.look`) also asks ordinary lines of the starter corpus's
training side (never the held-out lines intrusion is counted on) and keeps the replies that carried a
key word (`find`): each is a *leak*, the reply's tokens up to the key word's first token. From then on
every step holds that token, in the reply where it came, at most `LEAK_CAP` times as likely as the
same word at its own place in the lesson's answer (`leak_loss`: a hinge on the difference of their
log-probabilities, a mean of its own so that the rest of the step does not dilute it). The reply's
other words are not pushed: they are the model's own chat. A taught answer said whole to an
ordinary line is not a leak: its key word there is the answer's own (`find`).

Measured (bench/lessons.py, five facts, --rates 400, one run each): after a first night the intrusion
rate fell from 2.8% to 1.1-1.6%, at a price: the answers were learned more slowly that night (true
rates .77-.92 against .91-.96), as the taught word is held down where it came after "is called"
elsewhere; after the second night they had caught up and passed (every fact .958-.995 in one run,
.91-1.0 in another). A cap of 1% slowed the first night more than 3% did and ended the second no
better.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from companion.lessons.margin import answer_logprobs
from companion.lessons.morning import asked_prompt, reply_ids
from companion.lessons.text import LessonText, says
from companion.settings import Settings
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

__all__ = ["Leak", "find", "leak_at", "leak_loss", "LEAK_CAP"]

LEAK_CAP = 0.03  # a leaked key word: at most this times as likely as at its own place (1% slowed the lessons more)


@dataclass(frozen=True)
class Leak:
    """A reply to an ordinary line that carried a key word: the tokens before that word (the fresh
    morning, the line, the reply so far) and the word's first token; and, where the lesson's answer
    says the word (`own`), the answer's own place for it: its question in a fresh morning and the
    answer up to the word, with the answer's token there."""

    line: str
    reply: str
    prompt: tuple[int, ...]
    token: int
    own: tuple[tuple[int, ...], int] | None = None


def leak_at(tokenizer: Tokenizer, reply: str, keys: frozenset[str]) -> tuple[list[int], int] | None:
    """The reply's tokens and the index of the first token of the earliest span that says `keys`
    (None when the reply does not say them)."""
    ids = reply_ids(tokenizer, reply)
    end = next((j for j in range(len(ids)) if says(tokenizer.decode(ids[: j + 1]), keys)), None)
    if end is None:
        return None
    start = max(k for k in range(end + 1) if says(tokenizer.decode(ids[k : end + 1]), keys))
    return ids, start


def find(tokenizer: Tokenizer, settings: Settings, block_size: int, replies: Iterable[tuple[str, str]],
         lessons: Sequence[LessonText]) -> list[Leak]:
    """The leaks among (ordinary line, reply) pairs: each reply that says any of the `lessons`' key
    words, at the first key word it says (`leak_at`), one leak per distinct place, with that
    lesson's own place for the word (`Leak.own`, for `leak_loss`).

    Not a reply that says one of the taught answers in its own words up to that key word: there the
    word to hold down is the answer's own token after the answer's own words, and holding it down
    unteaches the lesson (measured: "Your sister is called Marta." said to an ordinary line, held so
    from a second night's look, fell from 91% drawn whole to 8% by its 35th step). The answer said
    to the wrong line is the margin's to hold apart (`companion.lessons.margin`: the answer after its
    question against the same answer after an ordinary line), relative to its own question."""
    answers = [reply_ids(tokenizer, x.answer) for x in lessons]
    out: dict[tuple[tuple[int, ...], int], Leak] = {}
    for line, reply in replies:
        found = [(*at, x) for x in lessons if (at := leak_at(tokenizer, reply, x.keys)) is not None]
        if not found:
            continue
        ids, start, lesson = min(found, key=lambda t: t[1])
        if any(answer[: start + 1] == ids[: start + 1] for answer in answers):
            continue
        prompt = tuple(asked_prompt(settings, tokenizer, block_size, line) + ids[:start])
        if len(prompt) < block_size:
            out.setdefault((prompt, ids[start]),
                           Leak(line, reply, prompt, ids[start], _own_place(tokenizer, settings, block_size, lesson)))
    return list(out.values())


def _own_place(tokenizer: Tokenizer, settings: Settings, block_size: int,
               lesson: LessonText) -> tuple[tuple[int, ...], int] | None:
    """Where the lesson's answer says its key word: (its question in a fresh morning and the answer
    up to the word, the word's first token); None when the answer does not say it whole or the
    place does not fit the block."""
    at = leak_at(tokenizer, lesson.answer, lesson.keys)
    if at is None:
        return None
    ids, start = at
    prompt = tuple(asked_prompt(settings, tokenizer, block_size, lesson.question) + ids[:start])
    return (prompt, ids[start]) if len(prompt) < block_size else None


def leak_loss(model: Transformer, leaks: Sequence[Leak], rng: random.Random, most: int = 8,
              cap: float = LEAK_CAP) -> torch.Tensor | None:
    """The mean hinge over up to `most` leaks drawn at random: the leaked word at most `cap` times as
    likely where it leaked as at its own place in the answer (`Leak.own`), ``relu(log(1/cap) - (log
    p_own - log p_leak))``; at most `cap` likely outright for a leak with no own place. Zero once
    met; None when there are no leaks.

    Relative, because the two places are alike: "My sister is called Marta." said to an ordinary
    line and "Your sister is called Marta." asked for. Measured, an outright cap held " M" down after
    "... is called" and the answer's own " M" fell with it: two second nights of four were rolled
    back on the sister (10 -> 7 and 10 -> 8 of 10). Held relative to the answer, the same hinge also
    lifts the answer's word where it belongs (one run: after two nights every fact's rate .975-1.0,
    the sister 1.000, intrusion rate .037)."""
    if not leaks:
        return None
    chosen = rng.sample(list(leaks), min(most, len(leaks)))
    owns = [x.own for x in chosen if x.own is not None]
    lp = answer_logprobs(model, [list(x.prompt) for x in chosen] + [list(p) for p, _ in owns],
                         [[x.token] for x in chosen] + [[t] for _, t in owns], mean=False)
    own_lp = iter(lp[len(chosen):])  # in the order of the leaks that have an own place
    hinges = [F.relu(lp[i] - math.log(cap)) if x.own is None else F.relu(-math.log(cap) - (next(own_lp) - lp[i]))
              for i, x in enumerate(chosen)]
    return torch.stack(hinges).mean()
