"""The dream: the model goes on from the end of its day, its inner and outer voice taking turns.

The dream's budget is the part of the block the day left free: the day's transcript (ending with the
good-night line) is the context, and the dream continues it, an inner line first, until the block is
full. It has sampling settings of its own (`night.dream_temperature`, `night.dream_top_p`). A dream is
stored as text in the one transcript format (`render_text`), so its lines (`dream_lines`) can be
annotated by index like any inner line and trained on like any transcript.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from companion.night.teacher import TeacherError, teacher_dream
from companion.progress import plural
from companion.settings import Settings
from companion.transcript import (
    Turn,
    count_tokens,
    encode_turns,
    parse_text,
    render_text,
)
from companion.model.sampling import SamplingSettings, sample_candidates
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

MIN_DREAM_TOKENS = 16  # a day that filled the whole block still dreams this much (its start is cut)
MAX_LINE_TOKENS = 96  # one dream line at most; the budget is spent over several lines
VOICES = ("inner", "companion")  # the inner voice speaks first, then they alternate


@dataclass
class Dream:
    turns: list[Turn]
    source: str  # "model" | "teacher"
    budget: int  # tokens the dream could use
    used: int = 0  # tokens of the block it used (empty lines included)
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render_text(self.turns)


def dream_lines(text: str) -> list[Turn]:
    """The lines of a stored dream, in order; a line's index is what annotations refer to."""
    return parse_text(text)


def day_context(tokenizer: Tokenizer, day: Sequence[Turn], goodnight: str, block_size: int) -> list[int]:
    """The day as the dream's context, ending with the good-night line (added when the day lacks it),
    cut from the left so that at least MIN_DREAM_TOKENS of the block are left for the dream."""
    turns = list(day)
    if not turns or turns[-1].role != "inner" or turns[-1].text != goodnight:
        turns.append(Turn("inner", goodnight))
    ids = encode_turns(tokenizer, turns).ids
    keep = block_size - MIN_DREAM_TOKENS
    return ids[-keep:] if len(ids) > keep else ids


def dream_with_model(model: Transformer, tokenizer: Tokenizer, context: list[int], settings: Settings,
                     seed: int = 0, should_stop: Callable[[], bool] | None = None) -> Dream:
    """Sample the dream line by line until the block is full (or `should_stop`)."""
    block = model.config.block_size
    budget = block - len(context)
    stops = tokenizer.stop_ids
    ids = list(context)
    turns: list[Turn] = []
    voice = 0
    while block - len(ids) >= 3 and not (should_stop is not None and should_stop()):
        role = VOICES[voice % 2]
        room = block - len(ids) - 2  # the role token and the end token
        sampling = SamplingSettings(temperature=settings.night.dream_temperature, top_p=settings.night.dream_top_p,
                                    top_k=0, repetition_penalty=settings.sampling.repetition_penalty,
                                    max_new_tokens=min(room, MAX_LINE_TOKENS), seed=seed + voice)
        [gen] = sample_candidates(model, [*ids, tokenizer.role_ids[role]], 1, sampling, stops,
                                  protected_ids=tokenizer.special_ids, should_stop=should_stop)
        text = tokenizer.decode(gen.tokens).strip()
        # The sampled ids themselves, not their text re-encoded: a line cut mid-character decodes to
        # replacement characters that would re-encode longer and overflow the block.
        ids += [tokenizer.role_ids[role], *gen.tokens, tokenizer.end_id]
        if text:
            turns.append(Turn(role, text))
        voice += 1
    return Dream(turns, "model", budget, used=len(ids) - len(context))


def fit_budget(tokenizer: Tokenizer, turns: Sequence[Turn], budget: int) -> list[Turn]:
    """The first lines that fit in `budget` tokens (a teacher's dream obeys the same budget)."""
    kept, used = [], 0
    for turn in turns:
        used += count_tokens(tokenizer, turn)
        if used > budget:
            break
        kept.append(turn)
    return kept


def dream(model: Transformer, tokenizer: Tokenizer, day: Sequence[Turn], settings: Settings, seed: int = 0,
          should_stop: Callable[[], bool] | None = None, goodnight: str | None = None) -> Dream:
    """The night's dream: the teacher's when it is enabled and answers well, else the model's own.
    `goodnight`: the day's own good-night line when it has one (else the settings' line is added)."""
    goodnight = goodnight if goodnight is not None else settings.goodnight_line()
    context = day_context(tokenizer, day, goodnight, model.config.block_size)
    budget = model.config.block_size - len(context)
    notes: list[str] = []
    if settings.teacher.enabled:
        try:
            lines = teacher_dream(settings.teacher, day, settings.companion.name, settings.companion.owner,
                                  max_lines=max(2, budget // 12))
            lines = fit_budget(tokenizer, lines, budget)
            if not lines:
                raise TeacherError("none of the teacher's lines fit in the dream's budget")
            used = sum(count_tokens(tokenizer, t) for t in lines)
            return Dream(lines, "teacher", budget, used, [f"the teacher wrote the dream ({plural(len(lines), 'line')})"])
        except TeacherError as exc:
            notes.append(f"{exc}; the companion dreamt on its own")
    result = dream_with_model(model, tokenizer, context, settings, seed, should_stop)
    result.notes = notes + result.notes
    return result
