"""The full-screen app: one companion, one day at a time.

Start-up paints before torch is imported: this module, the screens and the widgets import no torch;
the model loads in a thread worker (`load_engine`) and announces itself with `EngineReady`, while the
owner can already read the day and open the settings. The app holds the companion's lock for its
whole life; a second app on the same companion is refused with a clear message.

Hooks for the other parts of the app (the night, past days, checkpoints, books):

* `start_night(day_id)`: called when a day closes (`DayClosed`), and at start-up for a night that a quit
  interrupted: the trainer thread runs the night, the night screen shows it, and the morning reloads
  the weights (when the night was accepted) and begins the next day.
* `open_days` / `open_checkpoints` / `open_books` / `open_lessons` / `grow`: push those screens.
* `reload_weights()`: re-read the current checkpoint in a worker (after a restore, or a night); the
  app does this on `CheckpointsScreen.Restored` without knowing more about that screen.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from companion.home import (
    SEEDLING_DIR,
    Home,
    HomeError,
    LockedError,
    list_companions,
    list_unborn,
    resolve_root,
    themes_dir,
)
from companion.messages import DayClosed, EngineFailed, EngineReady, GrowthFinished, NightFinished, WeightsReloaded
from companion.progress import plural
from companion.settings import Settings, SettingsError, update_settings_file
from companion.themes import DEFAULT_THEME, STYLESHEET_PATH, apply_user_themes, register_themes, watch_user_themes

__all__ = ["CompanionApp", "run_app"]


@dataclass(frozen=True)
class Notice:
    """One thing the app told the owner in a toast."""

    message: str
    title: str = ""
    severity: str = "information"


class CompanionApp(App):
    """The companion's app: welcome or picker, then the day."""

    CSS_PATH = STYLESHEET_PATH
    TITLE = "companion"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="quit", priority=True)]

    def __init__(
        self,
        root: str | Path | None = None,
        name: str | None = None,
        *,
        lock=None,
        device: str | None = None,
        seedling_dir: str | Path | None = None,
        watch_themes: bool = True,
    ) -> None:
        super().__init__()
        self.root = resolve_root(root)
        self.companion_name = name
        self.lock = lock
        self.device = device
        self.seedling_dir = Path(seedling_dir) if seedling_dir is not None else SEEDLING_DIR
        self.watch_themes = watch_themes
        self.home: Home | None = None
        self.store = None
        self.settings: Settings | None = None
        self.engine = None
        self.session = None
        self._user_themes: list[str] = []
        #: Everything the app told the owner in a toast, oldest first (the last 200): toasts fade, this stays.
        self.notices: deque[Notice] = deque(maxlen=200)
        self._wanted_theme: str | None = None
        self.books = None  # the books folder's watcher
        self.trainer = None  # the trainer thread while a night runs
        self.night_screen = None
        self._morning_pending = False  # begin the next day once the night's weights are loaded
        self._nights_shown = 0
        self._told: dict[tuple[str, str], float] = {}  # (title, message) -> shown until (monotonic)

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """One toast per event: the same message already on screen is not stacked again. Each toast is
        also kept in `notices` (a toast fades after a few seconds)."""
        import time

        now = time.monotonic()
        key = (title, message)
        if self._told.get(key, 0.0) > now:
            return
        self._told = {k: until for k, until in self._told.items() if until > now}
        self._told[key] = now + (timeout if timeout is not None else self.NOTIFICATION_TIMEOUT)
        self.notices.append(Notice(str(message), title, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- start-up ---------------------------------------------------------------------------------

    def on_mount(self) -> None:
        register_themes(self)
        self.theme = DEFAULT_THEME
        if self.watch_themes:
            self.run_worker(watch_user_themes(themes_dir(), self._on_user_themes, reserved=()),
                            group="themes", exclusive=True, exit_on_error=False)
        self.show_start()

    def show_start(self) -> None:
        """The first screen: the named companion, the only one, the picker, or the welcome screen. An
        unfinished birth is always offered (to continue, adopt the seedling into, or remove)."""
        try:
            unborn = list_unborn(self.root)
            names = [n for n in list_companions(self.root) if self.root / n not in unborn and
                     not (self.root.name == n and self.root in unborn)]
        except HomeError as error:
            self.exit(return_code=2, message=str(error))
            return
        if self.companion_name is not None:
            match = [p for p in unborn if Home(p).name == self.companion_name and Home(p).unborn]
            if match:
                self.open_unborn(match[0], exit_on_error=True)
            else:
                self.open_companion(self.companion_name, lock=self.lock, exit_on_error=True)
        elif unborn and not names and len(unborn) == 1:
            self.open_unborn(unborn[0], exit_on_error=True)
        elif not names and not unborn:
            from companion.screens.welcome import WelcomeScreen

            self._replace_screens(WelcomeScreen())
        elif len(names) == 1 and not unborn:
            self.open_companion(names[0], lock=self.lock, exit_on_error=True)
        else:
            from companion.screens.picker import PickerScreen

            self._replace_screens(PickerScreen(names, unborn))

    def open_unborn(self, path: Path, *, exit_on_error: bool = False) -> bool:
        """Take the lock of an unfinished birth and offer what can be done with it."""
        from companion.screens.welcome import WelcomeScreen

        home = Home(path)
        try:
            lock = home.lock()
        except (LockedError, HomeError) as error:
            return self._cannot_open(error, exit_on_error)
        if self.lock is not None and self.lock is not lock:
            self.lock.release()
        self.lock = lock
        self._replace_screens(WelcomeScreen(resume_home=home))
        return True

    def _cannot_open(self, error: Exception, exit_on_error: bool) -> bool:
        """Say why a companion cannot be opened: as the exit message at start, else in a notification."""
        if exit_on_error:
            self.exit(return_code=3 if isinstance(error, LockedError) else 2, message=f"companion: {error}")
        else:
            self.notify(str(error), title="Cannot open", severity="error")
        return False

    def forget_unborn(self) -> None:
        """An unfinished birth was removed: let go of its lock and show the first screen again."""
        if self.lock is not None:
            self.lock.release()
        self.lock = None
        self.companion_name = None
        self.show_start()

    def open_companion(self, name: str, *, lock=None, exit_on_error: bool = False, force: bool = False) -> bool:
        """Open the companion `name`: take its lock, open its store and settings, show its day."""
        try:
            home = Home.open(self.root, name)
            if lock is None:
                lock = home.lock()
        except (LockedError, HomeError) as error:
            return self._cannot_open(error, exit_on_error)
        from companion.store import Store, StoreDamaged

        try:
            settings = home.load_settings()
            store = Store.open(home.store_path)
        except StoreDamaged as error:
            self._offer_store_recovery(name, home, lock, error, exit_on_error)
            return False
        except Exception as error:
            lock.release()
            if exit_on_error:
                self.exit(return_code=2, message=f"companion: {error}")
            else:
                self.notify(str(error), title="Cannot open", severity="error")
            return False
        if self.lock is not None and self.lock is not lock:
            self.lock.release()
        self.home, self.store, self.settings, self.lock = home, store, settings, lock
        if lock.note:
            self.notify(lock.note, title="Note")
        self._tidy(home, store)
        self._apply_saved_theme()
        self.set_keymap(dict(settings.ui.bindings))
        if store.latest_checkpoint() is None and not force:
            from companion.screens.welcome import WelcomeScreen

            self._replace_screens(WelcomeScreen(resume_home=home))
            return True
        from companion.screens.chat import ChatScreen

        self._replace_screens(ChatScreen())
        self.load_engine()
        self.watch_books()
        self.backup_if_due()
        return True

    def _tidy(self, home: Home, store) -> None:
        """Leftovers of a kill removed and named, files made private (the pointer is settled by the
        engine's load, off this thread: no torch here)."""
        from companion.safety.start import tidy_at_start

        try:
            notes = tidy_at_start(home, store, settle=False)
        except OSError as error:
            notes = [f"the home could not be tidied: {error}"]
        for note in notes:
            self.notify(note, title="Tidied", timeout=10)

    def _offer_store_recovery(self, name: str, home: Home, lock, error, exit_on_error: bool) -> None:
        """A damaged store is named, and the owner is offered the newest verified backup's (the damaged
        file kept aside); saying no changes nothing."""
        from companion.safety.store_repair import newest_verified_backup

        def give_up(message: str) -> None:
            lock.release()
            if exit_on_error:
                self.exit(return_code=2, message=f"companion: {message}")
            else:
                self.notify(message, title="Cannot open", severity="error", timeout=30)

        info = newest_verified_backup(home)
        if info is None:
            give_up(f"{error} There is no verified backup to restore it from.")
            return
        from companion.widgets.text_prompt import ConfirmScreen

        question = (f"{error.path} is damaged: {'; '.join(error.problems[:2])}.\n\nRestore it from the backup made "
                    f"{info.made_at.astimezone():%Y-%m-%d %H:%M}? What was written after that backup is not in it; "
                    f"the damaged file is kept aside, never deleted.")

        def answered(yes: bool | None) -> None:
            if not yes:
                give_up(str(error))
                return
            from companion.safety.store_repair import recover_store

            try:
                result = recover_store(home)
            except Exception as failure:
                give_up(str(failure))
                return
            self.notify(f"The store was restored from {result.backup.name}; the damaged file is kept as "
                        f"{result.damaged.name}.", title="Store recovered", timeout=20)
            self.open_companion(name, lock=lock, exit_on_error=exit_on_error)

        self.push_screen(ConfirmScreen(question, title="The store is damaged"), answered)

    @work(thread=True, exclusive=True, group="books")
    def watch_books(self) -> None:
        """Scan the books folder (hashing files is I/O: off the UI thread), then watch it."""
        from companion.night.books import BooksFolder

        told: set[tuple[str, str, str]] = set()

        def changed(books) -> None:  # the watcher may report a file several times: tell each once
            fresh = [b for b in books if (b.path, b.sha256, b.status) not in told]
            told.update((b.path, b.sha256, b.status) for b in fresh)
            refused = [b for b in fresh if b.status == "refused"]
            queued = [b for b in fresh if b.status == "queued"]
            if queued:
                self.call_from_thread(self.notify, f"{len(queued)} book(s) queued for the night.", title="Books")
            for book in refused:
                self.call_from_thread(self.notify, f"{book.path}: {book.note}", title="Book refused", severity="warning")

        self.books = BooksFolder(self.home, self.store, max_bytes=self.settings.books.max_bytes, on_change=changed)
        self.books.start()

    @work(thread=True, exclusive=True, group="backup")
    def backup_if_due(self) -> None:
        """The weekly backup (weights, tokenizer, settings, store), verified; the owner is told if it fails."""
        from companion.history.backup import due, make_backup

        try:
            if not due(self.home, self.settings):
                return
            make_backup(self.home, self.store, settings=self.settings)
        except Exception as error:  # BackupError, OSError, a store or settings error: told, never a crash
            self.call_from_thread(self.notify, f"The backup failed: {error}", title="Backup", severity="error", timeout=20)
            return
        self.call_from_thread(self.notify, "Backup made and verified.", title="Backup")

    def action_export_book(self) -> None:
        """Write the personality book (every chosen reply and correction) to a file the owner names."""
        from companion.widgets.text_prompt import TextEditScreen

        if self.store is None:
            return
        default = str(Path.home() / f"{self.home.name}-personality-book.jsonl")

        def chosen(path: str | None) -> None:
            if path:
                self.export_book(path.strip())

        self.push_screen(TextEditScreen(default, title="Export the personality book to (a new file):"), chosen)

    @work(thread=True, group="book")
    def export_book(self, path: str) -> None:
        from companion.history.personality import BookError, export_book

        try:
            result = export_book(self.store, path)
        except (BookError, OSError) as error:
            self.call_from_thread(self.notify, str(error), title="Personality book", severity="error", timeout=15)
            return
        self.call_from_thread(self.notify, f"{plural(result.entries, 'turn')} written to {result.path} (and {result.text_path})",
                              title="Personality book")

    def _replace_screens(self, screen: Screen) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(screen)

    @work(thread=True, exclusive=True, group="engine")
    def load_engine(self) -> None:
        """Import torch and load the weights, off the UI's thread."""
        try:
            from companion.engine import Engine

            engine = Engine.load(self.home, self.store, device=self.device)
        except Exception as error:
            self.post_message(EngineFailed(f"{type(error).__name__}: {error}"))
            return
        self.post_message(EngineReady(engine, engine.notes))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        for note in message.notes:
            self.notify(note, title="Weights", severity="warning")
        from companion.night.pending import pending_night

        pending = pending_night(self.store)  # a night a quit or crash interrupted: it resumes now
        if pending is not None:
            self.notify(f"The night of day {pending.number} did not finish; it resumes from the pre-night weights.",
                        title="Night")
            self.start_night(pending.id)
        else:
            self.begin_day()

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.notify(f"The model could not be loaded: {message.error}", title="Cannot wake up", severity="error",
                    timeout=30)
        chat = self.chat_screen
        if chat is not None:
            chat.set_status("The model could not be loaded; past days and settings are still here.")

    @property
    def chat_screen(self):
        from companion.screens.chat import ChatScreen

        for screen in self.screen_stack:
            if isinstance(screen, ChatScreen):
                return screen
        return None

    # -- days -------------------------------------------------------------------------------------

    def begin_day(self) -> None:
        """Continue the open day, or open a new one on the current weights, and show it."""
        from companion.day import DaySession

        self.session = DaySession(self.home, self.store, self.engine.tokenizer, self.settings,
                                  block_size=self.engine.block_size, checkpoint_id=self.engine.checkpoint_id)
        chat = self.chat_screen
        if chat is not None:
            chat.show_session(self.session)

    def on_day_closed(self, message: DayClosed) -> None:
        self.start_night(message.day_id)

    def start_night(self, day_id: int) -> None:
        """Hand the closed day to the trainer thread and show the night as it happens.

        The trainer loads its own copy of the weights, so the app's model is never trained in place;
        the owner may leave the night screen (escape) and browse past days meanwhile.
        """
        from companion.screens.night import NightScreen
        from companion.night.thread import TrainerThread

        if self.trainer is not None and self.trainer.is_alive():
            self.notify("A night is already running.", severity="warning")
            return
        day = self.store.get_day(day_id)
        screen = NightScreen(day.number if day else None, store=self.store, on_stop=self.stop_night)
        forward = screen.forwarder()

        def on_event(event) -> None:  # on the trainer thread: post, never wait on the UI
            forward(event)
            if event.kind in ("done", "error"):
                self.post_message(NightFinished(day_id, event))

        self.trainer = TrainerThread(self.home, day_id, on_event=on_event, store=self.store, device=self.device)
        # Installed, so that leaving it (escape) keeps it alive and following the night: F5 comes back.
        old = self.night_screen
        if old is not None and old not in self.screen_stack and self.is_screen_installed(old):
            self.uninstall_screen(old)
        self._nights_shown += 1
        self.install_screen(screen, f"night-{self._nights_shown}")
        self.night_screen = screen
        self.push_screen(screen)
        self.trainer.start()

    def resume_night(self) -> None:
        """Start again the night the owner stopped (from the untouched pre-night weights)."""
        from companion.night.pending import pending_night

        if self.night_running:
            return
        pending = pending_night(self.store)
        if pending is None:
            self.notify("There is no night to resume.", severity="information")
            return
        if self.night_screen is not None and self.screen is self.night_screen:
            self.pop_screen()
        self.start_night(pending.id)

    def stop_night(self) -> None:
        """Ask the night to stop at the next step boundary (the weights stay as they were)."""
        if self.trainer is not None:
            self.trainer.stop()

    @property
    def night_running(self) -> bool:
        return self.trainer is not None and self.trainer.is_alive()

    def on_night_finished(self, message: NightFinished) -> None:
        """The morning: load the night's weights if it was accepted, then begin the next day."""
        self.trainer = None
        report = message.event.report
        self._show_morning()
        if message.event.kind == "done" and report is not None and report.status == "accepted":
            self._morning_pending = True
            self.reload_weights()
        elif message.event.kind == "done" and report is not None and report.status == "interrupted":
            # The app is quitting, or the owner stopped it: it resumes at the next start, or now on `r`.
            why = report.reason if report.reason.startswith("not enough room") else "The night was stopped"
            self.notify(f"{why}; the weights are as they were. Press r to resume it now; "
                        "otherwise it resumes at the next start.", title="Night", timeout=15)
        else:
            self.begin_next_day()

    def start_growth(self, plan, screen) -> None:
        """Grow in the trainer thread (refused while a night or another growth runs); `screen` (the
        GrowScreen) shows the progress, and the weights are reloaded when the growth is kept."""
        from companion.growth.grow import run_growth
        from companion.night.thread import TrainerThread

        if self.night_running:
            self.notify("The trainer is busy (a night or a growth); grow when it has ended.", severity="warning")
            return
        settings, device = self.settings, self.device
        forward = screen.forwarder()

        def job(store, emit, should_stop):
            from companion.night.optimizer import best_device

            return run_growth(self.home, store, plan, settings, device=device or best_device(), on_event=emit,
                              should_stop=should_stop)

        def on_event(event) -> None:  # on the trainer thread: post, never wait on the UI
            forward(event)
            if event.kind in ("done", "error"):
                self.post_message(GrowthFinished(event))

        self.trainer = TrainerThread(self.home, None, on_event=on_event, store=self.store, job=job)
        screen.started()
        self.trainer.start()

    def on_growth_finished(self, message: GrowthFinished) -> None:
        self.trainer = None
        result = getattr(message.event, "result", None)
        if result is not None and result.status == "grown":
            self.notify(result.lines()[0], title="Growth", timeout=10)
            self.reload_weights()
        else:
            text = result.lines()[0] if result is not None else message.event.text.splitlines()[0]
            self.notify(text, title="Growth", severity="warning", timeout=10)
        from companion.night.pending import pending_night

        waiting = pending_night(self.store)  # a day that closed while the growth ran
        if waiting is not None:
            self.start_night(waiting.id)

    def _show_morning(self) -> None:
        """The morning report opens when the night ends, even if the owner had left the night screen."""
        screen = self.night_screen
        if screen is not None and screen not in self.screen_stack:
            self.push_screen(screen)

    def action_show_night(self) -> None:
        """Back to the night screen (while a night runs, or its morning report after); when this run
        of the app has seen no night, the last night's morning report from the store."""
        screen = self.night_screen
        if screen is not None:
            if screen in self.screen_stack:
                while self.screen is not screen and len(self.screen_stack) > 1:
                    self.pop_screen()
            else:
                self.push_screen(screen)
            return
        self.open_morning_report()

    def open_morning_report(self, day_id: int | None = None, night_id: int | None = None) -> bool:
        """Show a past night's morning report: the night `night_id`, or the last night of `day_id`,
        or the last night of all. Says so when there is none."""
        if self.store is None:
            return False
        nights = [n for n in self.store.nights(day_id) if n.report]
        if night_id is not None:
            nights = [n for n in nights if n.id == night_id]
        if not nights:
            self.notify("There is no morning report yet: no night has finished." if day_id is None
                        else "This day has no finished night yet.", severity="information")
            return False
        from companion.night.report import NightReport
        from companion.screens.night import MorningReportScreen

        self.push_screen(MorningReportScreen(NightReport.from_dict(nights[-1].report), self.store))
        return True

    def begin_next_day(self) -> None:
        if self.engine is not None:
            self.engine.forget_context()
            self.begin_day()

    # -- weights ----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="engine")
    def reload_weights(self) -> None:
        """Re-read the current checkpoint (after a restore or a night) without restarting."""
        if self.engine is None:
            return
        try:
            notes = self.engine.reload()
        except Exception as error:
            self.post_message(EngineFailed(f"{type(error).__name__}: {error}"))
            return
        self.post_message(WeightsReloaded(self.engine.checkpoint_id, notes))

    @work(thread=True, group="backend")
    def prepare_backend(self) -> None:
        """Make what the chosen backend needs now (llama.cpp: the export, loaded), off the UI's thread,
        and say once why it cannot run, if it cannot."""
        if self.engine is None:
            return
        for note in self.engine.prepare_backend():
            self.call_from_thread(self.notify, note, title="Engine", severity="warning", timeout=15)

    def on_weights_reloaded(self, message: WeightsReloaded) -> None:
        self.notify(f"Now living on checkpoint {message.checkpoint_id}.", title="Weights")
        for note in message.notes:
            self.notify(note, title="Weights", severity="warning")
        if self.session is not None:
            self.session.checkpoint_id = message.checkpoint_id
            if self.engine is not None and self.session.tokenizer.source != self.engine.tokenizer.source:
                self.begin_day()  # the weights read with another tokenizer (tokens added, or restored across)
        if self._morning_pending:
            self._morning_pending = False
            self.begin_next_day()

    def on_checkpoints_screen_restored(self, message) -> None:
        self.reload_weights()

    # -- settings and themes ----------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """New settings saved by the settings screen: used from the next action on."""
        self.settings = settings
        if self.session is not None:
            self.session.settings = settings
        if self.engine is not None:
            self.engine.threads = settings.engine.threads
            self.engine.use_int8(settings.engine.int8)
            if settings.engine.backend != self.engine.backend:
                self.engine.use_backend(settings.engine.backend)
                self.prepare_backend()
        self.set_keymap(dict(settings.ui.bindings))

    def _apply_saved_theme(self) -> None:
        wanted = self.settings.ui.theme
        if wanted in self.available_themes:
            self.theme = wanted
            self._wanted_theme = None
        else:
            self._wanted_theme = wanted  # perhaps an owner theme not loaded yet

    def watch_theme(self, theme: str) -> None:
        if self.home is None or self.settings is None or self._wanted_theme is not None:
            return
        if theme != self.settings.ui.theme:
            try:
                self.settings = update_settings_file(self.home.settings_path, "ui.theme", theme)
            except (SettingsError, OSError) as error:
                self.notify(f"The theme could not be saved: {error}", severity="warning")

    async def _on_user_themes(self, themes, notes) -> None:
        self._user_themes = apply_user_themes(self, themes, self._user_themes)
        for note in notes:
            if "does not exist" not in note:
                self.notify(note, title="Theme file skipped", severity="warning")
        if self._wanted_theme is not None and self._wanted_theme in self.available_themes:
            wanted, self._wanted_theme = self._wanted_theme, None
            self.theme = wanted

    # -- other screens ----------------------------------------------------------------------------

    def _open_screen(self, screen_cls: type[Screen]) -> None:
        """Push one of the companion's screens (each takes the home and the store). Every screen module
        exists and imports no torch, so an ImportError here is a bug and is left to surface."""
        if self.home is None:
            self.notify("Open a companion first.", severity="information")
            return
        self.push_screen(screen_cls(self.home, self.store))

    def action_open_days(self) -> None:
        from companion.screens.days import DaysScreen

        self._open_screen(DaysScreen)

    def action_open_checkpoints(self) -> None:
        from companion.screens.checkpoints import CheckpointsScreen

        self._open_screen(CheckpointsScreen)

    def action_grow(self) -> None:
        if self.night_running:
            self.notify("A night is running; grow when it has ended.", severity="warning")
            return
        from companion.screens.grow import GrowScreen

        self._open_screen(GrowScreen)

    def action_open_books(self) -> None:
        from companion.screens.books import BooksScreen

        self._open_screen(BooksScreen)

    def action_open_lessons(self) -> None:
        from companion.screens.lessons import LessonsScreen

        self._open_screen(LessonsScreen)

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        from companion.screens.chat import CHAT_COMMANDS, ChatScreen

        if isinstance(screen, ChatScreen):
            for title, help_text, action in CHAT_COMMANDS:
                yield SystemCommand(title, help_text, getattr(screen, f"action_{action}"))
        if self.home is not None:
            yield SystemCommand("Past days", "Browse the days lived so far", self.action_open_days)
            yield SystemCommand("Checkpoints", "Saved weights and their story; restore one", self.action_open_checkpoints)
            yield SystemCommand("Books", "Texts queued for the night", self.action_open_books)
            yield SystemCommand("Grow", "Wider, or a longer day, or new words: a preview, then a growth checkpoint", self.action_grow)
            yield SystemCommand("Lessons", "What you taught, whether it is said back; add phrasings, retire (F6)",
                                self.action_open_lessons)
            yield SystemCommand("The night", "The night as it happens, or its morning report (F5)",
                                self.action_show_night)
            yield SystemCommand("Export the personality book", "Every chosen reply and correction, as JSON lines",
                                self.action_export_book)

    # -- the end ----------------------------------------------------------------------------------

    def on_unmount(self) -> None:
        if self.books is not None:
            self.books.stop()
        if self.trainer is not None and self.trainer.is_alive():
            self.trainer.stop()  # at the next step boundary; the night resumes at the next start
            self.trainer.join(timeout=30)
        if self.store is not None:
            self.store.close()
        if self.lock is not None:
            self.lock.release()


def run_app(home: str | None = None, name: str | None = None) -> int:
    """Run the app; the exit status is 0, or 3 when the companion is open elsewhere, 2 on a bad home."""
    root = resolve_root(home)
    lock = None
    try:
        names = list_companions(root)
        target = name if name is not None else (names[0] if len(names) == 1 else None)
        if target is not None:
            lock = Home.open(root, target).lock()
    except LockedError as error:
        print(f"companion: {error}", file=sys.stderr)
        return 3
    except HomeError as error:
        print(f"companion: {error}", file=sys.stderr)
        return 2
    app = CompanionApp(root, name if name is not None else target, lock=lock)
    app.run()
    return app.return_code or 0
