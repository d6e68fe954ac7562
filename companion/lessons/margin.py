"""The margin: each lesson's own answer must be likelier than the other lessons' answers to its question.

Five near-identical questions ("What is my X?") with five answers make a model learn the template
"a question in the morning -> one of the taught answers" unless it is also shown which answer belongs
where. For each lesson asked in a fresh morning, the mean log-probability per token of its own answer
must exceed each other lesson's answer by `margin` nats; the loss is the mean hinge
``relu(margin - (own - other))``. It is zero once the answers are apart, so it costs nothing then.
In the feasibility study it removed the first night's cross-talk.

The companion's own near misses are rivals too (`misses`): replies to a lesson it says back some of
the time that did not say it, from the night's recall before training and its look two thirds in.
Measured on the seedling, the lagging fact was lost at one word: "Your favourite colour is purple."
taught, and 3 of 20 draws went "Your favorite kind of food?" (the corpus's spelling, then its own
way); pushing the answer above exactly those replies trains the word where it goes astray.

The same hinge keeps a lesson's answer to its question (intrusion): for a few lessons a step, the
answer after its own question must beat the same answer after an ordinary owner line of the starter
corpus's training side (`ordinary`) by `margin` nats per token, for every lesson of the step (at
most `neutral`). The same tokens in two contexts, so the hinge asks only "does this answer belong
here?"; measured on the seedling's first night, lessons taught without it leaked into 8 of 100
replies to ordinary lines, with it for two lessons a step into 3-8 (three runs).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from companion.lessons.morning import morning
from companion.lessons.text import LessonText
from companion.settings import Settings
from companion.transcript import Turn, encode_turn, encode_turns, reply_prompt
from companion.model.loss import score, shifted
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

__all__ = ["margin_loss", "answer_logprobs"]


def answer_logprobs(model: Transformer, prompts: list[list[int]], answers: list[list[int]],
                    mean: bool = True) -> torch.Tensor:
    """Log-probability of each answer after its prompt (per token when `mean`, else summed), one
    value per row."""
    rows = [shifted(p + a, context=len(p)) for p, a in zip(prompts, answers)]
    return score(model, [x for x, _ in rows], [t for _, t in rows]).row_logprobs(mean=mean)


def margin_loss(model: Transformer, lessons: Sequence[LessonText], settings: Settings, tokenizer: Tokenizer,
                block_size: int, rng: random.Random, margin: float = 1.0, others: int = 4,
                most: int = 8, ordinary: Sequence[tuple[str, str]] = (), neutral: int = 8,
                misses: Mapping[tuple[str, str], Sequence[str]] | None = None, own_misses: int = 2,
                ) -> torch.Tensor | None:
    """The hinge loss for up to `most` lessons against up to `others` other answers each and up to
    `own_misses` of its near misses (`misses`, keyed by question and answer), asked with a random
    phrasing, and for `neutral` of them against their own answer after an `ordinary` line; None when
    there are fewer than two lessons with different key words."""
    if len(lessons) < 2 or margin <= 0:
        return None
    misses = misses or {}
    chosen = list(lessons)
    rng.shuffle(chosen)
    prompts: list[list[int]] = []
    answers: list[list[int]] = []
    pairs: list[tuple[int, int]] = []
    for lesson in chosen[:most]:
        rivals = [x for x in lessons if x is not lesson and x.keys != lesson.keys and x.answer != lesson.answer]
        if not rivals:
            continue
        turns = morning(settings, tokenizer, block_size, [(rng.choice(lesson.asked_as), None)])
        prompt = reply_prompt(tokenizer, encode_turns(tokenizer, turns).ids)
        own_answer = encode_turn(tokenizer, Turn("companion", lesson.answer))[1:]
        if len(prompt) + len(own_answer) > block_size + 1:
            continue
        own = len(prompts)
        prompts.append(prompt)
        answers.append(own_answer)
        wrong = [x.answer for x in rng.sample(rivals, min(others, len(rivals)))]
        near = [x for x in misses.get((lesson.question, lesson.answer), ()) if x != lesson.answer]
        wrong += rng.sample(near, min(own_misses, len(near)))
        for text in wrong:
            answer = encode_turn(tokenizer, Turn("companion", text))[1:]
            if len(prompt) + len(answer) <= block_size + 1:
                prompts.append(prompt)
                answers.append(answer)
                pairs.append((own, len(prompts) - 1))
        if ordinary and neutral > 0:
            neutral -= 1
            turns = morning(settings, tokenizer, block_size, [(rng.choice(ordinary)[0], None)])
            elsewhere = reply_prompt(tokenizer, encode_turns(tokenizer, turns).ids)
            if len(elsewhere) + len(own_answer) <= block_size + 1:
                prompts.append(elsewhere)
                answers.append(own_answer)
                pairs.append((own, len(prompts) - 1))
    if not pairs:
        return None
    lp = answer_logprobs(model, prompts, answers)
    own_idx = torch.tensor([a for a, _ in pairs], device=lp.device)
    other_idx = torch.tensor([b for _, b in pairs], device=lp.device)
    return F.relu(margin - (lp[own_idx] - lp[other_idx])).mean()
