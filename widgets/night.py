"""The night's progress: what the trainer thread is doing while the owner watches (or sleeps).

The night runs in a thread; the app forwards its progress reports here as plain numbers.  The loss
sparkline lets the owner see a night going wrong (a spike, a NaN) before the guards roll it back.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Iterable

from textual.app import ComposeResult
from textual.content import Content
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import ProgressBar, Sparkline, Static

from companion.widgets.safe_text import one_line

__all__ = ["NightProgress", "PHASE_LABELS", "format_duration"]

PHASE_LABELS: dict[str, str] = {
    "dreaming": "dreaming — going on from the end of the day, inner and outer voice",
    "probing": "probing — scoring the probe set before training",
    "preparing": "preparing — scoring what the day taught, before training",
    "recalling": "recalling — asking each lesson afresh, as in a new day",
    "training": "training — learning the day, the dreams and older material",
    "checking": "checking — scoring the probe set again",
    "saving": "saving — writing the new weights",
}
"""How each known phase is described; unknown phases are shown by name."""


def format_duration(seconds: float | None) -> str:
    """``4:05`` or ``1:02:03``; ``—`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class NightProgress(Widget):
    """Phase, step / total, a progress bar, a loss sparkline, elapsed time and time left.

    CSS classes: ``-phase-<phase>``, ``-bad-loss`` (last loss not finite), ``-done`` and
    ``-failed`` (after :meth:`finish`).
    """

    DEFAULT_CSS = """
    NightProgress {
        height: auto;
        padding: 0 1;
    }
    NightProgress > #night-phase { text-style: bold; }
    NightProgress > ProgressBar { width: 1fr; }
    NightProgress > #night-loss { height: 3; }
    """

    phase: reactive[str] = reactive("", init=False)

    def __init__(
        self,
        *,
        history: int = 120,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.losses: deque[float] = deque(maxlen=history)
        self.step = 0
        self.total = 0
        self.last_loss: float | None = None
        self.eta_s: float | None = None
        self._started: float | None = None
        self._finished_after: float | None = None
        self._outcome: str = ""
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Static(Content("night — waiting"), id="night-phase")
        yield ProgressBar(total=None, show_eta=False, id="night-bar")
        yield Static(id="night-steps")
        yield Sparkline([], summary_function=max, id="night-loss")
        yield Static(id="night-times")

    def on_mount(self) -> None:
        self._ready = True
        self.set_interval(1.0, self._refresh_times)
        self._refresh_all()

    # -- updates ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start a new night: clears the loss history and the clock."""
        self.losses.clear()
        self.step = self.total = 0
        self.last_loss = self.eta_s = None
        self._started = time.monotonic()
        self._finished_after = None
        self._outcome = ""
        self.remove_class("-done", "-failed", "-bad-loss")
        self._refresh_all()

    def update_progress(
        self,
        phase: str,
        step: int,
        total: int,
        loss: float | None = None,
        eta_s: float | None = None,
    ) -> None:
        """Show one progress report from the trainer (``total`` 0 means "unknown")."""
        if self._started is None:
            self._started = time.monotonic()
        self.phase = phase
        self.step = max(0, int(step))
        self.total = max(0, int(total))
        self.eta_s = eta_s
        if loss is not None:
            self.last_loss = float(loss)
            finite = math.isfinite(self.last_loss)
            self.set_class(not finite, "-bad-loss")
            if finite:
                self.losses.append(self.last_loss)
        self._refresh_all()

    def finish(self, outcome: str, ok: bool = True) -> None:
        """The night ended: ``outcome`` in words (e.g. "accepted", "rolled back: loss spiked")."""
        if self._started is not None:
            self._finished_after = time.monotonic() - self._started
        self._outcome = outcome
        self.eta_s = None
        self.set_class(ok, "-done")
        self.set_class(not ok, "-failed")
        self._refresh_all()

    def watch_phase(self, old: str, new: str) -> None:
        if old:
            self.remove_class(f"-phase-{_token(old)}")
        if new:
            self.add_class(f"-phase-{_token(new)}")

    # -- display ---------------------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        if self._started is None:
            return 0.0
        if self._finished_after is not None:
            return self._finished_after
        return time.monotonic() - self._started

    def phase_text(self) -> str:
        if self._outcome:
            return "night — " + one_line(self._outcome, 120)
        if not self.phase:
            return "night — waiting"
        return PHASE_LABELS.get(self.phase, one_line(self.phase, 60))

    def steps_text(self) -> str:
        steps = f"step {self.step:,} / {self.total:,}" if self.total else f"step {self.step:,}"
        if self.last_loss is None:
            return steps
        loss = f"{self.last_loss:.4f}" if math.isfinite(self.last_loss) else str(self.last_loss)
        return f"{steps} · loss {loss}"

    def times_text(self) -> str:
        text = f"elapsed {format_duration(self.elapsed_s)}"
        if self._finished_after is None:
            text += f" · about {format_duration(self.eta_s)} left"
        return text

    def _refresh_all(self) -> None:
        if not self._ready:
            return
        try:
            bar = self.query_one(ProgressBar)
            if self.total:
                bar.update(total=self.total, progress=min(self.step, self.total))
            else:
                bar.update(total=None)
            self.query_one("#night-loss", Sparkline).data = list(self.losses)
            self.query_one("#night-phase", Static).update(Content(self.phase_text()))
            self.query_one("#night-steps", Static).update(Content(self.steps_text()))
        except NoMatches:
            return  # the screen is being taken down around us: nothing left to show
        self._refresh_times()

    def _refresh_times(self) -> None:
        if not self._ready:
            return
        try:
            self.query_one("#night-times", Static).update(Content(self.times_text()))
        except NoMatches:
            return  # a tick that came after the screen was taken down

    def loss_history(self) -> Iterable[float]:
        return tuple(self.losses)


def _token(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower()) or "none"
