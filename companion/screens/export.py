"""The export dialog of the checkpoints screen: where to write the checkpoint, and in which format.

It only asks; the checkpoints screen runs `companion.interop.export.export_checkpoint` in a thread and
says the result. An existing target is refused there (the dialog has no overwrite: the CLI does).
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RadioButton, RadioSet, Static

#: (label, format, dtype, file suffix) in the order shown
CHOICES = [
    ("GGUF f16, for llama.cpp (default)", "gguf", "f16", ".gguf"),
    ("GGUF q8_0, smaller and faster in llama.cpp", "gguf", "q8_0", "-q8_0.gguf"),
    ("Hugging Face folder, f32 (exact)", "hf", "f32", "-hf"),
    ("Hugging Face folder, f16", "hf", "f16", "-hf-f16"),
]


class ExportScreen(ModalScreen[tuple[str, str, str] | None]):
    """Choose a format and a path: enter dismisses with (format, dtype, path), escape with None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > #export-dialog { width: 80; max-width: 100%; height: auto; border: round $primary;
                                    background: $surface; padding: 0 1; }
    ExportScreen #export-status { color: $text-muted; }
    """

    def __init__(self, stem: str, folder: Path) -> None:
        super().__init__()
        self.stem, self.folder = stem, folder

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label(Content(f"Export {self.stem}"))
            with RadioSet(id="export-format"):
                for i, (label, *_rest) in enumerate(CHOICES):
                    yield RadioButton(label, value=i == 0)
            yield Label("Path")
            yield Input(str(self.folder / (self.stem + CHOICES[0][3])), id="export-path")
            yield Static("enter exports · esc cancels", id="export-status")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(RadioSet.Changed)
    def _format_changed(self, event: RadioSet.Changed) -> None:
        path = self.query_one(Input)
        path.value = str(self.folder / (self.stem + CHOICES[event.index][3]))

    @on(Input.Submitted)
    def _submit(self) -> None:
        index = self.query_one(RadioSet).pressed_index
        path = self.query_one(Input).value.strip()
        if not path:
            self.query_one("#export-status", Static).update("Write a path first.")
            return
        _label, fmt, dtype, _suffix = CHOICES[max(index, 0)]
        self.dismiss((fmt, dtype, str(Path(path).expanduser())))

    def action_cancel(self) -> None:
        self.dismiss(None)
