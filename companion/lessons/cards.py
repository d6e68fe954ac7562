"""Lesson cards: the contexts a lesson is trained in, each a short training sequence whose loss is
only on the companion's answer (and its end token).

Why several contexts: a model trained on a fact only where it was taught learns that context, not
the fact; asked afresh the next morning it does not say it. The feasibility study
(`shared/notes/lessons.md`) reached full recall with three kinds of card, and this module makes them,
plus two more:

* **morning**: a fresh day (good-morning line, the question, the indicator due), then the answer;
* **after chat**: the same after one or two ordinary exchanges of the starter corpus's training side;
* **mini-day**: three to five lessons asked in one day, in random order, each answered;
* **own day**: the lesson's own day up to and with its question and the lines after it (when the
  store kept its day), then the answer;
* **ordinary**: an ordinary owner line of the starter corpus in a fresh morning, with its usual
  reply. Trained with the lessons so that a fresh morning does not come to mean "say a lesson":
  this is the guard against intrusion (taught answers said to unrelated lines).

Each card asks with one of the lesson's phrasings, drawn at random (the question itself, the owner's
"also asked as" lines), in a varied frame (`vary`) or, for questions of the shape "What is my X?",
as one of the generated phrasings about X (`companion.lessons.asking`). Everything here is built from the one formatter (`companion.transcript`)
through `companion.night.material.transcript_examples`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from companion.night.guards import starter_docs
from companion.lessons.asking import askings
from companion.lessons.morning import morning
from companion.lessons.text import LessonText
from companion.night.material import Example, transcript_examples
from companion.settings import Settings
from companion.transcript import Turn, count_tokens
from companion.model.tokenizer import Tokenizer

__all__ = ["CardMix", "Exchange", "ordinary_exchanges", "step_cards", "answer_turns", "vary"]

Exchange = tuple[str, str]  # an owner line and the reply it got


@dataclass(frozen=True)
class CardMix:
    """How many cards of each kind one training step holds (lessons beyond `morning` take turns)."""

    morning: int = 8
    after_chat: int = 3
    mini_day: int = 1
    own_day: int = 1
    ordinary: int = 3
    varied: float = 0.25  # share of lesson cards asked with a varied frame (`vary`)
    generated: float = 0.35  # share asked with a phrasing made from the question's subject (`askings`)


PREFIXES = ("Hey, ", "So, ", "Remind me: ", "Quick question. ", "Tell me something. ", "Hmm, ", "Okay. ")
SUFFIXES = (" Do you know?", " Do you remember?", " Tell me.", "")


def vary(question: str, rng: random.Random) -> str:
    """The question asked a little differently: a spoken prefix or suffix, lower case without its
    question mark, or one small word dropped. Never a new meaning: the words that carry it stay.
    Why: a lesson trained only on its exact wording is learned as that wording (the study's
    paraphrase recall was 9-34 of 100); varying the frame around the content words makes the
    companion key on them."""
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(PREFIXES) + question[:1].lower() + question[1:]
    if kind == 1:
        return question.rstrip() + rng.choice(SUFFIXES)
    if kind == 2:
        return question.lower().rstrip("?!. ")
    small = [i for i, w in enumerate(question.split()) if w.lower().strip("?,.!") in ("is", "the", "a", "my", "do", "what")]
    if not small or len(question.split()) < 3:
        return question.lower()
    parts = question.split()
    del parts[rng.choice(small)]
    return " ".join(parts)


@lru_cache(maxsize=4)
def _exchanges(held_out: bool, greeting: str, goodnight: str, most: int, seed: int) -> tuple[Exchange, ...]:
    pairs = []
    for doc in starter_docs(held_out, greeting, goodnight):
        for a, b in zip(doc, doc[1:]):
            if a.role == "owner" and b.role == "companion" and 8 <= len(a.text) <= 120 and 2 <= len(b.text) <= 160:
                pairs.append((a.text, b.text))
    random.Random(seed).shuffle(pairs)
    return tuple(pairs[:most])


def ordinary_exchanges(settings: Settings, held_out: bool = False, most: int = 4000, seed: int = 0) -> tuple[Exchange, ...]:
    """Ordinary owner lines with the replies they got, from the starter corpus (training side by
    default; the held-out side is what intrusion is measured on, so it is never trained)."""
    return _exchanges(held_out, settings.day.greeting, settings.day.goodnight, most, seed)


def _example(tokenizer: Tokenizer, turns: list[Turn], taught: set[int], block_size: int, source: str) -> Example | None:
    """One card: loss only on the turns whose index is in `taught`; the oldest turns are dropped
    (after the greeting) when the card would not fit in a block."""
    turns = list(turns)
    while len(turns) > 2 and sum(count_tokens(tokenizer, t) for t in turns) > block_size + 1:
        del turns[1]
        taught = {i - 1 for i in taught if i > 1}
    weights = [1.0 if i in taught else 0.0 for i in range(len(turns))]
    examples = transcript_examples(tokenizer, turns, weights, block_size, source)
    return examples[-1] if examples else None


def answer_turns(settings: Settings, tokenizer: Tokenizer, block_size: int, question: str,
                 answer: str, before: Sequence[Exchange] = ()) -> tuple[list[Turn], int]:
    """A fresh morning with `before` exchanges, then `question` answered: the turns and the index of
    the answer's turn."""
    turns = morning(settings, tokenizer, block_size, [*before, (question, answer)])
    return turns, len(turns) - 1


def step_cards(lessons: Sequence[LessonText], exchanges: Sequence[Exchange], settings: Settings,
               tokenizer: Tokenizer, block_size: int, rng: random.Random, mix: CardMix = CardMix(),
               among: Sequence[LessonText] = (), weak: Sequence[LessonText] = (),
               ) -> tuple[list[Example], list[Example]]:
    """One training step's cards: (lesson cards, ordinary cards). `among` are the learned lessons
    resting: they fill the morning cards the due lessons leave free and join the mini-days, so that
    they keep their place beside the new ones. `weak` are due lessons the companion said back least
    before the night (weakest first): they take the morning cards still free after that, up to
    two more each, and twice the share of the after-chat cards, so that the slowest fact catches up
    instead of lagging a night behind the others."""
    cards: list[Example] = []

    def ask(lesson: LessonText) -> str:
        question = rng.choice(lesson.asked_as)
        draw = rng.random()
        made = askings(question)
        if made and draw < mix.generated:
            return rng.choice(made)
        return vary(question, rng) if draw < mix.generated + mix.varied else question

    if lessons:
        order, resting = list(lessons), [x for x in among if x not in lessons]
        rng.shuffle(order)
        rng.shuffle(resting)
        for lesson in (order + resting + list(weak) * 2)[: mix.morning]:  # resting, then weak ones fill free slots
            turns, i = answer_turns(settings, tokenizer, block_size, ask(lesson), lesson.answer)
            cards.append(_example(tokenizer, turns, {i}, block_size, "lessons"))
        for _ in range(mix.after_chat if exchanges else 0):
            lesson = rng.choice([*lessons, *weak])
            before = [rng.choice(exchanges) for _ in range(rng.randint(1, 2))]
            turns, i = answer_turns(settings, tokenizer, block_size, ask(lesson), lesson.answer, before)
            cards.append(_example(tokenizer, turns, {i}, block_size, "lessons"))
        pool = list(lessons) + [x for x in among if x not in lessons]
        for _ in range(mix.mini_day if len(pool) > 1 else 0):
            chosen = rng.sample(pool, min(len(pool), rng.randint(3, 5)))
            turns = morning(settings, tokenizer, block_size, [(ask(x), x.answer) for x in chosen])
            answers = {i for i, t in enumerate(turns) if t.role == "companion"}
            cards.append(_example(tokenizer, turns, answers, block_size, "lessons"))
        with_day = [x for x in lessons if x.context]
        for _ in range(mix.own_day if with_day else 0):
            lesson = rng.choice(with_day)
            turns = [*lesson.context, Turn("companion", lesson.answer)]  # its day, up to and with the question
            cards.append(_example(tokenizer, turns, {len(turns) - 1}, block_size, "lessons"))
    ordinary: list[Example] = []
    for _ in range(mix.ordinary if exchanges else 0):
        line, reply = rng.choice(exchanges)
        turns, i = answer_turns(settings, tokenizer, block_size, line, reply)
        ordinary.append(_example(tokenizer, turns, {i}, block_size, "ordinary"))
    return [c for c in cards if c is not None], [c for c in ordinary if c is not None]
