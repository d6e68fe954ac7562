"""The trainer thread: one per app, the only place the app trains (a night, or a growth given as `job`).

It runs `run_night` off the UI thread and hands every `NightEvent` to a callback. The app passes the
night screen's `forwarder()`, which posts each event to the screen without waiting (Textual's
thread-safe `post_message`), so nothing here knows Textual. `stop()` asks the night to end at the next step boundary (a few seconds at most: one step,
or one dream line); `join()` waits for it. The thread opens its own `Store` on the companion's file
unless it is given one (the store is thread-safe), and loads its own copy of the weights, so the app's
model is never trained in place.

Start-up in the app::

    day = pending_night(store)          # a night a quit interrupted, or never ran
    if day is not None:
        trainer = TrainerThread(home, day.id, on_event=screen.forwarder(app))
        trainer.start()
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from companion.home import Home
from companion.settings import Settings
from companion.store import Store

__all__ = ["TrainerThread"]


class TrainerThread(threading.Thread):
    """Runs one night in the background. `report` holds its NightReport once it is done, `error` the
    exception if it failed (also reported as an "error" event).

    `job(store, emit, should_stop)` runs another piece of training instead of a night (a growth: see
    `companion.growth`), so that the app still has one thread that trains, and a night and a growth can
    never run at once. `day_id` is then None."""

    def __init__(
        self,
        home: Home,
        day_id: int | None,
        on_event: Callable[[object], None] | None = None,
        *,
        job: Callable[[Store, Callable[[object], None], Callable[[], bool]], object] | None = None,
        store: Store | None = None,
        settings: Settings | None = None,
        device: str | None = None,
        torch_threads: int | None = None,
        **night_options: object,
    ) -> None:
        super().__init__(name=f"companion-night-{home.name}", daemon=True)
        self.home, self.day_id = home, day_id
        self.on_event = on_event or (lambda event: None)
        self._store, self._settings, self._device = store, settings, device
        self._options = night_options
        self._job = job
        self._threads = torch_threads
        self._stop_event = threading.Event()
        self.report = None
        self.error: BaseException | None = None

    def stop(self) -> None:
        """Ask the night to stop at the next step boundary; it is recorded interrupted, weights untouched."""
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def _emit(self, event: object) -> None:
        try:
            self.on_event(event)
        except Exception:  # a closed app must not kill the night: it still ends cleanly
            pass

    def _night_threads(self) -> int:
        """`[night] threads` (0 = auto); settings that cannot be read leave the default (the night
        itself reports them)."""
        if self._settings is not None:
            return self._settings.night.threads
        from companion.settings import SettingsError

        try:
            return self.home.load_settings().night.threads
        except (SettingsError, OSError):
            return 0

    def run(self) -> None:
        from companion.compute.threads import training_claim
        from companion.night.pipeline import run_night  # torch is imported here, off the UI thread
        from companion.night.report import NightEvent  # torch is imported here, off the UI thread

        store = self._store or Store.open(self.home.store_path)
        try:
            # this thread's torch count (`[night] threads`, or 0: the cores free before each step); while
            # it trains, the engine's generations take only the rest (companion.compute.threads)
            with training_claim(self._threads or self._night_threads()):
                if self._job is not None:
                    self.report = self._job(store, self._emit, self._stop_event.is_set)
                else:
                    self.report = run_night(self.home, store, self.day_id, self._settings, self._device,
                                            on_event=self._emit, should_stop=self._stop_event.is_set,
                                            **self._options)
        except BaseException as exc:  # reported, never raised into the void of a thread
            self.error = exc
            text = f"{type(exc).__name__}: {exc}"
            self._emit(NightEvent("error", text=text + "\n" + "".join(traceback.format_exception(exc))[-2000:]))
        finally:
            if self._store is None:
                store.close()
