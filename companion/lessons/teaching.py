"""A night's lessons: which are taught, each step's share of the loss, and the recall verdict.

The loss a night adds for its lessons, each part a mean over its own tokens (so that no amount of
replay or other material dilutes it; the feasibility study found the lessons' share of a default
night's loss was about 2%):

    lessons' cards (mean over answer tokens)
  + ordinary_weight x ordinary cards (mean over their reply tokens)
  + the margin (`companion.lessons.margin`): each answer drawn whole, as the owner samples, in 99%
    of a fresh morning's draws; above the other lessons' answers, its own near misses, and itself
    after an ordinary line

`run_night` adds these parts (`Teaching.parts`, each backpropagated before the next is built) to its
own step loss over the night's usual material, trains at the lessons' learning rate for the lessons'
number of steps with the tied token embeddings frozen (the decisive change for drift in the study),
goes on past them while `unsure` finds a taught answer not yet drawn whole in 99% of the owner's
samples (up to `finish_steps` more), and before accepting asks `verdict` whether the night lowered
what the companion says back.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from companion.lessons.asking import askings
from companion.lessons.cards import CardMix, ordinary_exchanges, step_cards
from companion.lessons.leaks import Leak, find, leak_loss
from companion.lessons.margin import SURE, drawn_whole, margin_loss
from companion.lessons.recall import Recall, intrusion_lines, measure
from companion.lessons.schedule import REST_RECALL
from companion.lessons.status import LEARNED_RECALL  # the one rule: store, screen and night
from companion.lessons.text import LessonText
from companion.night.material import step_loss
from companion.settings import Settings
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

__all__ = ["Teaching", "LEARNED_RECALL", "freeze_embeddings", "MARGIN_REST", "LOOK_AT"]

MARGIN_REST = 2
LOOK_AT = 2 / 3  # the share of a night's steps after which it looks at what is said back (`look`)
LOOK_SAMPLES = 2  # the look draws this many times the recall's samples (10 cannot tell 75% from 90%)
LEAK_LINES = 10  # ordinary lines (training side) the look asks for leaks (`companion.lessons.leaks`)
DRAWN_SLACK = 0.02  # a learned lesson's fall in the draws counts only if its exact probability fell more



def freeze_embeddings(model: Transformer) -> None:
    """Keep the token embedding matrix (tied to the output layer) out of the night's optimizer."""
    model.embed.weight.requires_grad_(False)


@dataclass
class Teaching:
    """The lessons a night teaches (`taught`) and checks (`checked`: the taught ones and the learned
    ones resting, so that a night cannot quietly lose them).

    Resting lessons fill the morning cards the due ones leave free and stay in the mini-days and in
    the margin (as lessons and as rivals): measured, a learned lesson left out entirely was
    overwritten by the next night's similar questions ("What is my home town?" said back 9 of 10
    times before, 0 after), and one kept only in the mini-days and the margin still fell (10 -> 7).
    On a night with no lesson due the resting ones are its cards (a night that keeps them, with the
    lessons' settings and `consolidation_steps`): measured, such a night run as an ordinary one (17
    steps at 3e-5, the embeddings free, no pull) took five facts from true rates of .97-1.0 to
    .90-.99, and another, from later weights, was rolled back (the dog said 10 of 10 times before, 5
    after); kept, they stayed at .998-1.0."""

    taught: list[LessonText]
    checked: list[LessonText]
    settings: Settings
    tokenizer: Tokenizer
    block_size: int
    seed: int
    mix: CardMix = CardMix()

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.exchanges = ordinary_exchanges(self.settings) if self.settings.night.lessons.ordinary_weight > 0 else ()
        self.ordinary_lines = intrusion_lines(self.settings, self.settings.night.lessons.intrusion_lines)
        self.margin_rest = 0  # steps left before the margin is computed again (see `parts`)
        self.weak: list[tuple[float, LessonText]] = []  # `focus`
        self.misses: dict[tuple[str, str], list[str]] = {}  # `focus`: near misses, for the margin
        self.leak_lines = [line for line, _ in ordinary_exchanges(self.settings, most=LEAK_LINES, seed=self.seed)]
        self.leaks: list[Leak] = []  # `look`: taught words said to ordinary lines, held down from then on

    def focus(self, before: Recall | None, keep: bool = False) -> None:
        """Note the due lessons that lag: not said back in every draw before the night, and less than
        the best of tonight's lessons. Each step they get extra cards, weakest first (ties in a fresh
        random order each step; `step_cards`' `weak`). Measured, one fact lagged: after two nights four
        facts were said back 19-20 times of 20 and the favourite colour 14. Lessons all alike (a first
        night: none said yet) get none: measured, extra cards for all of them on a first night raised
        intrusion past its bound (3 of 50; the night was rolled back). With `keep` (the look during
        the night) the lessons already focused on stay so: a lesson said back at the look still needs
        the rest of the night (measured, dropping its extra cards there left it at 14 of 20)."""
        if before is None:
            return
        rows = [(before.of(x), x) for x in self.taught]
        for row, x in rows:  # a lesson said back sometimes: the replies that missed are the margin's too
            if row is not None and row.total and row.misses:
                self.misses[(x.question, x.answer)] = list(row.misses)
        rated = [(row.rate if row is not None and row.asked else 0.0, x) for row, x in rows]
        best = max((rate for rate, _ in rated), default=0.0)
        weak = [(rate, x) for rate, x in rated if rate < REST_RECALL and rate < best]
        if keep:
            now = {id(x) for _, x in weak}
            weak += [(rate, x) for rate, x in self.weak if id(x) not in now]
        self.weak = sorted(weak, key=lambda t: t[0])

    def look(self, model: Transformer, should_stop: Callable[[], bool] | None = None) -> Recall:
        """A quick look during the night (the taught phrasing only) at what the companion says back so
        far, for `focus`: the lessons that lag at two thirds of a first night get the extra cards for
        the rest of it instead of waiting a night (measured: one fact of five was said back 6 times of
        20 after a first night, the others 9-16). It also asks `LEAK_LINES` ordinary lines of the
        starter corpus's training side (not the held-out lines the recall counts intrusion on) and
        keeps the replies that carried a taught word as leaks (`companion.lessons.leaks`), which every
        step after holds down."""
        seen = measure(model, self.tokenizer, self.settings, self.taught or self.checked,
                       LOOK_SAMPLES * self.settings.night.lessons.samples, ordinary=self.leak_lines,
                       phrasings=False, should_stop=should_stop, keep_examples=0)
        known = {(x.prompt, x.token) for x in self.leaks}
        self.leaks += [x for x in find(self.tokenizer, self.settings, self.block_size, seen.leaked, self.checked)
                       if (x.prompt, x.token) not in known]
        return seen

    def lagging(self) -> list[str]:
        """The answers of the lessons `focus` found lagging (for the morning report)."""
        return [x.answer for _, x in self.weak]

    def _weakest(self) -> list[LessonText]:
        order = [(rate, self.rng.random(), x) for rate, x in self.weak]
        return [x for _, _, x in sorted(order, key=lambda t: t[:2])]

    def steps(self, before: Recall | None) -> int:
        """How many steps tonight: all of `[night.lessons] steps` while any lesson taught tonight was
        not said back before the night; `consolidation_steps` of them when every one already was
        (a night that only consolidates needs less: fewer steps on easy lessons), and on a night with
        no lesson due, only learned ones resting."""
        cfg = self.settings.night.lessons
        if not self.taught:  # only resting lessons: a night that keeps them (`parts`)
            return max(1, round(cfg.steps * cfg.consolidation_steps))
        if before is None:
            return cfg.steps
        rows = [before.of(x) for x in self.taught]
        if all(row is not None and row.asked and row.rate >= LEARNED_RECALL for row in rows):
            return max(1, round(cfg.steps * cfg.consolidation_steps))
        return cfg.steps

    def unsure(self, model: Transformer) -> list[tuple[float, LessonText]]:
        """The taught lessons whose answer is not yet drawn whole in `SURE` of the owner's samples when
        its question is asked in a fresh morning (`drawn_whole`: exact, no draws), least sure first,
        with that probability. The night goes on past its planned steps while there are any
        (`[night.lessons] finish_steps`): measured, after two nights four facts were said back in
        19-20 draws of 20 and one in 18, its answer drawn whole about 0.9 of the time."""
        sure = drawn_whole(model, self.tokenizer, self.settings, self.block_size, self.taught)
        return sorted(((p, x) for p, x in zip(sure, self.taught) if p < SURE), key=lambda t: t[0])

    def _rivals(self) -> list[LessonText]:
        """The checked lessons for this step's margin, each also asked as one generated phrasing
        (`companion.lessons.asking`), so that the answers are kept apart by the question's subject in
        other frames too, not only in the owner's wording."""
        out = []
        for lesson in self.checked:
            made = askings(lesson.question)
            out.append(dataclasses.replace(lesson, phrasings=(*lesson.phrasings, self.rng.choice(made)))
                       if made else lesson)
        return out

    def parts(self, model: Transformer) -> list[Callable[[], torch.Tensor | None]]:
        """This step's lesson loss (see the module docstring) as parts, each built when called, so that
        the trainer can backpropagate one before it builds the next (`train_step`: a step's memory is
        its largest part's); a fresh draw of cards every step.

        The margin is skipped for `MARGIN_REST` steps after a step where it was zero (every answer
        drawn whole and already apart): it is the step's costliest part (several answers forward and
        back per lesson) and, once met, it mostly stays met; it is checked again after the rest."""
        cfg = self.settings.night.lessons
        lessons, ordinary = step_cards(self.taught or self.checked, self.exchanges, self.settings, self.tokenizer,
                                       self.block_size, self.rng, self.mix, among=self.checked, weak=self._weakest())
        out: list[Callable[[], torch.Tensor | None]] = []
        if lessons:
            out.append(lambda: step_loss(model, lessons, self.settings))
        if ordinary and cfg.ordinary_weight > 0:
            out.append(lambda: cfg.ordinary_weight * step_loss(model, ordinary, self.settings))
        if self.margin_rest > 0:
            self.margin_rest -= 1
        else:
            out.append(lambda: self._margin(model))
        if self.leaks:
            out.append(lambda: leak_loss(model, self.leaks, self.rng))
        return out

    def _margin(self, model: Transformer) -> torch.Tensor | None:
        cfg = self.settings.night.lessons
        margin = margin_loss(model, self._rivals(), self.settings, self.tokenizer, self.block_size, self.rng,
                             margin=cfg.margin, ordinary=self.exchanges, misses=self.misses)
        if margin is not None and float(margin.detach()) == 0.0:
            self.margin_rest = MARGIN_REST
        return margin

    def recall(self, model: Transformer, should_stop: Callable[[], bool] | None = None) -> Recall:
        """What the companion says back (`measure`), and for each lesson the exact probability that
        its answer is drawn whole when asked in its weakest phrasing (`drawn_whole`, no draws), so
        that `verdict` can tell a real fall from the draws' noise."""
        cfg = self.settings.night.lessons
        out = measure(model, self.tokenizer, self.settings, self.checked, cfg.samples,
                      ordinary=self.ordinary_lines, should_stop=should_stop)
        asked = [(row, dataclasses.replace(row.lesson, question=q, phrasings=()))
                 for row in out.lessons for q in row.lesson.asked_as]
        whole = drawn_whole(model, self.tokenizer, self.settings, self.block_size, [x for _, x in asked])
        for (row, _), p in zip(asked, whole):
            row.drawn = p if row.drawn is None else min(row.drawn, p)
        return out

    def summary(self, before: Recall | None, after: Recall) -> dict[str, Any]:
        """What the morning report shows (JSON-safe, read by `companion.lessons.report`)."""
        taught = set(map(id, self.taught))
        rows = []
        for row in after.lessons:
            old = before.of(row.lesson) if before is not None else None
            rows.append({
                "id": row.lesson.id, "question": row.lesson.question, "answer": row.lesson.answer,
                "keys": sorted(row.lesson.keys), "taught": id(row.lesson) in taught, "asked": row.asked,
                "before": old.total if old is not None else None, "after": row.total,
                "phrasings": {q: [old.hits.get(q) if old is not None else None, h] for q, h in row.hits.items()},
                "reply": row.examples[0] if row.examples else "",
            })
        b = before or Recall()
        return {"samples": self.settings.night.lessons.samples, "lessons": rows,
                "crosstalk": {"before": b.crosstalk, "after": after.crosstalk, "samples": after.crosstalk_samples},
                "intrusion": {"before": b.intrusion, "after": after.intrusion, "samples": after.intrusion_samples,
                              "examples": after.intrusion_examples[:3]}}

    def verdict(self, before: Recall, after: Recall) -> str | None:
        """Why the night must be rolled back on what it makes the companion say, or None.

        * a lesson that was said back before the night (at least LEARNED_RECALL of its samples) and
          is said back less after it, below that share, when its exact probability of being drawn
          whole (`recall`) fell too, by more than `DRAWN_SLACK`: the draws alone are noisy (at a true
          rate of .91, 10 draws show 9 or 10 before and 8 or fewer after about one night in six; the
          lessons bench saw a night refused so), the exact probability is not. Only where the answer
          was drawn whole at least half the time before: one said mostly in other words is judged
          by the draws alone;
        * cross-talk or intrusion above their bound (a share of the replies) and above what it was
          before the night (a night is not blamed for what it inherited).
        """
        cfg = self.settings.night.lessons
        for row in after.lessons:
            old = before.of(row.lesson)
            if old is None or not old.asked:
                continue
            fell = (old.drawn is None or row.drawn is None or old.drawn < 0.5  # said mostly in other words
                    or row.drawn < old.drawn - DRAWN_SLACK)
            if (old.rate >= LEARNED_RECALL or row.lesson.learned) and row.rate < LEARNED_RECALL and row.total < old.total and fell:
                return (f"the companion said back \u201c{row.lesson.answer}\u201d in {old.total} of {old.asked} replies "
                        f"before the night and {row.total} of {row.asked} after: a learned lesson must stay learned")
        for name, b_hits, b_n, a_hits, a_n, bound in (
            ("cross-talk", before.crosstalk, before.crosstalk_samples, after.crosstalk, after.crosstalk_samples,
             cfg.crosstalk_bound),
            ("intrusion", before.intrusion, before.intrusion_samples, after.intrusion, after.intrusion_samples,
             cfg.intrusion_bound),
        ):
            if not a_n:
                continue
            rate, old = a_hits / a_n, (b_hits / b_n if b_n else 0.0)
            if rate > bound and rate > old:
                what = ("replies to a lesson's question said another lesson's answer" if name == "cross-talk"
                        else "replies to ordinary lines carried a lesson's answer")
                return f"{name}: {a_hits} of {a_n} {what} (before the night {b_hits} of {b_n}; bound {bound:.0%})"
        return None
