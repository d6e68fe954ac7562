"""The day's transcript: every line the owner and the companion exchanged today.

The transcript *is* the model's context, so the view shows every line, including the inner voice
and the temporal indicators, each styled by role and source.  Text is shown harmlessly: lines are
built as ``Content`` (never parsed as markup) after :func:`~widgets.safe_text.display_safe` made
control characters visible.

The view is one focus stop with a line cursor (up/down or j/k), not one focus stop per line, so
that tab still leaves the transcript in one keystroke however long the day is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from companion.widgets.safe_text import display_safe, one_line

__all__ = [
    "ROLES",
    "INDICATOR_SOURCES",
    "SelectedLine",
    "TranscriptEntry",
    "TranscriptLine",
    "TranscriptView",
]

ROLES = ("owner", "companion", "inner")
"""The three roles a line can have (the model's role tokens)."""

INDICATOR_SOURCES = frozenset({"indicator", "greeting", "goodnight"})
"""Sources that mark the passing of the day: shown centred and muted, without a name label."""


class SelectedLine(NamedTuple):
    """What the app needs to act on the highlighted line."""

    turn_id: int | None
    role: str
    text: str


@dataclass
class TranscriptEntry:
    """One line to show; ``set_lines`` also accepts plain mappings with these keys."""

    role: str
    text: str
    source: str = "typed"
    speaker: str = ""
    turn_id: int | None = None
    tags: Sequence[str] = field(default_factory=tuple)
    note: str = ""

    @classmethod
    def coerce(cls, item: "TranscriptEntry | Mapping[str, Any]") -> "TranscriptEntry":
        """Accept an entry, or a dict with the entry's keys (unknown keys ignored)."""
        if isinstance(item, TranscriptEntry):
            return item
        known = {k: item[k] for k in cls.__dataclass_fields__ if k in item}
        return cls(**known)


def _css_token(value: str) -> str:
    """Make ``value`` usable inside a CSS class name."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower()) or "none"


class TranscriptLine(Static):
    """One line of the day: a name label, the text, and for inner lines the owner's annotation.

    CSS classes: ``-owner`` / ``-companion`` / ``-inner`` (role), ``-indicator`` (temporal lines:
    indicator, greeting, goodnight), ``-src-<source>`` (every source), ``-annotated`` and
    ``-highlight`` (the view's cursor).
    """

    COMPONENT_CLASSES = {
        "transcript-line--name",
        "transcript-line--tags",
        "transcript-line--note",
    }

    DEFAULT_CSS = """
    TranscriptLine {
        height: auto;
        width: 1fr;
        padding: 0 1;
    }
    TranscriptLine.-indicator { text-align: center; }
    TranscriptLine.-highlight { background: $foreground 10%; }
    TranscriptLine > .transcript-line--name { text-style: bold; }
    TranscriptLine > .transcript-line--tags { text-style: reverse; }
    TranscriptLine > .transcript-line--note { text-style: dim; }
    """

    def __init__(
        self,
        role: str,
        text: str,
        source: str = "typed",
        speaker: str = "",
        turn_id: int | None = None,
        *,
        tags: Iterable[str] = (),
        note: str = "",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, markup=False)
        self.role = role
        self.source = source
        self.speaker = speaker
        self.turn_id = turn_id
        self._text = text
        self._tags: tuple[str, ...] = tuple(tags)
        self._note = note
        self.add_class(f"-{_css_token(self.role)}", f"-src-{_css_token(source)}")
        if source in INDICATOR_SOURCES:
            self.add_class("-indicator")
        self.set_class(bool(self._tags or self._note), "-annotated")

    # -- state -----------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The line's text exactly as given (unescaped)."""
        return self._text

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @property
    def note(self) -> str:
        return self._note

    @property
    def label(self) -> str:
        """The name shown before the text.

        The speaker for owner and companion lines (the role when no name was given); "inner" for
        the inner voice, "dream" for dreams, "inner (Owner)" for inner lines the owner wrote; none
        for the temporal lines (indicator, greeting, goodnight).
        """
        if self.source in INDICATOR_SOURCES:
            return ""
        if self.role == "inner":
            if self.source == "dream":
                return "dream"
            if self.source == "owner_inner" and self.speaker:
                return f"inner ({one_line(self.speaker, 24)})"  # the owner showing how to reflect
            return "inner"
        return one_line(self.speaker, 24) if self.speaker else self.role

    @property
    def selected(self) -> SelectedLine:
        return SelectedLine(self.turn_id, self.role, self._text)

    def set_text(self, text: str) -> None:
        """Replace the text (e.g. while a reply streams in)."""
        self._text = text
        self.refresh(layout=True)

    def append_text(self, chunk: str) -> None:
        self.set_text(self._text + chunk)

    def set_annotation(self, tags: Iterable[str], note: str = "") -> None:
        """Show the owner's tags as badges and the note on a line under the text."""
        self._tags = tuple(tags)
        self._note = note
        self.set_class(bool(self._tags or self._note), "-annotated")
        self.refresh(layout=True)

    # -- display ---------------------------------------------------------------------------------

    def plain_text(self) -> str:
        """What the line shows, as plain text (the safe, escaped form)."""
        return self.render().plain

    def render(self) -> Content:
        parts: list[Any] = []
        label = self.label
        if label:
            parts.append((label, self.get_visual_style("transcript-line--name", partial=True)))
            parts.append("  ")
        text = display_safe(self._text)
        if label and "\n" in text:  # one entry: later lines hang under the first, never look like a turn
            text = text.replace("\n", "\n" + " " * (len(label) + 2))
        parts.append(Content(text))
        if self._tags or self._note:
            # The annotation goes on its own line; a badge's spaces do not break, so a badge
            # never wraps in half.
            parts.append("\n")
            tag_style = self.get_visual_style("transcript-line--tags", partial=True)
            for tag in self._tags:
                parts += [(f"\u00a0{one_line(tag, 32)}\u00a0".replace(" ", "\u00a0"), tag_style), " "]
            if self._note:
                note_style = self.get_visual_style("transcript-line--note", partial=True)
                parts.append(("✎ " + display_safe(self._note), note_style))
        return Content.assemble(*parts, strip_control_codes=False)

    def on_click(self, event: events.Click) -> None:
        view = self.parent
        if isinstance(view, TranscriptView):
            view.select_line(self)


class TranscriptView(VerticalScroll, can_focus=True):
    """The day's lines, with a cursor the owner moves to pick a line to act on.

    Follows the end of the day as lines are added, unless the owner scrolled up (Textual's
    anchor: released by scrolling away, restored by scrolling back to the end).
    """

    BINDINGS = [
        Binding("up,k", "cursor_up", "Previous line", show=False),
        Binding("down,j", "cursor_down", "Next line", show=False),
        Binding("home,g", "cursor_first", "First line", show=False),
        Binding("end,G", "cursor_last", "Last line", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("enter", "activate", "Act on line", show=False),
    ]

    DEFAULT_CSS = """
    TranscriptView {
        height: 1fr;
    }
    """

    cursor: reactive[int | None] = reactive(None, init=False)
    """Index of the highlighted line, or None when no line is highlighted."""

    class LineSelected(Message):
        """The highlighted line changed (``line`` is None when the cursor was cleared)."""

        def __init__(self, view: "TranscriptView", line: TranscriptLine | None, index: int | None) -> None:
            super().__init__()
            self.view = view
            self.line = line
            self.index = index

        @property
        def control(self) -> "TranscriptView":
            return self.view

        @property
        def selected(self) -> SelectedLine | None:
            return self.line.selected if self.line is not None else None

    class LineActivated(LineSelected):
        """Enter was pressed on the highlighted line (e.g. to annotate it)."""

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: list[TranscriptLine] = []
        self._ready = False  # lines added before mount are mounted in on_mount

    def on_mount(self) -> None:
        self._ready = True
        if self._lines:
            self.mount_all(self._lines)
        self.anchor()

    # -- lines -----------------------------------------------------------------------------------

    @property
    def lines(self) -> list[TranscriptLine]:
        """The lines in order (a copy)."""
        return list(self._lines)

    def add_line(
        self,
        turn_id: int | None,
        role: str,
        text: str,
        source: str = "typed",
        speaker: str = "",
        *,
        tags: Iterable[str] = (),
        note: str = "",
    ) -> TranscriptLine:
        """Append a line at the end of the day and return it (it is mounted right away)."""
        line = TranscriptLine(role, text, source, speaker, turn_id, tags=tags, note=note)
        self._lines.append(line)
        if self._ready:
            self.mount(line)
        return line

    def clear(self) -> None:
        """Remove every line (a new day)."""
        lines, self._lines = self._lines, []
        self.set_reactive(TranscriptView.cursor, None)
        if lines and self._ready:
            self.remove_children(lines)

    def set_lines(self, entries: Iterable[TranscriptEntry | Mapping[str, Any]]) -> list[TranscriptLine]:
        """Replace all lines at once (opening a day, or a past day)."""
        self.clear()
        new = []
        for item in entries:
            entry = TranscriptEntry.coerce(item)
            new.append(
                TranscriptLine(
                    entry.role,
                    entry.text,
                    entry.source,
                    entry.speaker,
                    entry.turn_id,
                    tags=entry.tags,
                    note=entry.note,
                )
            )
        self._lines = new
        if new and self._ready:
            self.mount_all(new)
            self.anchor()
        return list(new)

    def lines_for_turn(self, turn_id: int, role: str | None = None) -> list[TranscriptLine]:
        return [
            line
            for line in self._lines
            if line.turn_id == turn_id and (role is None or line.role == role)
        ]

    def set_annotation(self, turn_id: int, tags: Iterable[str], note: str = "") -> int:
        """Show an annotation on the inner line(s) of ``turn_id``; returns how many lines changed.

        Only inner lines are annotated; when the turn has none, every line of the turn is.
        """
        tags = tuple(tags)
        targets = self.lines_for_turn(turn_id, "inner") or self.lines_for_turn(turn_id)
        for line in targets:
            line.set_annotation(tags, note)
        return len(targets)

    # -- cursor ----------------------------------------------------------------------------------

    @property
    def selected_widget(self) -> TranscriptLine | None:
        if self.cursor is None or not (0 <= self.cursor < len(self._lines)):
            return None
        return self._lines[self.cursor]

    @property
    def selected_line(self) -> SelectedLine | None:
        """``(turn_id, role, text)`` of the highlighted line, or None."""
        widget = self.selected_widget
        return widget.selected if widget is not None else None

    def select_line(self, line: TranscriptLine) -> None:
        if line in self._lines:
            self.cursor = self._lines.index(line)

    def validate_cursor(self, value: int | None) -> int | None:
        if value is None or not self._lines:
            return None
        return max(0, min(value, len(self._lines) - 1))

    def watch_cursor(self, old: int | None, new: int | None) -> None:
        if old is not None and 0 <= old < len(self._lines):
            self._lines[old].remove_class("-highlight")
        line = self.selected_widget
        if line is not None:
            line.add_class("-highlight")
            self.scroll_to_widget(line, animate=False)
        self.post_message(self.LineSelected(self, line, new if line is not None else None))

    def action_cursor_up(self) -> None:
        if not self._lines:
            return
        self.cursor = len(self._lines) - 1 if self.cursor is None else self.cursor - 1

    def action_cursor_down(self) -> None:
        if not self._lines:
            return
        self.cursor = len(self._lines) - 1 if self.cursor is None else self.cursor + 1

    def action_cursor_first(self) -> None:
        if self._lines:
            self.cursor = 0

    def action_cursor_last(self) -> None:
        if self._lines:
            self.cursor = len(self._lines) - 1

    def action_activate(self) -> None:
        line = self.selected_widget
        if line is not None:
            self.post_message(self.LineActivated(self, line, self.cursor))
