"""Annotating the inner voice: tags and a note on one inner line.

The owner teaches the companion how to reflect by marking its inner lines (keep / insightful / off,
or any tag of their own) and leaving a note.  The editor is a modal that works with the keyboard
alone: tab moves between fields, space/enter toggles a preset, ctrl+s (or enter in the tags field,
or the Save button) saves, escape cancels.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

from companion.widgets.safe_text import display_safe, one_line

__all__ = ["PRESET_TAGS", "AnnotationEditor", "Annotation", "parse_tags", "normalize_tag"]

PRESET_TAGS: tuple[str, ...] = ("keep", "insightful", "off")
"""The preset toggles, in the order they are shown."""

MAX_TAG_CHARS = 40

Annotation = tuple[list[str], str]
"""What the editor returns: (tags, note)."""

_SPACES = re.compile(r"\s+")


def normalize_tag(tag: str) -> str:
    """Lower case, single spaces, no commas, at most ``MAX_TAG_CHARS`` characters."""
    tag = _SPACES.sub(" ", one_line(tag).replace(",", " ")).strip().lower()
    return tag[:MAX_TAG_CHARS].strip()


def parse_tags(text: str) -> list[str]:
    """Split a comma separated field into normalised tags, dropping blanks and duplicates."""
    tags: list[str] = []
    for part in text.split(","):
        tag = normalize_tag(part)
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _preset_id(tag: str) -> str:
    return "preset-" + re.sub(r"[^a-z0-9_-]", "-", tag)


class AnnotationEditor(ModalScreen[Annotation | None]):
    """Edit the tags and note of an inner line; dismisses with ``(tags, note)`` or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    AnnotationEditor { align: center middle; }
    AnnotationEditor > #annotation-dialog {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    AnnotationEditor #annotation-presets { height: auto; }
    AnnotationEditor #annotation-note { height: 5; }
    AnnotationEditor #annotation-buttons { height: auto; align-horizontal: right; }
    """

    def __init__(
        self,
        line_text: str = "",
        tags: Iterable[str] = (),
        note: str = "",
        *,
        presets: Sequence[str] = PRESET_TAGS,
        title: str = "Annotate inner line",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.line_text = line_text
        self.presets = tuple(normalize_tag(p) for p in presets if normalize_tag(p))
        initial = parse_tags(",".join(tags))
        self._initial_presets = {t for t in initial if t in self.presets}
        self._initial_free = [t for t in initial if t not in self.presets]
        self._initial_note = note
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="annotation-dialog"):
            yield Label(Content(self.title_text), id="annotation-title")
            if self.line_text:
                yield Static(Content(display_safe(self.line_text)), id="annotation-line")
            with Horizontal(id="annotation-presets"):
                for tag in self.presets:
                    yield Checkbox(Content(tag), tag in self._initial_presets, id=_preset_id(tag))
            yield Input(
                ", ".join(self._initial_free),
                placeholder="more tags, comma separated",
                id="annotation-tags",
            )
            yield TextArea(self._initial_note, id="annotation-note", tab_behavior="focus")
            with Horizontal(id="annotation-buttons"):
                yield Button("Save", variant="primary", id="annotation-save")
                yield Button("Cancel", id="annotation-cancel")

    def on_mount(self) -> None:
        first = self.query(Checkbox).first() if self.presets else self.query_one(Input)
        first.focus()

    @property
    def result(self) -> Annotation:
        """The tags and note as they stand in the form (presets first, in preset order)."""
        tags = [t for t in self.presets if self.query_one(f"#{_preset_id(t)}", Checkbox).value]
        for tag in parse_tags(self.query_one("#annotation-tags", Input).value):
            if tag not in tags:
                tags.append(tag)
        note = self.query_one("#annotation-note", TextArea).text.strip()
        return tags, note

    def action_save(self) -> None:
        self.dismiss(self.result)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#annotation-save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#annotation-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @on(Input.Submitted, "#annotation-tags")
    def _tags_submitted(self) -> None:
        self.action_save()
