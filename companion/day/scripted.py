"""Scripted days lived through the real `DaySession`, for tests and benches.

A night learns from what the day recorded, so a test or a bench that writes its own turns into the store
trains on days the app never makes: no temporal indicators, no reserved room, no good-night line, token
counts made up. Here a script of exchanges (what the owner says, the candidates shown, the pick,
correction or written reply, the stars, the notes, the inner line after the reply) is lived by the same
`DaySession` the chat screen drives, in the app's order: send (indicators due are injected), the round's
candidates recorded with the reply length the app would ask for, ratings, the reply, the model's inner
line, annotations, then the day closes itself when full. No model is needed: candidate texts are
scripted; a bench that wants the model's own candidates passes an `engine`, and each round is then
sampled and recorded by a `Round`, exactly as the chat screen has it done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from companion.day.request import sampling_from_settings
from companion.day.round import Round, Sampler
from companion.day.session import DaySession
from companion.home import Home
from companion.settings import Settings
from companion.store import Candidate, Day, ReplyRecord, Store, TurnRecord

if TYPE_CHECKING:
    from companion.model.tokenizer import Tokenizer

__all__ = ["Exchange", "Lived", "ScriptedDay", "live_day", "fill_day"]

@dataclass(frozen=True)
class Exchange:
    """One message of the owner and what became of it. At most one of `pick` (a candidate's index),
    `correct` (index, corrected text) or `write` (the owner's own reply); none leaves the message
    waiting, as an owner who has not answered yet. `rate` gives stars by candidate index, `note` and
    `tags` annotate the reply, `inner` is the model's inner line after it (annotated with `inner_tags`)."""

    say: str
    options: Sequence[str] = ()
    pick: int | None = None
    correct: tuple[int, str] | None = None
    write: str | None = None
    rate: Mapping[int, int] = field(default_factory=dict)
    note: str | None = None
    tags: Sequence[str] = ()
    inner: str | None = None
    inner_tags: Sequence[str] = ()

    def __post_init__(self) -> None:
        chosen = [x for x in (self.pick, self.correct, self.write) if x is not None]
        if len(chosen) > 1:
            raise ValueError(f"exchange {self.say!r}: give at most one of pick, correct and write")

    def reply_texts(self) -> list[str]:
        """Every text this exchange may put in the companion's turn (for measuring whether it fits)."""
        return [*self.options, *([self.correct[1]] if self.correct else []), *([self.write] if self.write else [])]


@dataclass
class Lived:
    """What an exchange left in the store: the owner's turn, the indicators injected before the
    companion spoke, the round's candidates, the reply (None while waiting) and the inner line."""

    prompt: TurnRecord
    indicators: list[TurnRecord]
    candidates: list[Candidate]
    reply: ReplyRecord | None = None
    inner: TurnRecord | None = None


class ScriptedDay:
    """The open day (or a new one), lived exchange by exchange through `DaySession`."""

    def __init__(self, home: Home, store: Store, tokenizer: Tokenizer | None = None,
                 settings: Settings | None = None, *, block_size: int, checkpoint_id: int | None = None,
                 engine: Sampler | None = None) -> None:
        if tokenizer is None:  # the current checkpoint's own (a growth may have added tokens)
            from companion.history.weights import Weights

            tokenizer = Weights(home, store).tokenizer()
        self.session = DaySession(home, store, tokenizer, settings, block_size=block_size,
                                  checkpoint_id=checkpoint_id)
        self.engine = engine

    @property
    def day(self) -> Day:
        return self.session.day

    def fits(self, exchange: Exchange) -> bool:
        """Whether the day has room for the whole exchange: the message, its longest reply and its
        inner line (indicators and the good-night line are already set aside in the room)."""
        s = self.session
        need = s.cost(exchange.say, "owner") + max((s.cost(t, "companion") for t in exchange.reply_texts()),
                                                   default=0)
        if exchange.inner:
            need += s.cost(exchange.inner, "inner")
        return s.is_open and need <= s.room

    def live(self, exchange: Exchange) -> Lived:
        """Live one exchange whole; raises `MessageRefused` / `DayError` as the day would."""
        lived = self.ask(exchange)
        self.answer(lived, exchange)
        return lived

    def ask(self, exchange: Exchange) -> Lived:
        """The owner sends the message; the round's candidates are recorded and rated as shown. A
        scripted candidate longer than the app would ask the model for is refused before anything is
        recorded (the room a message leaves is known before it is sent: indicators come out of the
        reserved room)."""
        s = self.session
        s.check_message(exchange.say)
        sampled = self.engine is not None and not exchange.options
        if not sampled:
            _check_indices(exchange)
        _check_lengths(s, exchange.options, max(1, min(s.settings.sampling.max_reply_tokens,
                                                       s.room - s.cost(exchange.say, "owner") - 2)))
        sent = s.send(exchange.say)
        if sampled:  # the model's own candidates, sampled and recorded as the app has them
            round_ = Round(s, s.request("reply"))
            round_.finish(round_.sample(self.engine))
            candidates = list(round_.candidates)
        elif exchange.options:
            sampling = sampling_from_settings(s.settings.sampling, s.reply_tokens())
            candidates = s.record_candidates(list(exchange.options), "end", sampling=sampling)
        else:
            candidates = []
        for index, stars in exchange.rate.items():
            s.rate(candidates[index].id, stars)
        return Lived(sent.owner_turn, sent.indicators, candidates)

    def answer(self, lived: Lived, exchange: Exchange) -> Lived:
        """The reply the exchange says, the model's inner line after it, the annotations; then the day
        closes itself if it is full, as the app does after every turn."""
        s = self.session
        if exchange.pick is not None:
            lived.reply = s.pick(lived.candidates[exchange.pick].id)
        elif exchange.correct is not None:
            lived.reply = s.correct(lived.candidates[exchange.correct[0]].id, exchange.correct[1])
        elif exchange.write is not None:
            lived.reply = s.write_reply(exchange.write)
        if lived.reply is not None and (exchange.note or exchange.tags):
            s.annotate(lived.reply.turn.id, exchange.tags, exchange.note)
        if exchange.inner and s.is_open:
            lived.inner = s.add_model_inner(exchange.inner)
        elif lived.reply is not None and self.engine is not None and s.is_open:
            lived.inner = self._sampled_inner()
        if lived.inner is not None and exchange.inner_tags:
            s.annotate(lived.inner.id, exchange.inner_tags)
        if lived.reply is not None:
            s.close_if_full()
        return lived

    def _sampled_inner(self) -> TurnRecord | None:
        """The inner line the model may add after a reply, as the app asks for it (none when the model
        would rather hand the word back, or the day has no room)."""
        request = self.session.request("inner_after")
        if request is None:
            return None
        round_ = Round(self.session, request)
        round_.finish(round_.sample(self.engine))
        return round_.inner_turn

    def good_night(self) -> Day:
        """Close the day with its good-night line (the indicators still due first), unless it closed
        itself when full."""
        return self.session.good_night() if self.session.is_open else self.day


def _check_indices(exchange: Exchange) -> None:
    count = len(exchange.options)
    chosen = exchange.pick if exchange.pick is not None else exchange.correct[0] if exchange.correct else None
    for index in [*([chosen] if chosen is not None else []), *exchange.rate]:
        if not 0 <= index < count:
            raise ValueError(f"exchange {exchange.say!r}: candidate {index} is not among its {count} options")


def _check_lengths(session: DaySession, texts: Sequence[str], max_tokens: int) -> None:
    for text in texts:
        if session.cost(text, "companion") - 2 > max_tokens:  # its role and end tokens counted apart
            raise ValueError(f"scripted candidate {text!r} is longer than the {max_tokens} tokens the day "
                             "would ask the model for")


def live_day(home: Home, store: Store, exchanges: Iterable[Exchange], tokenizer: Tokenizer | None = None, *,
             block_size: int, checkpoint_id: int | None = None, settings: Settings | None = None,
             close: bool = True) -> tuple[Day, list[Lived]]:
    """Live every exchange of a script in one day (refusals raise: a script that does not fit is a bad
    script), then close it with the good-night line unless `close` is False."""
    scripted = ScriptedDay(home, store, tokenizer, settings, block_size=block_size, checkpoint_id=checkpoint_id)
    lived = [scripted.live(x) for x in exchanges]
    return (scripted.good_night() if close else scripted.day), lived


def fill_day(home: Home, store: Store, exchanges: Iterable[Exchange], tokenizer: Tokenizer | None = None, *,
             block_size: int, checkpoint_id: int | None = None,
             settings: Settings | None = None) -> tuple[Day, list[Lived]]:
    """Live exchanges while the next still fits the day, then say good night: a full day, as an owner
    who talks until the gauge is full makes it. `exchanges` may be endless."""
    scripted = ScriptedDay(home, store, tokenizer, settings, block_size=block_size, checkpoint_id=checkpoint_id)
    lived = []
    for exchange in exchanges:
        if not scripted.fits(exchange):
            break
        lived.append(scripted.live(exchange))
    return scripted.good_night(), lived
