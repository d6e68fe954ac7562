"""The lessons screen: everything the owner taught on purpose, with its day, its status and its
recall over the nights (a sparkline), its other phrasings; add a phrasing, retire a lesson.

Reading and writing go through the store only (no torch here). A phrasing shared with another
lesson's question is kept and said (the two lessons stay apart by their answers); a refusal (empty,
already a phrasing) is said and changes nothing. Retiring while a night runs is allowed and said: the
running night keeps the lesson it read at its start, and the change counts from the next night.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from companion.day import MAX_MESSAGE_CHARS
from companion.home import Home
from companion.store import Lesson, Store, StoreError
from companion.widgets.lessons import LessonList, LessonRow, sparkline
from companion.widgets.safe_text import display_safe
from companion.widgets.text_prompt import TextEditScreen

__all__ = ["LessonsScreen", "lesson_row", "describe_lesson"]

SOURCES = {"correction": "a correction", "written": "a reply you wrote", "remember": "a reply you kept",
           "book": "the personality book"}


def lesson_row(lesson: Lesson) -> LessonRow:
    """The list row of a lesson: recall per night, None for nights whose weights were not kept."""
    rates = tuple(n.rate if n.counts else None for n in lesson.history)
    return LessonRow(id=lesson.id, day=lesson.day_number, status=lesson.status, question=lesson.question,
                     answer=lesson.answer, rates=rates, phrasings=len(lesson.phrasings),
                     in_weights=lesson.in_weights, retired=lesson.retired)


def describe_lesson(lesson: Lesson) -> str:
    """The highlighted lesson in full: what was asked and taught, where, and what nights found."""
    where = f"day {lesson.day_number}" if lesson.day_number is not None else "no day"
    lines = [f"Lesson {lesson.id} · {lesson.status} · from {SOURCES.get(lesson.source, lesson.source)} on {where}"
             + ("" if lesson.in_weights else " · not in the weights (a restore went back before it)"),
             f"Asked:  {lesson.question}"]
    lines += [f"  also: {p.text}" for p in lesson.phrasings]
    lines.append(f"Taught: {lesson.answer}")
    if lesson.history:
        marks = sparkline([n.rate if n.counts else None for n in lesson.history])
        said = ", ".join(f"day {n.day_number}: {n.hits}/{n.samples}"
                         + (f" ({n.crosstalk} cross-talk)" if n.crosstalk else "")
                         + ("" if n.accepted else " rolled back")
                         + (" undone by a restore" if n.accepted and not n.in_weights else "")
                         for n in lesson.history[-5:])
        lines.append(f"Recall: {marks}  {said}")
    else:
        lines.append("Recall: not tested by a night yet")
    if lesson.schedule is not None and not lesson.retired:
        lines.append(f"Next:   the night of day {lesson.schedule.due_day} "
                     f"(every {lesson.schedule.interval_nights} night(s))")
    return "\n".join(lines)


class LessonsScreen(Screen):
    """Every lesson, oldest first; ``p`` adds a phrasing to the highlighted one, ``x`` retires it
    (or brings a retired one back)."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("p", "add_phrasing", "Also asked as…"),
        Binding("x", "retire", "Retire/return"),
    ]
    DEFAULT_CSS = """
    LessonsScreen #lessons-list { height: 1fr; }
    LessonsScreen #lesson-detail { height: auto; padding: 0 1; border-top: solid $primary; }
    LessonsScreen #lessons-status { height: auto; padding: 0 1; color: $text-muted; }
    LessonsScreen #lessons-message { height: auto; padding: 0 1; }
    LessonsScreen #lessons-message.-error { color: $error; }
    """

    def __init__(self, home: Home | None, store: Store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.lessons: list[Lesson] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield LessonList(id="lessons-list")
            yield Static(id="lesson-detail")
            yield Static(id="lessons-status")
            yield Static(id="lessons-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LessonList).focus()
        self.refresh_list()

    class _Read(Message):
        def __init__(self, lessons: list[Lesson] | None, error: str | None = None) -> None:
            super().__init__()
            self.lessons, self.error = lessons, error

    @work(thread=True, exclusive=True, group="lessons")
    def refresh_list(self) -> None:
        """Read the lessons again, off the UI thread (a few queries whatever their number, but a
        lifetime of lessons and nights takes a moment), and redraw."""
        try:
            self.post_message(self._Read(self.store.lessons(history=24)))
        except StoreError as error:
            self.post_message(self._Read(None, str(error)))

    @on(_Read)
    def _fill(self, message: _Read) -> None:
        if message.lessons is None:
            self.say(f"The lessons could not be read: {message.error}", error=True)
            return
        self.lessons = message.lessons
        lesson_list = self.query_one(LessonList)
        lesson_list.set_rows([lesson_row(lesson) for lesson in self.lessons])
        counts: dict[str, int] = {}
        for lesson in self.lessons:
            counts[lesson.status] = counts.get(lesson.status, 0) + 1
        if self.lessons:
            summary = " · ".join(f"{counts[s]} {s}" for s in ("new", "learning", "learned", "fading", "retired")
                                 if counts.get(s))
            status = f"{len(self.lessons)} lessons: {summary}"
        else:
            status = ("No lessons yet. Every correction and every reply you write is one; "
                      "press K on a reply in the chat (or 'Remember this' in the palette) to keep it as one.")
        self.query_one("#lessons-status", Static).update(Content(status))
        self._show_detail()

    def _show_detail(self) -> None:
        lesson = self.highlighted_lesson
        text = describe_lesson(lesson) if lesson is not None else ""
        self.query_one("#lesson-detail", Static).update(Content(display_safe(text)))

    @property
    def highlighted_lesson(self) -> Lesson | None:
        index = self.query_one(LessonList).highlighted
        return self.lessons[index] if index is not None and 0 <= index < len(self.lessons) else None

    @on(LessonList.Highlighted)
    def _highlighted(self, event: LessonList.Highlighted) -> None:
        self._show_detail()

    def say(self, text: str, error: bool = False) -> None:
        message = self.query_one("#lessons-message", Static)
        message.update(Content(display_safe(text)))
        message.set_class(error, "-error")
        self.notify(display_safe(text), severity="error" if error else "information", markup=False)

    # -- actions ------------------------------------------------------------------------------------

    def action_add_phrasing(self) -> None:
        lesson = self.highlighted_lesson
        if lesson is None:
            self.say("There is no lesson to add a phrasing to.", error=True)
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            self.add_phrasing(lesson.id, text.strip())

        self.app.push_screen(TextEditScreen("", title=f"Also asked as… (lesson {lesson.id}: {lesson.question})",
                                            max_chars=MAX_MESSAGE_CHARS), done)

    def add_phrasing(self, lesson_id: int, text: str) -> None:
        """Add a phrasing and say what happened (shared with another lesson, or refused)."""
        try:
            added = self.store.add_phrasing(lesson_id, text)
        except StoreError as error:
            self.say(f"Phrasing not added: {error}.", error=True)
            return
        self.refresh_list()
        self.say(f"Lesson {lesson_id} is also asked as {text!r}." + (f" Note: {added.note}." if added.note else ""))

    def action_retire(self) -> None:
        lesson = self.highlighted_lesson
        if lesson is None:
            return
        try:
            running = self.store.running_night()
            changed = self.store.retire_lesson(lesson.id, retired=not lesson.retired)
        except StoreError as error:
            self.say(f"Not changed: {error}.", error=True)
            return
        self.refresh_list()
        verb = "retired: nights no longer teach or test it" if changed.retired else "back: nights teach it again"
        later = " (the night running now keeps it as it was; this counts from the next night)" if running else ""
        self.say(f"Lesson {lesson.id} {verb}{later}.")
