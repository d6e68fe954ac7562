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
way). So a miss is held at the token where it leaves the answer (`branch`), not over its whole
length: after the prompt and the tokens they share, the answer's next token must be likelier than
the miss's by `BRANCH_MARGIN` nats, log 20, so that at most 1 draw in 20 goes that way at
temperature 1 (fewer at the owner's 0.8). Measured, the same miss held by the mean per token over
both replies (a 1-nat hinge that also pushed down the miss's own harmless words, "kind of food?")
left the colour at 15 of 20 after two nights. The branch hinges are a mean of their own, so that
the many answer pairs of a step do not dilute the one place a lesson is being lost.

Above all, each answer asked in a fresh morning must be drawn whole in `SURE` (99%) of the owner's
samples (`drawn_shortfall`): recall is sampled, and at the owner's temperature, top-k, top-p and
repetition penalty a small model's thin tail of unlikely words is never drawn, while the penalty
falls on every word of the question the answer repeats. So the shortfall is scored on what the
sampler draws from, per answer token, shared by the answers still short (one lagging lesson among
sure ones is not divided by them), and asked in the step's phrasing and, when that is another, in
the owner's own question too. Measured on the seedling (bench/lessons.py, 5 facts, 20 draws): first
nights said back 52-57 of 100 without it, 76-80 with it, 80-82 asked in the owner's question too
(paraphrases 17-23 -> 46-55); after two nights every fact was said 19 or 20 times in 2 of 4 runs (the
colour 18 in the others), against the colour's 15 without it. Counted in full (not per token), or
as log(1 + nats short), it leaked into ordinary chat on a first night (rolled back on intrusion).
`SURE` was 95% until the night held leaks down (`companion.lessons.leaks`): at 99% without them a
first night was rolled back on intrusion (3 of 50 replies); with them, after two nights (--rates 400),
the answers' true rates were .91-1.0 (two runs) against .93-1.0 at 95% without them, and a rerun
would find every fact at 19 of 20 in 41-68% of runs against 6-31% (intrusion rate 1.1-1.2% against
2.3-3.5%).

The same hinge keeps a lesson's answer to its question (intrusion): for a few lessons a step, the
answer after its own question must beat the same answer after an ordinary owner line of the starter
corpus's training side (`ordinary`) by `margin` nats per token, for every lesson of the step (at
most `neutral`). The same tokens in two contexts, so the hinge asks only "does this answer belong
here?"; measured on the seedling's first night, lessons taught without it leaked into 8 of 100
replies to ordinary lines, with it for two lessons a step into 3-8 (three runs).

A mean per token is met while the whole answer is still drawn after the ordinary line now and then
(its last words are sure once its first are said), and that is what an owner meets: "Your
favourite colour is purple." said whole to "How was your walk?". So the same rows are also read as
the owner's sampler draws, and each answer after an ordinary line is held to being drawn whole at
most `ELSEWHERE` (1%) of the time (nats over log 0.01, per answer token, a mean of the rows over it).
Measured (bench/lessons.py, five facts, --rates 400): first nights' intrusion rate .015-.021 in six
runs, every one accepted (before: .023-.049, and one of seven first nights rolled back on intrusion,
"Your favourite colour is purple!" among its replies to ordinary lines); answers a little less sure
after the first night (true rates .882-.988 against .958-.993), made up by the second (.955-1.0).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from companion.day.request import sampling_from_settings
from companion.lessons.morning import asked_prompt, reply_ids
from companion.lessons.text import LessonText
from companion.settings import Settings
from companion.model.loss import Adjust, Scored, score, shifted
from companion.model.sampling import as_drawn, penalty_window
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

__all__ = ["margin_loss", "answer_logprobs", "drawn_shortfall", "drawn_whole", "branch", "BRANCH_MARGIN", "SURE"]

BRANCH_MARGIN = math.log(20)  # nats between the answer's token and a near miss's where they part
SURE = 0.99  # an answer asked in a fresh morning: drawn whole at least this often (`drawn_shortfall`)
ELSEWHERE = 0.01  # the same answer after an ordinary line: drawn whole at most this often (intrusion)


def branch(answer: Sequence[int], miss: Sequence[int]) -> int | None:
    """Where a near miss leaves the answer: the index of the first token they do not share, or None
    when one is the other (nothing to hold apart)."""
    for i, (a, b) in enumerate(zip(answer, miss)):
        if a != b:
            return i
    return None


def _sampler_view(tokenizer: Tokenizer, settings: Settings, prompts: list[list[int]], inputs: list[list[int]],
                  drawn: set[int]) -> Adjust:
    """`score`'s `adjust` that turns the logits of the rows in `drawn` into what the owner's sampler
    draws from (`as_drawn`: the repetition penalty on the prompt's window and the reply so far, the
    temperature, top-k and top-p) and leaves the other rows' as they are."""
    sampling = sampling_from_settings(settings.sampling)
    protected = set(tokenizer.special_ids) | set(tokenizer.stop_ids)  # never penalised (as the engine asks)
    heard = {r: set(penalty_window(prompts[r], sampling)) - protected for r in drawn}

    def view(logits: torch.Tensor, row: torch.Tensor, position: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows = row.tolist()
        pick = [i for i, r in enumerate(rows) if r in drawn]
        if not pick:
            return logits
        seen = torch.zeros(len(pick), logits.size(-1), dtype=torch.bool, device=logits.device)
        for n, i in enumerate(pick):
            r, j = rows[i], int(position[i])
            ids = heard[r] | {t for t in inputs[r][len(prompts[r]): j + 1] if t not in protected}
            if ids:
                seen[n, list(ids)] = True
        idx = torch.tensor(pick, device=logits.device)
        out = logits.clone()
        out[idx] = as_drawn(logits[idx], seen, sampling, target[idx])
        return out

    return view


def _answers(model: Transformer, prompts: list[list[int]], answers: list[list[int]],
             drawn: tuple[Tokenizer, Settings, set[int]] | None = None) -> Scored:
    """Each answer scored after its prompt in one read (a prompt several rows share is read once);
    the rows in `drawn` as the owner's sampler draws (`_sampler_view`). A row asked twice (the
    margin's answers, as they are and as drawn) is read once and scored twice (`score`'s
    `copies`): measured on the seedling's margin, a third fewer positions read."""
    rows = [shifted(p + a, context=len(p)) for p, a in zip(prompts, answers)]
    inputs = [x for x, _ in rows]
    adjust = _sampler_view(drawn[0], drawn[1], prompts, inputs, drawn[2]) if drawn is not None else None
    first: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    copies: dict[int, list[int]] = {}
    for i, (p, a) in enumerate(zip(prompts, answers)):
        j = first.setdefault((tuple(p), tuple(a)), i)
        if j != i:
            copies.setdefault(j, []).append(i)
    return score(model, inputs, [t for _, t in rows], adjust=adjust, copies=copies)


def _per_token(nats: torch.Tensor, answers: list[list[int]]) -> torch.Tensor:
    return nats / torch.tensor([len(a) for a in answers], device=nats.device, dtype=torch.float32)


def _among_unmet(hinges: torch.Tensor) -> torch.Tensor:
    """A mean over the rows whose hinge is not yet met, so that one row still short is not divided by
    the many already met."""
    return hinges.sum() / (hinges.detach() > 0).sum().clamp_min(1)


def _shortfall(logprobs: torch.Tensor, answers: list[list[int]], sure: float) -> torch.Tensor:
    return _per_token(F.relu(math.log(sure) - logprobs), answers)


def drawn_shortfall(model: Transformer, tokenizer: Tokenizer, settings: Settings, prompts: list[list[int]],
                    answers: list[list[int]], sure: float = SURE) -> torch.Tensor:
    """How far each answer falls short of being drawn whole, after its prompt, in `sure` of the
    owner's samples (nats short of log `sure`, per answer token; 0 once it is), one value per row.

    Recall is sampled, so this asks for what the sampler would say (`as_drawn`: the owner's
    repetition penalty, temperature, top-k and top-p), not for raw likelihood. Measured on the
    seedling after a first night, "Your favourite colour is purple." had a raw probability of 0.31
    for " fav" (the rest of the vocabulary's thin tail mostly) but 0.81 as drawn, and the penalty on
    the question's own words ("favourite colour" asked, said back) fell on six of its ten tokens."""
    scored = _answers(model, prompts, answers, (tokenizer, settings, set(range(len(prompts)))))
    return _shortfall(scored.row_logprobs(), answers, sure)


@torch.no_grad()
def drawn_whole(model: Transformer, tokenizer: Tokenizer, settings: Settings, block_size: int,
                lessons: Sequence[LessonText]) -> list[float]:
    """The probability that each lesson's answer is drawn whole, as the owner samples, when its own
    question is asked first thing in a fresh morning: exact, from one read, not sampled (0.0 for a
    lesson too long to ask). The night's finish line (`Teaching.unsure`): recall counts key words, so
    a reply that says the lesson in other words counts there too, and this is its floor."""
    prompts, answers, rows = [], [], []
    for i, lesson in enumerate(lessons):
        prompt = asked_prompt(settings, tokenizer, block_size, lesson.question)
        answer = reply_ids(tokenizer, lesson.answer)
        if len(prompt) + len(answer) <= block_size + 1:
            rows.append(i)
            prompts.append(prompt)
            answers.append(answer)
    out = [0.0] * len(lessons)
    if rows:
        was_training = model.training
        model.eval()
        scored = _answers(model, prompts, answers, (tokenizer, settings, set(range(len(prompts)))))
        model.train(was_training)
        for i, lp in zip(rows, scored.row_logprobs().tolist()):
            out[i] = math.exp(lp)
    return out


def answer_logprobs(model: Transformer, prompts: list[list[int]], answers: list[list[int]],
                    mean: bool = True) -> torch.Tensor:
    """Log-probability of each answer after its prompt (per token when `mean`, else summed), one
    value per row."""
    return _answers(model, prompts, answers).row_logprobs(mean=mean)


def margin_loss(model: Transformer, lessons: Sequence[LessonText], settings: Settings, tokenizer: Tokenizer,
                block_size: int, rng: random.Random, margin: float = 1.0, others: int = 4,
                most: int = 8, ordinary: Sequence[tuple[str, str]] = (), neutral: int = 8,
                misses: Mapping[tuple[str, str], Sequence[str]] | None = None, own_misses: int = 2,
                sure: float | None = SURE) -> torch.Tensor | None:
    """The hinge loss for up to `most` lessons, asked with a random phrasing: against up to `others`
    other answers each, against their own answer after an `ordinary` line (for `neutral` of them), and
    at the token where each of up to `own_misses` of its near misses (`misses`, keyed by question and
    answer) parts from it (`branch`); None when there is nothing to hold apart."""
    if margin <= 0:
        return None
    misses = misses or {}
    chosen = list(lessons)
    rng.shuffle(chosen)
    prompts: list[list[int]] = []
    answers: list[list[int]] = []
    pairs: list[tuple[int, int]] = []
    parted: list[tuple[int, int]] = []  # (answer's token, miss's token) rows where a near miss branches off
    owned: list[int] = []  # the rows of each lesson's own answer after its question
    elsewhere_rows: list[int] = []  # the rows of a lesson's answer after an ordinary line
    own_wording: list[tuple[list[int], list[int]]] = []  # the answer after the owner's own question
    for lesson in chosen[:most]:
        rivals = [x for x in lessons if x is not lesson and x.keys != lesson.keys and x.answer != lesson.answer]
        asked = rng.choice(lesson.asked_as)
        prompt = asked_prompt(settings, tokenizer, block_size, asked)
        own_answer = reply_ids(tokenizer, lesson.answer)
        if len(prompt) + len(own_answer) > block_size + 1:
            continue
        if sure is not None and asked != lesson.question:
            first = asked_prompt(settings, tokenizer, block_size, lesson.question)
            if len(first) + len(own_answer) <= block_size + 1:
                own_wording.append((first, own_answer))
        own = len(prompts)
        owned.append(own)
        prompts.append(prompt)
        answers.append(own_answer)
        wrong = [x.answer for x in rng.sample(rivals, min(others, len(rivals)))]
        near = [x for x in misses.get((lesson.question, lesson.answer), ()) if x != lesson.answer]
        for text in rng.sample(near, min(own_misses, len(near))):
            miss = reply_ids(tokenizer, text)
            at = branch(own_answer, miss)
            if at is not None:
                parted.append((len(prompts), len(prompts) + 1))
                prompts += [prompt + own_answer[:at]] * 2
                answers += [[own_answer[at]], [miss[at]]]
        for text in wrong:
            answer = reply_ids(tokenizer, text)
            if len(prompt) + len(answer) <= block_size + 1:
                prompts.append(prompt)
                answers.append(answer)
                pairs.append((own, len(prompts) - 1))
        if ordinary and neutral > 0:
            neutral -= 1
            elsewhere = asked_prompt(settings, tokenizer, block_size, rng.choice(ordinary)[0])
            if len(elsewhere) + len(own_answer) <= block_size + 1:
                prompts.append(elsewhere)
                answers.append(own_answer)
                pairs.append((own, len(prompts) - 1))
                elsewhere_rows.append(len(prompts) - 1)
    if not owned:
        return None
    raw = len(prompts)
    if sure is not None:  # each own answer once more, as drawn: its prompt is read once for both
        prompts += [prompts[i] for i in owned] + [p for p, _ in own_wording] + [prompts[i] for i in elsewhere_rows]
        answers += [answers[i] for i in owned] + [a for _, a in own_wording] + [answers[i] for i in elsewhere_rows]
    scored = _answers(model, prompts, answers, (tokenizer, settings, set(range(raw, len(prompts)))))
    lp = scored.row_logprobs(mean=True)[:raw]
    total = lp.new_zeros(())
    if sure is not None:
        drawn = scored.row_logprobs()[raw:]
        cut = len(drawn) - len(elsewhere_rows)
        short = _shortfall(drawn[:cut], answers[raw:raw + cut], sure)
        total = _among_unmet(short)  # shared by the answers still short
        if elsewhere_rows:  # the answer after an ordinary line: drawn whole at most ELSEWHERE of the time
            over = _per_token(F.relu(drawn[cut:] - math.log(ELSEWHERE)), answers[raw + cut:])
            total = total + _among_unmet(over)
    for rows, nats in ((pairs, margin), (parted, BRANCH_MARGIN)):
        if rows:
            own_idx = torch.tensor([a for a, _ in rows], device=lp.device)
            other_idx = torch.tensor([b for _, b in rows], device=lp.device)
            total = total + F.relu(nats - (lp[own_idx] - lp[other_idx])).mean()
    return total
