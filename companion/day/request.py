"""What to sample, decided in one place and handed to the engine as one object.

A `SampleRequest` says everything a generation needs: what the owner asked for (its kind), the day's
tokens, the role that speaks, the seed slots (one per candidate, so K is their number), and the
model's sampling settings (temperature, cut-offs, penalty, reply length, seed). The day builds it
(`request_for`: K from the settings, slots never reused, the reply's length capped by the room left);
the screen only names the kind; the engine only runs it; the store records its settings with the
candidates. The night's recall check builds one too (kind 'recall'), so a lesson is asked exactly
as the day would ask it.

Seeds stay reproducible: candidate slot `s` is sampled with seed `seed + s` (`model.sampling`), so the
same request gives the same candidates, and a second round ("more") takes the next slots, never
repeating the first.

No torch here: the screens import this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from companion.settings import SamplingSection
from companion.model.sampling_settings import SamplingSettings

if TYPE_CHECKING:
    from companion.day.session import DaySession

__all__ = ["SampleRequest", "KINDS", "CARD_KINDS", "MAX_CANDIDATES", "INNER_SLOT_BASE", "MIN_INNER_TOKENS",
           "sampling_from_settings", "request_for", "recall_request"]

CARD_KINDS = frozenset({"reply", "more"})
"""Kinds that sample the companion's candidate replies (K cards)."""

KINDS = frozenset({*CARD_KINDS, "inner", "inner_after", "recall"})
"""'reply': candidates for the owner's new message; 'more': another round of them; 'inner': an inner
line the owner asked for; 'inner_after': the inner line the model may add after its reply (only when
it would rather go on in its inner voice); 'recall': a lesson asked afresh by the night."""

ROLES = frozenset({"companion", "inner"})

MAX_CANDIDATES = 8
"""The most candidates in one round (the cards' digit keys go up to 8)."""

INNER_SLOT_BASE = 1000
"""An inner line's seed slot is this plus the number of turns the day holds: far from the candidates'
slots (0, 1, 2, ...), and a new one for each line of the day."""

MIN_INNER_TOKENS = 2
"""An inner line is asked for only when at least this many tokens are left for it."""


@dataclass(frozen=True)
class SampleRequest:
    """One generation, fully decided: run it twice on the same weights and get the same text."""

    kind: str
    role: str
    context_ids: tuple[int, ...]
    slots: tuple[int, ...]
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of sampling {self.kind!r}; one of {', '.join(sorted(KINDS))}")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; one of {', '.join(sorted(ROLES))}")
        if not self.slots:
            raise ValueError("a request needs at least one slot (one candidate)")
        if len(set(self.slots)) != len(self.slots):
            raise ValueError(f"slots repeat: {list(self.slots)}; two candidates would be the same")
        object.__setattr__(self, "context_ids", tuple(self.context_ids))
        object.__setattr__(self, "slots", tuple(self.slots))

    @property
    def k(self) -> int:
        """How many continuations: one per slot."""
        return len(self.slots)

    @property
    def cards(self) -> bool:
        """Candidates the owner picks from (as opposed to one inner line)."""
        return self.kind in CARD_KINDS

    @property
    def max_new_tokens(self) -> int:
        return self.sampling.max_new_tokens


def sampling_from_settings(section: SamplingSection, max_new_tokens: int | None = None) -> SamplingSettings:
    """The model's sampling settings from the companion's `[sampling]` section: the one place where
    its `max_reply_tokens` becomes the model's `max_new_tokens` (``max_new_tokens`` overrides it)."""
    return SamplingSettings(
        temperature=section.temperature,
        top_k=section.top_k,
        top_p=section.top_p,
        repetition_penalty=section.repetition_penalty,
        max_new_tokens=max_new_tokens if max_new_tokens is not None else section.max_reply_tokens,
        seed=section.seed,
    )


def request_for(day: DaySession, kind: str) -> SampleRequest | None:
    """What `day` samples now for what the owner asked (`kind`, see `KINDS`).

    Candidates: K from the settings (at most `MAX_CANDIDATES`), the next unused slots, the reply's
    length capped by the room left. An inner line: one slot (`INNER_SLOT_BASE` + turns), the inner
    line's length; None when the day has no room left for one.
    """
    section = day.settings.sampling
    if kind in CARD_KINDS:
        k = max(1, min(section.candidates, MAX_CANDIDATES))
        return SampleRequest(kind, "companion", tuple(day.context_ids()), tuple(day.next_slots(k)),
                             sampling_from_settings(section, day.reply_tokens()))
    if kind in ("inner", "inner_after"):
        tokens = day.inner_tokens()
        if tokens < MIN_INNER_TOKENS:
            return None
        return SampleRequest(kind, "inner", tuple(day.context_ids()), (INNER_SLOT_BASE + len(day.turns),),
                             sampling_from_settings(section, tokens))
    raise ValueError(f"the day does not sample {kind!r}; it samples reply, more, inner or inner_after")


def recall_request(context_ids: Sequence[int], samples: int, section: SamplingSection, seed: int,
                   max_new_tokens: int) -> SampleRequest:
    """The night asking a lesson afresh: `samples` replies with the owner's sampling settings and a
    fixed `seed` (slots 0..samples-1), so the same weights always give the same replies."""
    sampling = replace(sampling_from_settings(section, max_new_tokens), seed=seed)
    return SampleRequest("recall", "companion", tuple(context_ids), tuple(range(samples)), sampling)
