"""The night on screen: its progress while the trainer thread works, and the morning report after.

Nothing here trains or waits: the trainer thread posts `NightEvent`s (thread-safe `post_message`,
never blocking the night on the UI), and the only disk work, writing an annotation on a dream line,
runs in a thread worker. Use from the app::

    screen = NightScreen(day_number=day.number, store=store, on_stop=lambda: trainer.stop())
    app.install_screen(screen, "night")      # installed: it keeps its state while the owner browses
    app.push_screen("night")
    trainer = TrainerThread(home, day.id, on_event=screen.forwarder(), store=store)
    trainer.start()

(`CompanionApp.start_night` does this, and also tells the app when the night is done.)

A past night's report is shown with `MorningReportScreen(NightReport.from_dict(night.report), store)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from companion.night.report import OUTCOMES as _OUTCOME
from companion.night.report import report_lines
from companion.widgets.inner import AnnotationEditor
from companion.widgets.night import NightProgress
from companion.widgets.safe_text import display_safe, one_line
from companion.widgets.transcript import TranscriptEntry, TranscriptView

__all__ = ["NightScreen", "MorningReport", "MorningReportScreen", "report_lines"]

class MorningReport(Widget):
    """What the night taught, what it cost, how long it took, its outcome, and the dream with its lines
    annotatable (enter or `a` on a line). `store` may be None: then the dream is shown read-only."""

    DEFAULT_CSS = """
    MorningReport { height: auto; padding: 0 1; }
    MorningReport > #morning-summary { height: auto; }
    MorningReport > #morning-dream-title { margin-top: 1; text-style: bold; }
    MorningReport > TranscriptView { height: auto; max-height: 20; }
    """

    BINDINGS = [Binding("a", "annotate", "Annotate dream line")]

    def __init__(self, report: Any = None, store: Any = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.report, self.store = report, store

    def compose(self) -> ComposeResult:
        yield Static(id="morning-summary")
        yield Static(Content("The dream"), id="morning-dream-title")
        yield TranscriptView(id="morning-dream")

    def on_mount(self) -> None:
        if self.report is not None:
            self.show(self.report)

    def show(self, report: Any) -> None:
        """Show a NightReport (and load the dream lines' annotations off the UI thread)."""
        from companion.transcript import parse_text

        self.report = report
        self.query_one("#morning-summary", Static).update(Content("\n".join(display_safe(line) for line in report_lines(report))))
        lines = parse_text(report.dream_text or "")
        self.query_one("#morning-dream-title", Static).display = bool(lines)
        view = self.query_one(TranscriptView)
        view.set_lines([TranscriptEntry(t.role, t.text, source="dream") for t in lines])
        if self.store is not None and report.dream_id is not None and lines:
            self.run_worker(lambda: self._load_annotations(report.dream_id, len(lines)), thread=True,
                            group="morning-annotations", exclusive=True)

    def _load_annotations(self, dream_id: int, count: int) -> None:
        found = {}
        for i in range(count):
            note = self.store.annotation(dream_id=dream_id, line_index=i)
            if note is not None:
                found[i] = (list(note.tags), note.note or "")
        self.app.call_from_thread(self._apply_annotations, found)

    def _apply_annotations(self, found: dict[int, tuple[list[str], str]]) -> None:
        lines = self.query_one(TranscriptView).lines
        for i, (tags, note) in found.items():
            if i < len(lines):
                lines[i].set_annotation(tags, note)

    @on(TranscriptView.LineActivated)
    def _activated(self, event: TranscriptView.LineActivated) -> None:
        event.stop()
        if event.index is not None:
            self._edit(event.index)

    def action_annotate(self) -> None:
        cursor = self.query_one(TranscriptView).cursor
        if cursor is not None:
            self._edit(cursor)

    def _edit(self, index: int) -> None:
        if self.store is None or self.report is None or self.report.dream_id is None:
            self.notify("This dream cannot be annotated here.", severity="warning")
            return
        line = self.query_one(TranscriptView).lines[index]
        dream_id = self.report.dream_id

        def save(result: tuple[list[str], str] | None) -> None:
            if result is None:
                return
            tags, note = result
            try:  # one small commit: written first, shown after, like every owner action
                self.store.annotate(dream_id=dream_id, line_index=index, tags=tags, note=note or None)
            except Exception as error:
                self.notify(f"The annotation could not be saved: {error}", title="Not saved", severity="error")
                return
            line.set_annotation(tags, note)

        self.app.push_screen(AnnotationEditor(line.text, line.tags, line.note, title="Annotate dream line"), save)


class NightScreen(Screen):
    """The night as it happens, then its morning report. Feed it events with `on_night_event` (on the
    UI thread) or through `forwarder()` (from any thread). `on_stop` is called when the owner asks the
    night to stop (key `s`, confirmed first: one stray key never stops a night); escape leaves the
    screen while the night goes on, and F5 (or "The night" in the palette) comes back to it."""

    class NightUpdate(Message):
        """A NightEvent posted from the trainer thread."""

        def __init__(self, event: Any) -> None:
            super().__init__()
            self.event = event

    BINDINGS = [
        Binding("s", "stop_night", "Stop the night"),
        Binding("r", "resume_night", "Resume the night"),
        Binding("escape", "leave", "Back"),
    ]

    DEFAULT_CSS = """
    NightScreen > #night-body { height: 1fr; }
    NightScreen #night-title { text-style: bold; padding: 0 1; }
    NightScreen #night-notes { height: auto; padding: 0 1; color: $text-muted; }
    NightScreen MorningReport { display: none; }
    NightScreen.-morning MorningReport { display: block; }
    """

    def __init__(self, day_number: int | None = None, *, store: Any = None,
                 on_stop: Callable[[], None] | None = None, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.day_number, self.store, self.on_stop = day_number, store, on_stop
        self.events_seen = 0
        self.notes: list[str] = []
        self.report: Any = None
        self.finished = False
        self._early: list[Any] = []  # events that came before the screen was mounted

    def compose(self) -> ComposeResult:
        title = f"The night of day {self.day_number}" if self.day_number is not None else "The night"
        with VerticalScroll(id="night-body"):
            yield Static(Content(title), id="night-title")
            yield NightProgress(id="night-progress")
            yield Static(id="night-notes")
            yield MorningReport(store=self.store, id="morning-report")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(NightProgress).start()
        early, self._early = self._early, []
        for event in early:
            self.on_night_event(event)

    def forwarder(self) -> Callable[[Any], None]:
        """A callback for the trainer thread: posts each event to this screen without waiting."""
        return lambda event: self.post_message(self.NightUpdate(event))

    def on_night_screen_night_update(self, message: "NightScreen.NightUpdate") -> None:
        self.on_night_event(message.event)

    def on_night_event(self, event: Any) -> None:
        """Show one NightEvent (call on the UI thread)."""
        if not self.is_mounted:
            self._early.append(event)
            return
        self.events_seen += 1
        progress = self.query_one(NightProgress)
        if event.kind == "phase":
            progress.update_progress(event.phase, 0, 0)
        elif event.kind == "step":
            progress.update_progress(event.phase or "training", event.step, event.total, event.loss, event.eta_s)
        elif event.kind == "progress":  # the dream, the probes: real progress and time left too
            progress.update_progress(event.phase, event.step, event.total, None, event.eta_s)
        elif event.kind == "note":
            self._note(event.text)
        elif event.kind == "done" and event.report is not None:
            self.show_report(event.report)
        elif event.kind == "error":
            self.finished = True
            progress.finish("failed: " + one_line(event.text.splitlines()[0] if event.text else "", 100), ok=False)
            self._note("The night failed; the weights are untouched. " + (event.text.splitlines() or [""])[0])

    def show_report(self, report: Any) -> None:
        self.report, self.finished = report, True
        outcome = _OUTCOME.get(report.status, report.status)
        ok = report.status in ("accepted", "nothing")
        self.query_one(NightProgress).finish(outcome if ok else f"{outcome}: {report.reason}", ok=ok)
        self.query_one(MorningReport).show(report)
        self.add_class("-morning")

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.query_one("#night-notes", Static).update(Content("\n".join(display_safe(n) for n in self.notes[-8:])))

    def action_stop_night(self) -> None:
        """Ask first; a stop keeps the weights as they were and the night resumes later."""
        from companion.widgets.text_prompt import ConfirmScreen

        if self.finished:
            self.notify("The night is over.", severity="information")
            return

        def answered(yes: bool | None) -> None:
            if yes and not self.finished:
                self.stop_now()

        self.app.push_screen(ConfirmScreen(
            "Stop the night now? The weights stay exactly as they were; the night resumes at the next "
            "start, or at once with r.", title="Stop the night?", yes_label="Stop it", letter_keys=False), answered)

    def stop_now(self) -> None:
        if self.on_stop is not None:
            self.on_stop()
        self._note("Stopping at the next step; the weights stay as they were, and the night resumes next time.")

    def action_resume_night(self) -> None:
        """A night the owner stopped starts again from the untouched pre-night weights."""
        if not self.finished or self.report is None or self.report.status != "interrupted":
            self.notify("Only a stopped night can be resumed.", severity="information")
            return
        resume = getattr(self.app, "resume_night", None)
        if resume is not None:
            resume()

    def action_leave(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()


class MorningReportScreen(Screen):
    """A past night's morning report on its own (from the days or checkpoints lists)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, report: Any, store: Any = None) -> None:
        super().__init__()
        self.report, self.store = report, store

    def compose(self) -> ComposeResult:
        with Vertical():
            yield MorningReport(self.report, self.store)
        yield Footer()
