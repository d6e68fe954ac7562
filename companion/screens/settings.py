"""The settings screen: sampling and the shape of the day, saved to ``companion.toml`` as typed.

Each field is validated by `companion.settings` (the same rules as the file); a refused value shows
the reason under its field and changes nothing. Enter saves the field; ctrl+s saves every changed
field; Esc goes back. A new day share applies from the next day (today's budget was fixed at dawn).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Static

from companion.settings import SettingsError, describe_settings, update_settings_file

EDITABLE_PREFIXES = ("sampling.", "day.")


def _text(value) -> str:
    if value is None:
        return ""
    return str(value)


def _field_id(key: str) -> str:
    return "set-" + key.replace(".", "-")


class SettingsScreen(Screen):
    """Edit `[sampling]` and `[day]`; every save goes through `update_settings_file`."""

    DEFAULT_CSS = """
    SettingsScreen #settings-title { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    SettingsScreen #settings-fields { height: 1fr; padding: 0 1; }
    SettingsScreen .setting { height: auto; margin: 0 0 1 0; }
    SettingsScreen .setting-help { color: $text-muted; }
    SettingsScreen .setting-error { color: $error; text-style: bold; height: auto; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="settings_back"),
        Binding("ctrl+s", "save_all", "Save all", id="settings_save_all"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def _rows(self):
        settings = self.app.settings
        for info in describe_settings():
            if not info.key.startswith(EDITABLE_PREFIXES):
                continue
            if info.key == "day.indicators":
                for n, line in enumerate(settings.day.indicators, 1):
                    yield f"day.indicators.{n}", line, f"temporal indicator for quarter {n} of the day", info.allowed
                continue
            yield info.key, settings.get(info.key), info.help, info.allowed

    def compose(self) -> ComposeResult:
        yield Static(Content("Settings · enter saves a field · ctrl+s saves all · esc back"), id="settings-title")
        with VerticalScroll(id="settings-fields"):
            for key, value, help_text, allowed in self._rows():
                self.keys.append(key)
                with Vertical(classes="setting"):
                    yield Label(Content(f"{key} — {help_text}"))
                    yield Input(_text(value), id=_field_id(key), tooltip=allowed)
                    yield Static(Content(f"allowed: {allowed}"), classes="setting-help")
                    yield Static("", id=_field_id(key) + "-error", classes="setting-error")
        yield Footer()

    def on_mount(self) -> None:
        if self.keys:
            self.query_one(f"#{_field_id(self.keys[0])}", Input).focus()

    def save(self, key: str) -> bool:
        """Validate and save one field; show why when refused. True when saved (or unchanged)."""
        field = self.query_one(f"#{_field_id(key)}", Input)
        error = self.query_one(f"#{_field_id(key)}-error", Static)
        value = field.value
        if key == "sampling.seed" and not value.strip():
            value = None
        try:
            new = update_settings_file(self.app.home.settings_path, key, value)
        except SettingsError as refused:
            error.update(Content(str(refused)))
            self.notify(str(refused), title="Not saved", severity="error")
            return False
        error.update("")
        changed = new != self.app.settings
        self.app.apply_settings(new)
        if changed:
            self.notify(f"Saved {key} = {_text(new.get(key))}")
        return True

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        key = self.keys[[_field_id(k) for k in self.keys].index(event.input.id)]
        self.save(key)

    def action_save_all(self) -> None:
        settings = self.app.settings
        for key in self.keys:
            if self.query_one(f"#{_field_id(key)}", Input).value != _text(settings.get(key)):
                self.save(key)
                settings = self.app.settings

    def action_back(self) -> None:
        self.app.pop_screen()
