"""One day with the companion, headless: the transcript, its budget, and every owner action.

A day is one context window. `DaySession` opens the current day (or continues the open one after a
restart), keeps the day's token ids turn by turn (each turn tokenised on its own by the one
formatter, so the gauge and the model count the same tokens and a new turn never re-reads the day),
and commits every owner action to the store the moment it happens. The app only shows it; tests and
scripts drive it without Textual, and it never imports torch (the engine samples; the day records).

Rules this module decides, in one place:

* **Budget.** ``budget = floor(block_size * day.share)``, fixed when the day opens.
  ``room = budget - used - reserved``, where `reserved` is the cost of the lines the day still owes
  (the indicators not yet injected and the good-night line).
* **Temporal indicators.** Quarter *q* (1..4) of the day begins when usage reaches
  ``(q - 1) / 4`` of the budget. Right before the companion's turn (after the owner's message is
  added, before candidates are sampled), and right before the good-night line, every indicator whose
  quarter has begun and which has not yet been injected is added as an inner turn (source
  'indicator'), in order. The lines not yet injected are reserved in the room left, so they always
  fit; a day that fills up has passed its last quarter and closes with all four lines. "Already injected" is read
  from the store (the count of the day's indicator turns), so each line appears exactly once, even
  across restarts, and editing the lines mid-day never repeats one.
* **Too large for any day.** A message that would not fit even in an empty day (with room for a
  minimal reply) is refused as such (kind 'too_large_for_day'), with its token count and the day's
  budget: ending the day would not help, so the app never offers it.
* **Mending.** Until the day closes (its night takes it), the owner may amend the last reply: pick
  another card, correct it again, or rewrite a written reply (`amend_pick`, `amend_correction`,
  `amend_written`). The store stays append-only: an amendment is a new choice superseding the old,
  and the day's context, the night and the personality book read the latest.
* **Full.** A message that does not fit with room for a minimal reply is refused (`MessageRefused`, kind 'no_room': the app offers to end the day). After any turn,
  when fewer than `MIN_EXCHANGE_TOKENS` are left, the day closes itself with the good-night line
  (reason 'full').
* **What to sample.** The screen names what the owner asked for ('reply', 'more', 'inner',
  'inner_after'); `request(kind)` decides the rest (K, seed slots, the reply's length within the room
  left, role, sampling settings) as one `SampleRequest` (`companion.day.request`), and a `Round`
  (`companion.day.round`) samples it and records what was shown.
* **The inner voice after a reply.** After the companion's reply the app asks the engine which role
  the model expects next; when it is the inner role, one inner line is sampled and added
  (`add_model_inner`, source 'model_inner', recorded as an inner candidate too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from companion.day.request import SampleRequest, request_for, sampling_from_settings
from companion.home import Home
from companion.settings import Settings
from companion.store import Annotation, Candidate, Day, Lesson, ReplyRecord, Store, TurnRecord
from companion.transcript import Turn, encode_turn
from companion.model.sampling_settings import SamplingSettings

__all__ = [
    "DaySession",
    "DayError",
    "MessageRefused",
    "SendResult",
    "MAX_MESSAGE_CHARS",
    "MIN_REPLY_TOKENS",
    "MIN_EXCHANGE_TOKENS",
    "INNER_LINE_TOKENS",
    "quarters_begun",
]

MAX_MESSAGE_CHARS = 4000
"""The longest message (or correction, or written line) accepted, in characters. A paste longer
than this is refused with its size: a day holds a few hundred tokens, and a novel belongs in books."""

MIN_REPLY_TOKENS = 4
"""Room a message must leave for the companion to answer at all (role, a word or two, end)."""

MIN_EXCHANGE_TOKENS = 8
"""The day is full when less room than this is left: not even a one-word message and reply fit."""

INNER_LINE_TOKENS = 32
"""The longest inner line the model is asked for."""

# Sources of the companion's reply turns (what answers a pending owner message).
REPLY_SOURCES = frozenset({"chosen", "correction", "written"})


def quarters_begun(used: int, budget: int) -> int:
    """How many quarters of a day of `budget` tokens have begun once `used` are spent (1..4): quarter
    q begins at (q-1)/4 of the budget. The day and the night's fresh mornings both use this rule."""
    return min(4, used * 4 // max(1, budget) + 1)


class DayError(Exception):
    """Something the day cannot do now (the day is closed, nothing to reply to)."""


class MessageRefused(DayError):
    """A message the day will not take; ``kind`` says why: 'empty', 'too_large', 'no_room', 'closed',
    'invalid' (not valid Unicode)."""

    def __init__(self, kind: str, message: str, *, size: int = 0, needed: int = 0, room: int = 0) -> None:
        super().__init__(message)
        self.kind, self.size, self.needed, self.room = kind, size, needed, room


def _refuse_invalid_unicode(text: str, what: str) -> None:
    """Text that is not valid Unicode (a lone surrogate) is refused at the edge, before the tokenizer
    or the store could fail on it half-way."""
    from companion.safety.text import surrogate_problem

    problem = surrogate_problem(text, what)
    if problem is not None:
        raise MessageRefused("invalid", problem, size=len(text))


@dataclass
class SendResult:
    owner_turn: TurnRecord
    indicators: list[TurnRecord] = field(default_factory=list)


class DaySession:
    """The open day: its turns, token count and budget, and the owner's actions on it."""

    def __init__(
        self,
        home: Home,
        store: Store,
        tokenizer,
        settings: Settings | None = None,
        *,
        block_size: int,
        checkpoint_id: int | None = None,
    ) -> None:
        self.home, self.store, self.tokenizer = home, store, tokenizer
        self.settings = settings or home.load_settings()
        self.block_size = block_size
        self.checkpoint_id = checkpoint_id
        day = store.current_day()
        if day is None:
            day = store.open_day(self.budget_for(block_size), checkpoint_id)
        self.day: Day = day
        self._turns: list[TurnRecord] = []
        self._ids: list[list[int]] = []
        for turn in store.turns(day.id):
            self._remember(turn)
        if not self._turns:
            self._add("inner", self.settings.greeting_line(), "greeting")

    # -- shape of the day -------------------------------------------------------------------------

    def budget_for(self, block_size: int) -> int:
        return int(block_size * self.settings.day.share)

    @property
    def budget(self) -> int:
        return self.day.budget_tokens

    @property
    def turns(self) -> list[TurnRecord]:
        return list(self._turns)

    @property
    def used(self) -> int:
        """Tokens the day holds: the sum of its turns' counts, as the formatter makes them."""
        return sum(len(ids) for ids in self._ids)

    def context_ids(self) -> list[int]:
        """The day's tokens, exactly what the model reads."""
        return [i for ids in self._ids for i in ids]

    def cost(self, text: str, role: str = "owner") -> int:
        """Tokens a turn with this text would take."""
        return len(encode_turn(self.tokenizer, Turn(role, text)))

    @property
    def goodnight_cost(self) -> int:
        return self.cost(self.settings.goodnight_line(), "inner")

    @property
    def reserved(self) -> int:
        """Room set aside for the lines the day still owes: its indicators not yet injected, and
        the good-night line. A day never runs out of room for its own time passing."""
        lines = self.settings.indicator_lines()[self.indicators_injected:]
        return self.goodnight_cost + sum(self.cost(line, "inner") for line in lines)

    @property
    def room(self) -> int:
        """Tokens left for the owner's and the companion's turns."""
        return self.budget - self.used - self.reserved

    def fits(self, text: str, role: str = "owner") -> bool:
        return self.cost(text, role) <= self.room

    @property
    def is_open(self) -> bool:
        return self.day.is_open

    @property
    def is_full(self) -> bool:
        return self.room < MIN_EXCHANGE_TOKENS

    def reply_room(self) -> int:
        """The most tokens a reply's text may have (its role and end tokens counted apart)."""
        return max(0, self.room - 2)

    def reply_tokens(self, wanted: int | None = None) -> int:
        """How many new tokens to ask the model for: the setting, capped by the room left."""
        wanted = self.settings.sampling.max_reply_tokens if wanted is None else wanted
        return max(1, min(wanted, self.reply_room()))

    # -- indicators -------------------------------------------------------------------------------

    def quarters_begun(self, used: int | None = None) -> int:
        """How many quarters of the day have begun (1..4): quarter q begins at (q-1)/4 of the budget."""
        return quarters_begun(self.used if used is None else used, self.budget)

    @property
    def indicators_injected(self) -> int:
        return sum(1 for t in self._turns if t.source == "indicator")

    def due_indicators(self) -> list[str]:
        """The indicator lines to inject before the companion's turn now, in order."""
        lines = self.settings.indicator_lines()
        # Measured before any of them is added: an indicator's own tokens never trigger the next one.
        return list(lines[self.indicators_injected:self.quarters_begun()])

    def inject_indicators(self) -> list[TurnRecord]:
        return [self._add("inner", line, "indicator") for line in self.due_indicators()]

    # -- the owner's message ----------------------------------------------------------------------

    @property
    def pending_prompt(self) -> TurnRecord | None:
        """The owner's message still waiting for the companion's reply, if any."""
        for turn in reversed(self._turns):
            if turn.role == "owner":
                return turn
            if turn.role == "companion" and turn.source in REPLY_SOURCES:
                return None
        return None

    @property
    def empty_day_room(self) -> int:
        """Room an empty day leaves for messages and replies: the budget less the greeting, the four
        indicator lines and the good-night line."""
        lines = [self.settings.greeting_line(), *self.settings.indicator_lines(), self.settings.goodnight_line()]
        return self.budget - sum(self.cost(line, "inner") for line in lines)

    def check_message_alone(self, text: str) -> None:
        """The checks that do not depend on the day's state: refuse an empty message, one too long
        to type, and one that no day could hold. Change nothing."""
        if not text.strip():
            raise MessageRefused("empty", "nothing to send")
        _refuse_invalid_unicode(text, "the message")
        if len(text) > MAX_MESSAGE_CHARS:
            raise MessageRefused(
                "too_large",
                f"refused: the message is {len(text):,} characters; the most is {MAX_MESSAGE_CHARS:,}",
                size=len(text),
            )
        tokens = self.cost(text, "owner")
        if tokens + MIN_REPLY_TOKENS > self.empty_day_room:
            raise MessageRefused(
                "too_large_for_day",
                f"this message is {tokens:,} tokens, longer than a whole day: a day holds {self.budget:,} "
                f"tokens, {max(0, self.empty_day_room):,} of them for messages and replies. "
                "Shorten it, or give long texts as books",
                size=len(text), needed=tokens + MIN_REPLY_TOKENS, room=max(0, self.empty_day_room),
            )

    def check_message(self, text: str) -> None:
        """Raise `MessageRefused` if the message cannot be sent now; change nothing."""
        if not self.is_open:
            raise MessageRefused("closed", f"day {self.day.number} is closed")
        self.check_message_alone(text)
        if self.pending_prompt is not None:
            raise DayError("the companion has not answered yet: pick, correct or write its reply first")
        needed = self.cost(text, "owner") + MIN_REPLY_TOKENS  # indicators are in `reserved`
        if needed > self.room:
            raise MessageRefused(
                "no_room",
                f"this message needs {needed:,} tokens with a reply, but the day has {max(0, self.room):,} left",
                size=len(text), needed=needed, room=max(0, self.room),
            )

    def send(self, text: str) -> SendResult:
        """Add the owner's message as typed, then the indicators now due (before the companion speaks)."""
        self.check_message(text)
        owner = self._add("owner", text, "typed")
        return SendResult(owner, self.inject_indicators())

    # -- candidates -------------------------------------------------------------------------------

    def candidates(self, role: str = "companion") -> list[Candidate]:
        """The candidates shown for the pending message (every round), oldest first."""
        prompt = self.pending_prompt
        if prompt is None:
            return []
        return [c for c in self.store.candidates(prompt_turn_id=prompt.id) if c.role == role]

    def candidates_for(self, prompt_turn_id: int) -> list[Candidate]:
        return [c for c in self.store.candidates(prompt_turn_id=prompt_turn_id) if c.role == "companion"]

    def next_slots(self, k: int) -> list[int]:
        """Seed slots for the next round: never reused, so "more" never repeats a candidate."""
        start = len(self.candidates())
        return list(range(start, start + k))

    def request(self, kind: str) -> SampleRequest | None:
        """What to sample now for what the owner asked ('reply', 'more', 'inner', 'inner_after'):
        one object the engine runs and the store records (see `companion.day.request`). None when
        an inner line is asked for and the day has no room left for one."""
        return request_for(self, kind)

    def record_candidates(self, texts: Sequence[str], finishes: Sequence[str] | str = "end", *,
                          sampling: SamplingSettings | None = None) -> list[Candidate]:
        """Record a round of candidates for the pending message (all of them: shown is recorded),
        with the sampling settings that made them (by default the settings', at the reply's length)."""
        prompt = self._require_prompt()
        sampling = sampling or sampling_from_settings(self.settings.sampling)
        return self.store.add_candidates(self.day.id, prompt.id, list(texts), finishes,
                                         settings=sampling, role="companion",
                                         checkpoint_id=self.checkpoint_id)

    def rate(self, candidate_id: int, stars: int | None):
        """1-4 stars, or None to clear (no rating is not a low rating)."""
        return self.store.rate(candidate_id, stars)

    def ratings(self) -> dict[int, int]:
        return self.store.ratings(day_id=self.day.id)

    # -- the companion's reply --------------------------------------------------------------------

    def pick(self, candidate_id: int, *, implicit: bool = False) -> ReplyRecord:
        """A candidate becomes the companion's reply, as it was generated. ``implicit``: the owner
        replied without picking and the highlighted card was taken (recorded as such)."""
        prompt = self._require_prompt()
        candidate = self._candidate(candidate_id, prompt)
        return self._reply(prompt, "pick", None, candidate.id, candidate.text, implicit=implicit)

    def correct(self, candidate_id: int, text: str) -> ReplyRecord:
        """A candidate edited into what it should have said becomes the reply."""
        prompt = self._require_prompt()
        candidate = self._candidate(candidate_id, prompt)
        self._check_text(text, "companion")
        return self._reply(prompt, "correction", text, candidate.id, text)

    def write_reply(self, text: str) -> ReplyRecord:
        """The reply the owner wanted, written by the owner, becomes the companion's turn."""
        prompt = self._require_prompt()
        self._check_text(text, "companion")
        return self._reply(prompt, "written", text, None, text)

    def _reply(self, prompt: TurnRecord, kind: str, text: str | None, candidate_id: int | None, shown: str,
               implicit: bool = False) -> ReplyRecord:
        ids = encode_turn(self.tokenizer, Turn("companion", shown))
        reply = self.store.record_reply(self.day.id, prompt.id, kind, text, candidate_id=candidate_id,
                                        tokens=len(ids), role="companion", implicit=implicit)
        self._remember(reply.turn, ids)
        return reply

    # -- lessons ----------------------------------------------------------------------------------

    def remember(self, reply_turn_id: int | None = None) -> Lesson:
        """The owner marks a reply "remember this": it becomes a lesson, its question the owner's
        message it answered. Without ``reply_turn_id``, the day's latest reply of the companion.
        (Corrections and written replies are lessons already, recorded with the reply itself.)"""
        if reply_turn_id is None:
            replies = [t for t in self._turns if t.role == "companion" and t.source in REPLY_SOURCES]
            if not replies:
                raise DayError("the companion has not replied yet today: there is nothing to remember")
            reply_turn_id = replies[-1].id
        return self.store.remember(reply_turn_id)

    # -- mending the last reply -------------------------------------------------------------------

    @property
    def amendable_reply(self) -> TurnRecord | None:
        """The reply the owner may still amend: the day's last reply, while the day is open and no
        message has followed it (inner lines may have)."""
        if not self.is_open:
            return None
        for turn in reversed(self._turns):
            if turn.role == "owner":
                return None
            if turn.role == "companion" and turn.source in REPLY_SOURCES:
                return turn
        return None

    def amend_pick(self, candidate_id: int) -> ReplyRecord:
        """Let another candidate of the same message be the reply instead."""
        turn = self._require_amendable()
        candidate = self.store.get_candidate(candidate_id)
        if candidate is None or candidate.role != "companion":
            raise DayError(f"candidate {candidate_id} is not a reply candidate")
        return self._amend(turn, "pick", candidate.text, candidate.id)

    def amend_correction(self, candidate_id: int, text: str) -> ReplyRecord:
        """Correct the reply again (a typo in a correction is mended before the night trains on it)."""
        turn = self._require_amendable()
        return self._amend(turn, "correction", text, candidate_id)

    def amend_written(self, text: str) -> ReplyRecord:
        """Rewrite the reply as the owner's own words."""
        turn = self._require_amendable()
        return self._amend(turn, "written", text, None)

    def _require_amendable(self) -> TurnRecord:
        if not self.is_open:
            raise DayError(f"day {self.day.number} is closed and its night has it; it can no longer be amended")
        turn = self.amendable_reply
        if turn is None:
            raise DayError("there is no reply to amend: a message has followed the last reply")
        return turn

    def _amend(self, turn: TurnRecord, kind: str, text: str, candidate_id: int | None) -> ReplyRecord:
        index = next(i for i, t in enumerate(self._turns) if t.id == turn.id)
        if kind != "pick":
            if not text.strip():
                raise MessageRefused("empty", "nothing written")
            if len(text) > MAX_MESSAGE_CHARS:
                raise MessageRefused("too_large", f"refused: {len(text):,} characters; the most is "
                                     f"{MAX_MESSAGE_CHARS:,}", size=len(text))
        ids = encode_turn(self.tokenizer, Turn("companion", text))
        room = self.room + len(self._ids[index])
        if len(ids) > room:
            raise MessageRefused("no_room", f"this needs {len(ids):,} tokens but the day has {max(0, room):,} left",
                                 size=len(text), needed=len(ids), room=max(0, room))
        reply = self.store.amend_reply(turn.id, kind, text if kind != "pick" else None,
                                       candidate_id=candidate_id, tokens=len(ids))
        self._turns[index] = reply.turn
        self._ids[index] = ids
        return reply

    # -- the inner voice --------------------------------------------------------------------------

    def write_inner(self, text: str) -> TurnRecord:
        """An inner line the owner writes, to show the companion how to reflect."""
        self._check_text(text, "inner")
        return self._add("inner", text, "owner_inner")

    def inner_tokens(self) -> int:
        return max(0, min(INNER_LINE_TOKENS, self.room - 2))

    def add_model_inner(self, text: str, finish: str = "end", *,
                        sampling: SamplingSettings | None = None) -> TurnRecord | None:
        """An inner line the model produced: recorded as an inner candidate (with the sampling
        settings that made it) and added to the day.

        Returns None (the candidate still recorded) when it is empty or no longer fits."""
        last = self._turns[-1] if self._turns else None
        sampling = sampling or sampling_from_settings(self.settings.sampling, self.inner_tokens())
        [candidate] = self.store.add_candidates(
            self.day.id, last.id if last else None, [text], finish, role="inner",
            settings=sampling, checkpoint_id=self.checkpoint_id)
        if not text.strip() or not self.is_open or not self.fits(text, "inner"):
            return None
        return self._add("inner", text, "model_inner", candidate_id=candidate.id)

    def annotate(self, turn_id: int, tags: Sequence[str] = (), note: str | None = None) -> Annotation:
        """Tags (keep / insightful / off / the owner's own) and a free note on a line of the day."""
        return self.store.annotate(turn_id=turn_id, tags=list(tags), note=note or None)

    def annotation(self, turn_id: int) -> Annotation | None:
        return self.store.annotation(turn_id=turn_id)

    # -- the end of the day -----------------------------------------------------------------------

    def good_night(self, reason: str = "goodnight") -> Day:
        """Add the good-night line and close the day ('goodnight' by the owner, or 'full')."""
        if not self.is_open:
            raise DayError(f"day {self.day.number} is already closed")
        self.inject_indicators()  # a quarter that began with no companion turn since still gets its line
        self._add("inner", self.settings.goodnight_line(), "goodnight")
        self.day = self.store.close_day(self.day.id, reason)
        return self.day

    def close_if_full(self) -> Day | None:
        """Close the day (reason 'full') when the next exchange cannot fit; the closed day, or None."""
        if self.is_open and self.is_full:
            return self.good_night("full")
        return None

    # -- internals --------------------------------------------------------------------------------

    def _add(self, role: str, text: str, source: str, candidate_id: int | None = None) -> TurnRecord:
        ids = encode_turn(self.tokenizer, Turn(role, text))
        turn = self.store.add_turn(self.day.id, role, text, source, candidate_id=candidate_id, tokens=len(ids))
        self._remember(turn, ids)
        return turn

    def _remember(self, turn: TurnRecord, ids: list[int] | None = None) -> None:
        if turn.role not in ("owner", "companion", "inner"):
            return
        self._turns.append(turn)
        self._ids.append(ids if ids is not None else encode_turn(self.tokenizer, Turn(turn.role, turn.text)))

    def _require_prompt(self) -> TurnRecord:
        if not self.is_open:
            raise DayError(f"day {self.day.number} is closed")
        prompt = self.pending_prompt
        if prompt is None:
            raise DayError("there is no message waiting for a reply")
        return prompt

    def _candidate(self, candidate_id: int, prompt: TurnRecord) -> Candidate:
        candidate = self.store.get_candidate(candidate_id)
        if candidate is None or candidate.prompt_turn_id != prompt.id or candidate.role != "companion":
            raise DayError(f"candidate {candidate_id} does not answer the waiting message")
        return candidate

    def _check_text(self, text: str, role: str) -> None:
        if not self.is_open:
            raise MessageRefused("closed", f"day {self.day.number} is closed")
        if not text.strip():
            raise MessageRefused("empty", "nothing written")
        _refuse_invalid_unicode(text, "the text")
        if len(text) > MAX_MESSAGE_CHARS:
            raise MessageRefused("too_large", f"refused: {len(text):,} characters; the most is {MAX_MESSAGE_CHARS:,}",
                                 size=len(text))
        needed = self.cost(text, role)
        if needed > self.room:
            raise MessageRefused("no_room", f"this needs {needed:,} tokens but the day has {max(0, self.room):,} left",
                                 size=len(text), needed=needed, room=max(0, self.room))
