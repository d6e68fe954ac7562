"""Growing from the palette: say how, read the preview (sizes, memory, measured time per step), confirm,
and watch the growth run in the trainer thread.

Nothing here imports torch or trains: the plan and the step timing run in a thread worker, the growth in
the app's trainer thread (`CompanionApp.start_growth`), which posts `GrowthEvent`s here.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from companion.growth.plan import GrowthError, GrowthPlan, parse_width, preview_lines
from companion.home import Home
from companion.store import Store
from companion.widgets.night import NightProgress
from companion.widgets.safe_text import display_safe
from companion.widgets.text_prompt import ConfirmScreen

__all__ = ["GrowScreen", "parse_request", "parse_tokens_request"]

PREVIEW_ROWS = 1  # the preview times a step of one block (a night's step is several: see the CLI)


def parse_request(text: str) -> tuple[int | None, int | None]:
    """`width 384`, `v2`, `context 1024` (or `384` alone: a width) -> (width, context)."""
    words = text.lower().replace("=", " ").split()
    if not words:
        raise GrowthError("say `width D` (or a preset v1..v4) or `context N`")
    if words[0] in ("context", "ctx", "block") and len(words) == 2:
        try:
            return None, int(words[1])
        except ValueError:
            raise GrowthError(f"context {words[1]!r} is not a number of tokens") from None
    if words[0] in ("width", "wide", "wider") and len(words) == 2:
        return parse_width(words[1]), None
    if len(words) == 1:
        return parse_width(words[0]), None
    raise GrowthError(f"{text.strip()!r}: say `width D` (or a preset v1..v4) or `context N`")


def parse_tokens_request(text: str) -> list[str] | None:
    """`tokens Pemberton okapi` (or `add ...`) -> the words to add; None when the request is not one.
    Each word is also added with a leading space (see `companion.growth.tokens`)."""
    words = text.split()
    if not words or words[0].lower() not in ("tokens", "token", "add"):
        return None
    if len(words) == 1:
        raise GrowthError("say which words: `tokens Pemberton okapi`")
    from companion.growth.tokens import TokenInputError, _checked

    try:
        return [_checked(word, repr(word)) for word in words[1:]]
    except TokenInputError as exc:
        raise GrowthError(str(exc)) from None


class GrowScreen(Screen):
    """The growth: request, preview, confirmation, progress, outcome."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("s", "stop", "Stop growth", show=False)]

    DEFAULT_CSS = """
    GrowScreen > Vertical { padding: 0 1; height: auto; }
    GrowScreen #grow-title { text-style: bold; }
    GrowScreen #grow-preview, GrowScreen #grow-result { height: auto; margin-top: 1; }
    GrowScreen NightProgress { display: none; }
    GrowScreen.-running NightProgress, GrowScreen.-done NightProgress { display: block; }
    """

    class Planned(Message):
        def __init__(self, plan: GrowthPlan | None, lines: list[str], error: str = "") -> None:
            super().__init__()
            self.plan, self.lines, self.error = plan, lines, error

    class Progress(Message):
        def __init__(self, event: Any) -> None:
            super().__init__()
            self.event = event

    def __init__(self, home: Home, store: Store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.plan: GrowthPlan | None = None
        self.outcome: str = ""
        self.running = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Content(f"Grow {display_safe(self.home.name)}"), id="grow-title")
            yield Static(Content("Type `width D` (a multiple of the head size, or a preset v1..v4) to widen, "
                                 "`context N` for a longer day, or `tokens WORD...` to give words their own "
                                 "tokens; enter shows the preview."), id="grow-help")
            yield Input(placeholder="width 384 · context 1024 · v2 · tokens Pemberton", id="grow-input")
            yield Static(id="grow-preview")
            yield NightProgress(id="grow-progress")
            yield Static(id="grow-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def action_back(self) -> None:
        self.app.pop_screen()  # a running growth goes on in the trainer thread; the app says when it ends

    def action_stop(self) -> None:
        if self.running:
            self.app.stop_night()

    @on(Input.Submitted, "#grow-input")
    def _asked(self, event: Input.Submitted) -> None:
        if self.running:
            return
        try:
            tokens = parse_tokens_request(event.value)
            width, context = parse_request(event.value) if tokens is None else (None, None)
        except GrowthError as exc:
            self._say_preview(f"Growth refused: {exc}")
            return
        if getattr(self.app, "night_running", False):
            self._say_preview("Growth refused: a night is running; grow when it has ended.")
            return
        self._say_preview("Measuring the preview...")
        self._plan(width, context, tokens)

    @work(thread=True, exclusive=True, group="grow-plan")
    def _plan(self, width: int | None, context: int | None, tokens: list[str] | None = None) -> None:
        from companion.growth.measure import seconds_per_step
        from companion.growth.plan import plan_growth
        from companion.history.weights import Weights
        from companion.model.growth import stretch, widen

        settings = self.home.load_settings()
        try:
            plan = plan_growth(self.home, self.store, width=width, context=context, tokens=tokens,
                               batch_tokens=settings.night.batch_tokens)
            if plan.kind == "tokens":  # a few more rows: no step worth timing
                self.post_message(self.Planned(plan, preview_lines(plan)))
                return
            model = Weights(self.home, self.store).load(plan.current).model.float()
            grown = widen(model, plan.after.n_embd) if plan.kind == "width" else stretch(model, plan.after.block_size)
            before = seconds_per_step(model, plan.before.block_size * PREVIEW_ROWS, steps=1)
            after = seconds_per_step(grown, plan.after.block_size * PREVIEW_ROWS, steps=1)
        except GrowthError as exc:
            self.post_message(self.Planned(None, [], str(exc)))
            return
        lines = preview_lines(plan, before, after, settings.day.share)
        self.post_message(self.Planned(plan, lines))

    @on(Planned)
    def _planned(self, message: Planned) -> None:
        if message.plan is None:
            self._say_preview(f"Growth refused: {message.error}")
            return
        self.plan = message.plan
        text = "\n".join(message.lines)
        self._say_preview(text)

        def answered(yes: bool | None) -> None:
            if yes and self.plan is not None:
                self.app.start_growth(self.plan, self)
            elif not yes:
                self.query_one("#grow-result", Static).update(Content("Not grown; nothing changed."))

        self.app.push_screen(ConfirmScreen(text, title="Grow?", yes_label="Grow"), answered)

    def started(self) -> None:
        """Called by the app once the trainer thread has the growth."""
        self.running = True
        self.add_class("-running")
        self.query_one(NightProgress).start()
        self.query_one("#grow-result", Static).update(Content("Growing... (s stops it; nothing is kept then)"))

    def forwarder(self):
        """For the trainer thread: posts each GrowthEvent here without waiting."""
        return lambda event: self.post_message(self.Progress(event))

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        event = message.event
        progress = self.query_one(NightProgress)
        if event.kind == "phase":
            progress.update_progress(event.phase, 0, 0)
        elif event.kind == "step":
            progress.update_progress(event.phase, event.step, event.total, event.loss, event.eta_s)
        elif event.kind in ("done", "error"):
            self.running = False
            self.remove_class("-running")
            self.add_class("-done")
            result = getattr(event, "result", None)
            ok = result is not None and result.status == "grown"
            self.outcome = result.status if result is not None else "failed"
            progress.finish("grown" if ok else self.outcome, ok=ok)
            self.query_one("#grow-result", Static).update(Content(display_safe(event.text)))

    def _say_preview(self, text: str) -> None:
        self.query_one("#grow-preview", Static).update(Content(display_safe(text)))
