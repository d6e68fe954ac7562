"""The picker: several companions live here; the owner chooses one (or brings a new one into being)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from companion.widgets.safe_text import one_line

NEW_COMPANION = "\x00new"
UNBORN = "\x00unborn:"


class PickerScreen(Screen):
    """A list of the companions in the root folder; enter opens one."""

    DEFAULT_CSS = """
    PickerScreen { align: center middle; }
    PickerScreen #picker-title { width: 60; height: auto; text-style: bold; color: $primary; margin: 0 0 1 0; }
    PickerScreen OptionList { width: 60; height: auto; max-height: 70%; border: round $primary; }
    """

    BINDINGS = [Binding("n", "new", "New companion", id="picker_new")]

    def __init__(self, names: list[str], unborn: list | None = None) -> None:
        super().__init__()
        self.names = names
        self.unborn = list(unborn or [])  # folders of births that did not finish

    def compose(self) -> ComposeResult:
        from companion.home import Home

        yield Static(Content("Which companion?"), id="picker-title")
        options = [Option(Content(one_line(name, 40)), id=name) for name in self.names]
        options += [Option(Content(f"{one_line(Home(path).name, 40)} — birth not finished"), id=f"{UNBORN}{i}")
                    for i, path in enumerate(self.unborn)]
        options.append(Option(Content("+ a new companion…"), id=NEW_COMPANION))
        yield OptionList(*options, id="picker")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == NEW_COMPANION:
            self.action_new()
        elif event.option.id.startswith(UNBORN):
            self.app.open_unborn(self.unborn[int(event.option.id[len(UNBORN):])])
        else:
            self.app.open_companion(event.option.id)

    def action_new(self) -> None:
        from companion.screens.welcome import WelcomeScreen

        self.app.push_screen(WelcomeScreen())
