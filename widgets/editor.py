"""Text editors that are safe to type and paste into: the owner's message editor and the editor area
used by the correction and writing dialogs.

Typing is never eaten: every printable key goes into the text. A paste keeps its lines; control
characters in it (escape sequences, NULs, carriage returns) are dropped, since stored text becomes
training material; a paste that would make the text longer than ``max_chars`` is refused whole with a
message that gives its size, and the text is left as it was. ``ctrl+a`` selects all (as in the
editors people know), ``home`` goes to the line start.
"""

from __future__ import annotations

import re

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

__all__ = ["EditorArea", "MessageEditor", "clean_typed"]

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_typed(text: str) -> str:
    """The text as it should be stored: line ends made ``\\n``, other control characters dropped
    (tabs and newlines kept)."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class EditorArea(TextArea):
    """A TextArea with ``ctrl+a`` = select all, and pastes cleaned and bounded by ``max_chars``."""

    BINDINGS = [Binding("ctrl+a", "select_all", "Select all", show=False)]

    def __init__(self, text: str = "", *, max_chars: int | None = None, **kwargs) -> None:
        kwargs.setdefault("tab_behavior", "focus")
        kwargs.setdefault("soft_wrap", True)
        super().__init__(text, **kwargs)
        self.max_chars = max_chars

    async def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()
        event.stop()
        if self.read_only:
            return
        text = clean_typed(event.text)
        if not text:
            return
        start, end = self.selection
        selected = len(self.get_text_range(*sorted((start, end))))
        total = len(self.text) - selected + len(text)
        if self.max_chars is not None and total > self.max_chars:
            self.app.notify(
                f"Paste refused: {len(event.text):,} characters; the text may hold at most {self.max_chars:,}. "
                "Longer texts can be given as books.",
                title="Too long", severity="error",
            )
            return
        if result := self._replace_via_keyboard(text, start, end):
            self.move_cursor(result.end_location)


class MessageEditor(EditorArea):
    """The owner's message: several lines if wanted. ``enter`` sends; ``ctrl+j`` or ``alt+enter``
    (``shift+enter`` where the terminal reports it) starts a new line."""

    BINDINGS = [
        Binding("enter", "send", "Send"),  # handled in _on_key (before TextArea inserts a newline); shown here
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "New line"),
    ]

    class Submitted(Message):
        """The owner pressed the send key."""

        def __init__(self, editor: "MessageEditor", text: str) -> None:
            super().__init__()
            self.editor = editor
            self.text = text

        @property
        def control(self) -> "MessageEditor":
            return self.editor

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        await super()._on_key(event)

    def action_send(self) -> None:
        self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        start, end = self.selection
        if result := self._replace_via_keyboard("\n", start, end):
            self.move_cursor(result.end_location)

    @property
    def value(self) -> str:
        """The message as typed (an alias of ``text``, as on an Input)."""
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end)
