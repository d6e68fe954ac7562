"""Small modal prompts: a yes/no confirmation and a text editor.

``ConfirmScreen`` guards actions that change the companion (restore a checkpoint, end the day
early).  ``TextEditScreen`` is where the owner edits a candidate into a correction or writes the
reply they wanted; it refuses oversized or empty text with a message instead of passing it on.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea

from companion.widgets.editor import EditorArea
from companion.widgets.safe_text import display_safe

__all__ = ["ConfirmScreen", "TextEditScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question: ``y`` (or Yes) dismisses True; ``n``, escape (or No) False.

    ``letter_keys=False`` for a question a stray letter must never answer yes to (stopping a night
    while the owner may be typing): then only the Yes button confirms (shift+tab to it, enter)."""

    BINDINGS = [
        Binding("y", "letter(True)", "Yes"),
        Binding("n", "letter(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > #confirm-dialog {
        width: 64;
        max-width: 100%;
        height: auto;
        border: round $warning;
        background: $surface;
        padding: 0 1;
    }
    ConfirmScreen #confirm-buttons { height: auto; align-horizontal: right; }
    """

    def __init__(
        self,
        message: str,
        *,
        title: str = "",
        yes_label: str = "Yes",
        no_label: str = "No",
        focus_yes: bool = False,
        letter_keys: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.letter_keys = letter_keys
        self.message = message
        self.title_text = title
        self.yes_label = yes_label
        self.no_label = no_label
        self.focus_yes = focus_yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            if self.title_text:
                yield Label(Content(display_safe(self.title_text)), id="confirm-title")
            yield Static(Content(display_safe(self.message)), id="confirm-message")
            with Horizontal(id="confirm-buttons"):
                keys = ("(y)", "(n)") if self.letter_keys else ("(shift+tab, enter)", "(esc)")
                yield Button(Content(f"{self.yes_label} {keys[0]}"), variant="warning", id="confirm-yes")
                yield Button(Content(f"{self.no_label} {keys[1]}"), id="confirm-no")

    def on_mount(self) -> None:
        # "No" is focused by default: a stray enter never confirms a destructive action.
        self.query_one("#confirm-yes" if self.focus_yes else "#confirm-no", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.letter_keys if action == "letter" else True

    def action_letter(self, answer: bool) -> None:
        self.dismiss(answer)

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed, "#confirm-yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def _no(self) -> None:
        self.dismiss(False)


class TextEditScreen(ModalScreen[str | None]):
    """Edit a text in a TextArea: ctrl+s dismisses with the text, escape with None.

    ``max_chars`` refuses oversized text with a message (nothing is returned until it fits);
    ``allow_empty=False`` refuses blank text the same way. ``original``, when given, is shown beside
    the edit (what the candidate said), so an amendment is made knowing what it replaces.
    ``ctrl+a`` selects all, so a replacement can be typed over the whole text.
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    TextEditScreen { align: center middle; }
    TextEditScreen > #text-edit-dialog {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    TextEditScreen #text-edit-area { height: 12; width: 1fr; }
    TextEditScreen #text-edit-panes { height: auto; }
    TextEditScreen #text-edit-original {
        width: 1fr; height: 12; padding: 0 1; color: $text-muted; border: round $panel;
        overflow-y: auto;
    }
    TextEditScreen #text-edit-status { color: $text-muted; }
    TextEditScreen #text-edit-status.-error { color: $error; }
    """

    def __init__(
        self,
        text: str = "",
        *,
        title: str = "",
        max_chars: int | None = None,
        allow_empty: bool = False,
        original: str | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.initial_text = text
        self.title_text = title
        self.max_chars = max_chars
        self.allow_empty = allow_empty
        self.original = original

    def compose(self) -> ComposeResult:
        with Vertical(id="text-edit-dialog"):
            if self.title_text:
                yield Label(Content(display_safe(self.title_text)), id="text-edit-title")
            with Horizontal(id="text-edit-panes"):
                if self.original is not None:
                    original = Static(Content(display_safe(self.original)), id="text-edit-original")
                    original.border_title = "original"
                    yield original
                area = EditorArea(self.initial_text, id="text-edit-area", max_chars=self.max_chars)
                area.border_title = "edit" if self.original is not None else None
                yield area
            yield Static(id="text-edit-status")

    def on_mount(self) -> None:
        area = self.query_one(TextArea)
        area.focus()
        area.move_cursor(area.document.end)
        self._show_status()

    @property
    def text(self) -> str:
        return self.query_one(TextArea).text

    def problem(self) -> str | None:
        """Why the text cannot be saved as it is, or None."""
        text = self.text
        if self.max_chars is not None and len(text) > self.max_chars:
            return f"Too long: {len(text):,} characters, the most is {self.max_chars:,}."
        if not self.allow_empty and not text.strip():
            return "Nothing written yet."
        return None

    def _show_status(self, error: str | None = None) -> None:
        status = self.query_one("#text-edit-status", Static)
        count = f"{len(self.text):,}" + (f" / {self.max_chars:,}" if self.max_chars else "")
        line = error or f"{count} characters · ctrl+s save · esc cancel"
        status.update(Content(line))
        status.set_class(error is not None, "-error")

    @on(TextArea.Changed)
    def _changed(self) -> None:
        self._show_status()

    def action_save(self) -> None:
        problem = self.problem()
        if problem is not None:
            self._show_status(problem)
            return
        self.dismiss(self.text)

    def action_cancel(self) -> None:
        self.dismiss(None)
