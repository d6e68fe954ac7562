"""Recall: asking each lesson afresh and counting what the companion says back.

Each lesson is asked in a fresh day's context exactly as the day builds it (`companion.lessons.morning`:
the good-morning line, the question, the indicator due), once per phrasing, `samples` times, as one
`SampleRequest` run on the engine's path (`companion.engine.sample`) with the owner's sampling
settings (temperature, top-k, top-p, repetition penalty) and fixed seeds, so that the same weights always give the same count and
two nights are compared on the same draws. A reply counts when it says the lesson
(`companion.lessons.text.says`: every key word present, normalised).

* **recall**: replies that say the lesson, per phrasing;
* **cross-talk**: replies to a lesson's question that say another lesson (one with other key words)
  instead: the model answering the template, not the question;
* **intrusion**: replies to a fixed set of ordinary owner lines (the held-out side of the starter
  corpus, which no night trains on) that say any lesson: lessons leaking into unrelated chat.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from companion.day.request import recall_request
from companion.engine import sample
from companion.night.guards import Stopped
from companion.lessons.cards import ordinary_exchanges
from companion.lessons.morning import morning
from companion.lessons.text import LessonText, says
from companion.settings import Settings
from companion.transcript import encode_turns, reply_prompt
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

__all__ = ["LessonRecall", "Recall", "ask", "measure", "intrusion_lines", "REPLY_TOKENS"]

REPLY_TOKENS = 32  # a taught answer is a sentence; longer replies only cost time
MISSES = 4  # replies kept per lesson that did not say it
SEED = 7_000_000  # the recall draws' seeds, far from the day's candidate slots


@dataclass
class LessonRecall:
    """One lesson's count: hits per phrasing (out of `samples` each), cross-talk hits, a few replies,
    and a few of the replies that did not say it (`misses`, distinct, for the margin's near misses)."""

    lesson: LessonText
    hits: dict[str, int] = field(default_factory=dict)
    crosstalks: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    examples: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    drawn: float | None = None  # exact: the least any phrasing's answer is drawn whole (`Teaching.recall`)

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    @property
    def crosstalk(self) -> int:
        return sum(self.crosstalks.values())

    @property
    def asked(self) -> int:
        return self.samples * len(self.hits)

    @property
    def rate(self) -> float:
        return self.total / self.asked if self.asked else 0.0


@dataclass
class Recall:
    lessons: list[LessonRecall] = field(default_factory=list)
    intrusion: int = 0
    intrusion_samples: int = 0
    intrusion_examples: list[str] = field(default_factory=list)
    leaked: list[tuple[str, str]] = field(default_factory=list)  # (ordinary line, reply), each distinct

    @property
    def crosstalk(self) -> int:
        return sum(x.crosstalk for x in self.lessons)

    @property
    def crosstalk_samples(self) -> int:
        return sum(x.asked for x in self.lessons)

    def of(self, lesson: LessonText) -> LessonRecall | None:
        return next((x for x in self.lessons if x.lesson == lesson), None)


def intrusion_lines(settings: Settings, count: int = 5) -> list[str]:
    """A fixed set of ordinary owner lines from the held-out starter conversations (never trained)."""
    return [line for line, _ in ordinary_exchanges(settings, held_out=True, most=count, seed=11)]


@torch.no_grad()
def ask(model: Transformer, tokenizer: Tokenizer, settings: Settings, question: str, samples: int,
        seed: int, max_new_tokens: int = REPLY_TOKENS) -> list[str]:
    """`samples` replies to `question` asked first thing in a fresh day, with fixed seeds."""
    block = model.config.block_size
    turns = morning(settings, tokenizer, block, [(question, None)])
    context = encode_turns(tokenizer, turns).ids
    if len(reply_prompt(tokenizer, context)) >= block:
        return [""] * samples
    request = recall_request(context, samples, settings.sampling, seed, max_new_tokens)
    was_training = model.training
    gens = sample(model, tokenizer, request)
    model.train(was_training)
    return [g.text for g in gens]


def measure(model: Transformer, tokenizer: Tokenizer, settings: Settings, lessons: Sequence[LessonText],
            samples: int, *, ordinary: Sequence[str] = (), phrasings: bool = True,
            should_stop: Callable[[], bool] | None = None, keep_examples: int = 3, draws: int = 0) -> Recall:
    """Recall, cross-talk and intrusion of `lessons` on `model` (see the module docstring).

    Seeds depend only on the question's text and the sample's slot, so a lesson keeps its draws when
    others are added or retired; `draws` shifts every seed, for another set of draws (the lessons
    bench's true rates)."""
    out = Recall()
    for lesson in lessons:
        row = LessonRecall(lesson, samples=samples)
        rivals = [x.keys for x in lessons if x.keys != lesson.keys and not x.keys <= lesson.keys]
        for question in (lesson.asked_as if phrasings else lesson.asked_as[:1]):
            if should_stop is not None and should_stop():
                raise Stopped()
            replies = ask(model, tokenizer, settings, question, samples, _seed(question) + draws)
            row.hits[question] = sum(says(r, lesson.keys) for r in replies)
            row.crosstalks[question] = sum(1 for r in replies if not says(r, lesson.keys) and any(says(r, k) for k in rivals))
            row.examples += replies[: max(0, keep_examples - len(row.examples))]
            row.misses += [r for r in dict.fromkeys(replies) if r.strip() and not says(r, lesson.keys)
                           and r not in row.misses][: max(0, MISSES - len(row.misses))]
        out.lessons.append(row)
    every = [x.keys for x in lessons]
    for line in ordinary:
        if should_stop is not None and should_stop():
            raise Stopped()
        replies = ask(model, tokenizer, settings, line, samples, _seed(line) + draws)
        leaked = [r for r in replies if any(says(r, k) for k in every)]
        out.intrusion += len(leaked)
        out.intrusion_samples += len(replies)
        out.intrusion_examples += leaked[: max(0, keep_examples - len(out.intrusion_examples))]
        out.leaked += [(line, r) for r in dict.fromkeys(leaked)]
    return out


def _seed(text: str) -> int:
    """A stable seed from the text (Python's hash() is salted per process, so it cannot serve)."""
    return SEED + zlib.crc32(text.encode("utf-8")) % 1_000_000 * 64
