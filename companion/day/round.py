"""One generation round, headless: what it asked, what it has streamed, the ratings given meanwhile,
and its recording.

A round is born from a `SampleRequest` (the day decided it) and lives until it is done, fails or is
abandoned (the app closing mid-stream). Its life has one rule the owner relies on: **everything shown is
recorded**. Candidates are recorded once, however the round ends (done: as generated; failed or
abandoned: what had streamed, as 'stopped'), and a rating given while a card was still streaming is
recorded with its card. An inner line, when done, joins the day (`DaySession.add_model_inner`).

Threads: `sample` runs in a worker thread (it calls the engine, stores each row's text so far and wakes
the view at most once until the view takes the text); everything else runs on the caller's thread
(the app's UI thread). The chat screen is a view of this; tests drive it with no Textual at all.

No torch here: the engine is passed in.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from companion.day.request import SampleRequest

if TYPE_CHECKING:
    from companion.day.session import DaySession
    from companion.store import Candidate
    from companion.store import TurnRecord

__all__ = ["Round", "Sampler"]

_ids = itertools.count(1)


class Sampler(Protocol):
    """What a round needs of the engine (`companion.engine.Engine`)."""

    def generate(self, request: SampleRequest, on_text: Callable[[int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Sequence: ...

    def next_speaker(self, context_ids: Sequence[int]) -> str: ...


class Round:
    """A generation round of `day`, as `request` decided it."""

    def __init__(self, day: DaySession, request: SampleRequest) -> None:
        self.day, self.request = day, request
        self.id = next(_ids)
        self.state = "running"  # then 'done', 'failed' or 'abandoned'
        self.candidates: list[Candidate] = []  # once recorded, one per row
        self.inner_turn: TurnRecord | None = None  # an inner line that joined the day
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}
        self._woken = False
        self._ratings: dict[int, int | None] = {}  # row -> stars, given while the row streamed
        self._recorded = False
        self._then: list[Callable[[], None]] = []

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def cards(self) -> bool:
        return self.request.cards

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def recorded(self) -> bool:
        return self._recorded

    # -- the worker's side ------------------------------------------------------------------------

    def sample(self, engine: Sampler, wake: Callable[[], None] | None = None,
               pause_s: float = 0.0) -> list[tuple[str, str]]:
        """Run the request on `engine` (in a worker thread): each row's text so far is kept for the view,
        and `wake()` is called when new text waits and the view has taken the last. Returns (text,
        finish) per row; none when an inner line after the reply is not what the model wants next."""
        if self.kind == "inner_after" and engine.next_speaker(self.request.context_ids) != "inner":
            return []

        def on_text(row: int, text: str) -> None:
            with self._lock:
                self._texts[row] = text
                first, self._woken = not self._woken, True
            if first and wake is not None:
                wake()
            if pause_s:
                time.sleep(pause_s)

        results = engine.generate(self.request, on_text=on_text, should_stop=self._stop.is_set)
        return [(g.text, g.finish) for g in results]

    def stop(self) -> None:
        """Ask the engine to stop at its next token; each row keeps what it has."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the view's side --------------------------------------------------------------------------

    def take_text(self) -> dict[int, str]:
        """Each row's text so far (row -> text); the next new text wakes the view again."""
        with self._lock:
            self._woken = False
            return dict(self._texts)

    def partial(self) -> list[str]:
        """What each row has shown so far ('' for a row that has shown nothing)."""
        with self._lock:
            return [self._texts.get(row, "") for row in range(self.request.k)]

    def then(self, action: Callable[[], None]) -> None:
        """Run `action` once the round is done (after its candidates are recorded); dropped if it fails."""
        self._then.append(action)

    def take_then(self) -> list[Callable[[], None]]:
        queued, self._then = self._then, []
        return queued

    def rate(self, row: int, stars: int | None) -> None:
        """1-4 stars (None clears) for row `row`'s card: saved now if the round is recorded, else kept
        and recorded with the round, however it ends."""
        if self._recorded:
            self.day.rate(self.candidates[row].id, stars)
        else:
            self._ratings[row] = stars

    def pending_rating(self, row: int) -> bool:
        return row in self._ratings

    # -- the end of the round ---------------------------------------------------------------------

    def finish(self, results: Sequence[tuple[str, str]]) -> None:
        """The engine returned: record the candidates (and the ratings given meanwhile), or let the
        inner line join the day. Store or day errors are raised after the round is marked done. A
        result that comes after the round failed or was abandoned is ignored (what was shown is kept)."""
        if not self._end("done"):
            return
        if self.cards:
            self._record([t for t, _ in results], [f for _, f in results])
        elif results:
            text, finish = results[0]
            self.inner_turn = self.day.add_model_inner(text, finish, sampling=self.request.sampling)

    def fail(self) -> None:
        """The engine failed: the cards keep what they showed, recorded as 'stopped'."""
        if not self._end("failed"):
            return
        self._then = []
        self._record_partial()

    def abandon(self) -> None:
        """The view goes away mid-stream (the app closing): stop the engine, and record what was shown
        and the ratings already given. A late result from the engine is then ignored."""
        self._stop.set()
        if not self._end("abandoned"):
            return
        self._then = []
        self._record_partial()

    def _end(self, state: str) -> bool:
        """Move from running to `state`; False if the round had already ended (only the first end counts)."""
        with self._lock:
            if self.state != "running":
                return False
            self.state = state
            return True

    def _record_partial(self) -> None:
        if self.cards and self.day.is_open:
            texts = self.partial()
            self._record(texts, ["stopped"] * len(texts))

    def _record(self, texts: list[str], finishes: list[str]) -> None:
        """Record the candidates once; every way a round ends comes here."""
        if self._recorded:
            return
        self.candidates = self.day.record_candidates(texts, finishes, sampling=self.request.sampling)
        self._recorded = True
        for row, candidate in enumerate(self.candidates):
            if row in self._ratings:
                self.day.rate(candidate.id, self._ratings.pop(row))
