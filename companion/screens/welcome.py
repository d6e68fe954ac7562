"""The welcome screen: the first run, when no companion lives here yet (or a birth was left unfinished).

Two ways in: adopt the bundled seedling (seconds), or a birth from scratch on the starter corpus plus
the owner's own texts, with the nursery's progress bar, held-out loss and sample lines live. A third
appears when an open base (SmolLM2-135M, see `companion.interop.base.find_base`) is on disk: a birth
from it, its tokenizer becoming the companion's. Enter moves from field to field and, on the last one,
starts; the fields of a birth from scratch (your texts, minutes in the nursery) show only once that way
is chosen. The footer offers only what can be done now.

A birth is built aside (`companion.birth.create`) and appears whole at the end. An unfinished one found at
start opens this screen with three offers: continue the nursery, adopt the seedling into it, or remove
it (after a confirmation that names the folder). Every input is checked before anything is written.
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Log, ProgressBar, Static

from companion.messages import BirthDone, BirthFailed, BirthLog, BirthProgress
from companion.widgets.safe_text import one_line


class WelcomeScreen(Screen):
    """Name the companion and yourself, then adopt the seedling or give birth."""

    DEFAULT_CSS = """
    WelcomeScreen #welcome { width: 90; max-width: 100%; height: 1fr; padding: 1 2; }
    WelcomeScreen #welcome-title { text-style: bold; color: $primary; margin: 0 0 1 0; }
    WelcomeScreen Label { margin: 1 0 0 0; }
    WelcomeScreen #welcome-buttons { height: auto; margin: 1 0; }
    WelcomeScreen #welcome-buttons Button { margin: 0 1 0 0; }
    WelcomeScreen #welcome-status { height: auto; color: $text-muted; }
    WelcomeScreen #welcome-status.-error { color: $error; text-style: bold; }
    WelcomeScreen .scratch-only { display: none; }
    WelcomeScreen.-scratch .scratch-only { display: block; }
    WelcomeScreen #birth-progress, WelcomeScreen #birth-stats, WelcomeScreen #birth-samples { display: none; }
    WelcomeScreen.-birthing #birth-progress, WelcomeScreen.-birthing #birth-stats { display: block; }
    WelcomeScreen.-birthing #birth-samples { display: block; height: 8; border: round $panel; }
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel birth", id="welcome_cancel"),
        Binding("enter", "next_field", "Next", id="welcome_next", priority=True, show=False),
        Binding("ctrl+o", "adopt", "Adopt seedling", id="welcome_adopt", priority=True),
        Binding("ctrl+b", "birth", "Birth from scratch", id="welcome_birth", priority=True),
        Binding("ctrl+r", "remove", "Remove this birth", id="welcome_remove", priority=True),
        Binding("ctrl+l", "from_base", "Born from the base", id="welcome_base", priority=True),
    ]

    def __init__(self, resume_home=None) -> None:
        super().__init__()
        self.resume_home = resume_home  # a home whose birth did not finish
        self._cancel = threading.Event()
        self.busy = False
        self.scratch = resume_home is not None  # the nursery's fields are shown
        self._lock = None
        self.base_path: Path | None = None

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        settings = self.resume_home.load_settings() if self.resume_home is not None else None
        if settings is None:
            from companion.interop.base import find_base

            self.base_path = find_base(self.app.root)
        with VerticalScroll(id="welcome"):
            if settings is None:
                yield Static(Content("Welcome. Let's bring a companion into being."), id="welcome-title")
            else:
                yield Static(Content(
                    f"{one_line(settings.companion.name, 40)}'s birth did not finish (in {self.resume_home.path}). "
                    "Continue the nursery, adopt the seedling into it, or remove it."), id="welcome-title")
            yield Label("The companion's name")
            yield Input(settings.companion.name if settings else "", placeholder="e.g. Scout", id="name",
                        disabled=settings is not None)
            yield Label("Your name")
            yield Input(settings.companion.owner if settings else "", placeholder="e.g. Trey", id="owner",
                        disabled=settings is not None)
            yield Label("Your own texts to learn from at birth (optional): .txt/.md files or folders",
                        classes="scratch-only")
            yield Input(placeholder="~/notes ~/letters.txt", id="corpus", disabled=settings is not None,
                        classes="scratch-only")
            yield Label("Minutes in the nursery (the whole birth: tokenizer, training and checks)",
                        classes="scratch-only")
            yield Input("10", id="minutes", classes="scratch-only")
            with Horizontal(id="welcome-buttons"):
                if settings is None:
                    yield Button("Adopt the seedling (seconds)", variant="primary", id="adopt")
                    yield Button("Birth from scratch…", id="birth")
                    if self.base_path is not None:
                        yield Button("Born from SmolLM2 (a minute)", id="from-base")
                else:
                    yield Button("Continue the nursery", variant="primary", id="birth")
                    yield Button("Adopt the seedling into it", id="adopt")
                    yield Button("Remove it…", variant="error", id="remove")
            if self.base_path is not None:
                yield Static(Content(f"An open base model is here: {self.base_path}"), id="welcome-base")
            yield Static("", id="welcome-status")
            yield ProgressBar(total=1.0, show_eta=False, id="birth-progress")
            yield Static("", id="birth-stats")
            yield Log(id="birth-samples", max_lines=200)
        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.scratch, "-scratch")
        self.query_one("#minutes" if self.resume_home is not None else "#name", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer offers only what can be done now."""
        if action == "cancel":
            return self.busy or len(self.app.screen_stack) > 2
        if action == "remove":
            return self.resume_home is not None and not self.busy
        if action in ("adopt", "birth"):
            return not self.busy
        if action == "from_base":
            return not self.busy and self.resume_home is None and self.base_path is not None
        return True

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.refresh_bindings()

    def status(self, text: str, error: bool = False) -> None:
        widget = self.query_one("#welcome-status", Static)
        widget.update(Content(text))
        widget.set_class(error, "-error")

    def _names(self) -> tuple[str, str]:
        return self.query_one("#name", Input).value.strip(), self.query_one("#owner", Input).value.strip()

    def action_next_field(self) -> None:
        """Enter moves to the next field shown; on the last one it starts the chosen way in; on a button
        it presses it. A priority binding, so focus moves before the next key is read: a fast typist's
        (or a terminal's pasted) next characters land in the next field, not this one."""
        focused = self.focused
        if isinstance(focused, Button):
            focused.press()
            return
        fields = [i for i in self.query(Input) if not i.disabled and (self.scratch or not i.has_class("scratch-only"))]
        if focused in fields and focused is not fields[-1]:
            self.set_focus(fields[fields.index(focused) + 1])
        elif fields:
            # Start only once every field has read the keys already sent to it: each field's queue handles
            # this message after them, and passes it on to the next.
            fields[0].post_message(self.Drained(fields[1:]))
        else:
            self._start()

    class Drained(Message):
        """Passed from field to field: the ones behind it have read their keys."""

        def __init__(self, remaining: list) -> None:
            super().__init__()
            self.remaining = remaining

    def on_welcome_screen_drained(self, message: "WelcomeScreen.Drained") -> None:
        message.stop()
        if message.remaining:
            message.remaining[0].post_message(self.Drained(message.remaining[1:]))
        else:
            self._start()

    def _start(self) -> None:
        if self.scratch:
            self.action_birth()
        else:
            self.action_adopt()

    # -- adopting ---------------------------------------------------------------------------------

    @on(Button.Pressed, "#adopt")
    def action_adopt(self) -> None:
        if self.busy:
            return
        from companion.birth.create import BirthError, check_birth_input, check_seedling
        from companion.home import HomeError

        seedling = Path(self.app.seedling_dir)
        try:
            if self.resume_home is None:
                name, owner = self._names()
                check_birth_input(self.app.root, name, owner, "seedling", [])
            else:
                name, owner = self.resume_home.name, ""
            check_seedling(seedling)
        except (BirthError, HomeError) as error:
            self.status(str(error), error=True)
            return
        self._set_busy(True)
        self.status(f"{name} is adopting the seedling…")
        self._adopt(name, owner, seedling)

    @work(thread=True, group="birth", exclusive=True)
    def _adopt(self, name: str, owner: str, seedling: Path) -> None:
        from companion.birth.create import adopt_seedling, create_home, discard_unborn, finish_birth
        from companion.store import Store

        home = lock = None
        fresh = self.resume_home is None
        try:
            if fresh:
                home, notes = create_home(self.app.root, name, owner, "seedling", [])
                fresh = not notes or not notes[-1].startswith("continuing")
                lock = home.lock()
            else:
                home, notes = self.resume_home, []
                lock = self.app.lock if self.app.lock is not None else home.lock()
            with Store.open(home.store_path) as store:
                adopt_seedling(home, store, seedling)
            home = finish_birth(home)
        except Exception as error:  # told on the screen; an adoption that fails leaves nothing behind
            if fresh and home is not None and home.unborn:
                try:
                    discard_unborn(home)
                except Exception:
                    pass
            if lock is not None and lock is not self.app.lock:
                lock.release()
            self.post_message(BirthFailed(f"{type(error).__name__}: {error}"))
            return
        self._lock = lock
        self.post_message(BirthDone(home.path, notes))

    # -- from an open base -------------------------------------------------------------------------

    @on(Button.Pressed, "#from-base")
    def action_from_base(self) -> None:
        if self.busy or self.resume_home is not None or self.base_path is None:
            return
        from companion.birth.create import BirthError, check_birth_input
        from companion.home import HomeError

        name, owner = self._names()
        try:
            check_birth_input(self.app.root, name, owner, "seedling", [])
        except (BirthError, HomeError) as error:
            self.status(str(error), error=True)
            return
        self._set_busy(True)
        self.add_class("-birthing")
        self.status(f"{name} is being born from {self.base_path.name}…")
        self._from_base(name, owner, self.base_path)

    @work(thread=True, group="birth", exclusive=True)
    def _from_base(self, name: str, owner: str, source: Path) -> None:
        from companion.interop.base import birth_from_base

        try:
            born = birth_from_base(self.app.root, name, owner, source,
                                   log=lambda line: self.post_message(BirthLog(line)))
        except Exception as error:
            self.post_message(BirthFailed(str(error)))
            return
        self.post_message(BirthDone(born.home.path, []))

    # -- birth ------------------------------------------------------------------------------------

    def _minutes(self) -> float | None:
        text = self.query_one("#minutes", Input).value.strip()
        try:
            minutes = float(text)
        except ValueError:
            minutes = -1
        if not 0 < minutes <= 24 * 60:
            self.status(f"minutes = {text!r} is not allowed; expected a number of minutes from 0.1 to 1440", error=True)
            return None
        return minutes

    @on(Button.Pressed, "#birth")
    def action_birth(self) -> None:
        if self.busy:
            return
        if not self.scratch:  # first press: show the nursery's fields; the next press (or Enter) starts
            self.scratch = True
            self.add_class("-scratch")
            self.set_focus(self.query_one("#corpus", Input))
            self.status("Your own texts (optional) and the minutes, then Enter or ctrl+b to begin.")
            return
        from companion.birth.create import BirthError, check_birth_input
        from companion.home import HomeError

        minutes = self._minutes()
        if minutes is None:
            return
        if self.resume_home is None:
            name, owner = self._names()
            try:
                corpus = shlex.split(self.query_one("#corpus", Input).value)
            except ValueError as error:
                self.status(f"cannot read the paths: {error}", error=True)
                return
            corpus = [str(Path(p).expanduser()) for p in corpus]
            try:
                check_birth_input(self.app.root, name, owner, "seedling", corpus)
            except (BirthError, HomeError) as error:
                self.status(str(error), error=True)
                return
        else:
            name, owner, corpus = self.resume_home.name, "", []
        self._set_busy(True)
        self._cancel.clear()
        self.add_class("-birthing")
        self.status(f"{name} is being born… Esc cancels (what was learnt is kept).")
        self._birth(name, owner, corpus, minutes)

    @work(thread=True, group="birth", exclusive=True)
    def _birth(self, name: str, owner: str, corpus: list[str], minutes: float) -> None:
        from companion.birth.create import NurseryPlan, create_home, finish_birth, run_birth_nursery
        from companion.store import Store

        try:
            if self.resume_home is not None:
                home, notes = self.resume_home, []
                lock = self.app.lock if self.app.lock is not None else home.lock()
            else:
                home, notes = create_home(self.app.root, name, owner, "seedling", corpus)
                lock = home.lock()
            self._lock = lock
            with Store.open(home.store_path) as store:
                outcome = run_birth_nursery(
                    home, store, NurseryPlan(minutes=minutes, eval_every_s=15.0),
                    on_progress=lambda p: self.post_message(BirthProgress(p)),
                    should_stop=self._cancel.is_set,
                    log=lambda line: self.post_message(BirthLog(line)),
                )
            home = finish_birth(home)
        except Exception as error:  # told on the screen; the unfinished birth stays aside, to continue
            self.post_message(BirthFailed(f"{type(error).__name__}: {error}"))
            return
        self.post_message(BirthDone(home.path, notes + outcome.notes, cancelled=self._cancel.is_set()))

    def on_birth_progress(self, message: BirthProgress) -> None:
        p = message.progress
        self.query_one("#birth-progress", ProgressBar).update(progress=min(1.0, p.fraction))
        held = f"{p.heldout:.3f}" if p.heldout is not None else "—"
        self.query_one("#birth-stats", Static).update(Content(
            f"step {p.step:,} · loss {p.loss:.3f} · held-out loss {held} (starter probe) · "
            f"{p.tokens / max(p.elapsed, 1e-9):,.0f} tokens/s"))
        if p.sample is not None:
            self.query_one("#birth-samples", Log).write_line(f"sample: {p.sample}")

    def on_birth_log(self, message: BirthLog) -> None:
        self.query_one("#birth-samples", Log).write_line(message.line)
        self.add_class("-birthing")

    def on_birth_failed(self, message: BirthFailed) -> None:
        self._set_busy(False)
        self.remove_class("-birthing")
        if self._lock is not None and self._lock is not self.app.lock:
            self._lock.release()
        self._lock = None
        self.status(f"Birth failed: {message.error}", error=True)

    def on_birth_done(self, message: BirthDone) -> None:
        self._set_busy(False)
        for note in message.notes:
            self.notify(note, title="Note")
        name = Path(message.home_path).name
        if message.cancelled:
            self.notify(f"{name}'s birth paused; what was learnt is kept. Continue it any time "
                        f"(`companion nursery --name {name}`).", title="Birth paused")
        self.app.open_companion(name, lock=self._lock)

    # -- removing an unfinished birth -----------------------------------------------------------------

    @on(Button.Pressed, "#remove")
    def action_remove(self) -> None:
        if self.resume_home is None or self.busy:
            return
        from companion.widgets.text_prompt import ConfirmScreen

        folder = self.resume_home.path

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            from companion.birth.create import BirthError, discard_unborn

            try:
                discard_unborn(self.resume_home)
            except (BirthError, OSError) as error:
                self.status(f"Cannot remove {folder}: {error}", error=True)
                return
            self.notify(f"Removed {folder}.", title="Unfinished birth removed")
            self.app.forget_unborn()

        self.app.push_screen(ConfirmScreen(f"Remove the folder {folder} and everything in it? This cannot be "
                                           "undone.", title="Remove the unfinished birth"), answered)

    def action_cancel(self) -> None:
        if self.busy:
            self._cancel.set()
            self.status("Stopping at the next step; what was learnt is kept…")
        elif len(self.app.screen_stack) > 2:
            self.app.pop_screen()
