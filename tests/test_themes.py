"""Themes and the stylesheet: they register, switch, parse, and owner theme files load safely."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.theme import BUILTIN_THEMES, Theme

from companion.themes import (
    DEFAULT_THEME,
    EXAMPLE_THEME_PATH,
    STYLESHEET_PATH,
    THEMES,
    apply_user_themes,
    load_user_themes,
    register_themes,
    watch_user_themes,
)
from companion.widgets import (
    CandidateDeck,
    CheckpointList,
    DayGauge,
    DayList,
    NightProgress,
    TranscriptView,
)

GOOD = """
name = "owner-sea"
primary = "#2E86AB"
secondary = "#A23B72"
accent = "#F18F01"
foreground = "#EEEEEE"
background = "#0B1D26"
surface = "#10242F"
panel = "#183240"
success = "#5FAD56"
warning = "#F2C14E"
error = "#D1495B"
dark = true
"""


class StyledApp(App):
    """Every widget under the real stylesheet and the project's themes."""

    CSS_PATH = STYLESHEET_PATH

    def compose(self) -> ComposeResult:
        yield DayGauge(300, 768)
        yield TranscriptView()
        yield CandidateDeck()
        yield NightProgress()
        yield DayList()
        yield CheckpointList()

    def on_mount(self) -> None:
        register_themes(self)
        self.theme = DEFAULT_THEME


def test_project_themes_are_themes() -> None:
    assert set(THEMES) >= {"companion-dusk", "companion-dawn", "companion-moss"}
    assert DEFAULT_THEME in THEMES
    assert not THEMES["companion-dawn"].dark and THEMES["companion-dusk"].dark
    for theme in THEMES.values():
        assert isinstance(theme, Theme)
        assert theme.name not in BUILTIN_THEMES
        theme.to_color_system().generate()  # every variable the stylesheet may use exists


def test_stylesheet_uses_only_variables_every_theme_has() -> None:
    """A custom $variable would break the stylesheet under any theme that lacks it."""
    css = re.sub(r"/\*.*?\*/", "", STYLESHEET_PATH.read_text(encoding="utf-8"), flags=re.S)
    used = set(re.findall(r"\$([a-z][a-z0-9-]*)", css))
    assert used, "the stylesheet should use theme variables"
    for theme in [*THEMES.values(), BUILTIN_THEMES["textual-light"], BUILTIN_THEMES["nord"]]:
        missing = used - set(theme.to_color_system().generate())
        assert not missing, f"{theme.name} lacks {missing}"


async def test_stylesheet_parses_and_themes_switch() -> None:
    app = StyledApp()
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.pause()
        assert app.theme == "companion-dusk"
        gauge = app.query_one(DayGauge)
        dusk_background = gauge.styles.background
        for name in [*THEMES, "textual-light", "nord"]:  # ours and built-ins: no missing variable
            app.theme = name
            await pilot.pause()
            assert app.theme == name
        app.theme = "companion-dawn"
        await pilot.pause()
        assert gauge.styles.background != dusk_background
        assert app.current_theme.name == "companion-dawn"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_user_themes_good_and_bad(tmp_path: Path) -> None:
    _write(tmp_path, "a-good.toml", GOOD)
    _write(tmp_path, "broken.toml", 'name = "x"\nprimary = \n')
    _write(tmp_path, "badcolour.toml", 'name = "owner-bad"\nprimary = "not-a-colour"\n')
    _write(tmp_path, "builtin.toml", 'name = "nord"\nprimary = "#ffffff"\n')
    _write(tmp_path, "ours.toml", 'name = "companion-dusk"\nprimary = "#ffffff"\n')
    _write(tmp_path, "unknown.toml", 'name = "owner-u"\nprimary = "#ffffff"\nsparkle = "yes"\n')
    _write(tmp_path, "wrongtype.toml", 'name = "owner-w"\nprimary = "#ffffff"\ndark = "yes"\n')
    _write(tmp_path, "noprimary.toml", 'name = "owner-n"\n')
    _write(tmp_path, "z-duplicate.toml", GOOD)
    _write(tmp_path, "stem-name.toml", 'primary = "#336699"\ndark = false\n')
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    _write(tmp_path, "notes.txt", "not a theme")

    themes, notes = load_user_themes(tmp_path)

    assert [t.name for t in themes] == ["owner-sea", "stem-name"]
    sea = themes[0]
    assert sea.primary == "#2E86AB" and sea.dark
    assert not themes[1].dark
    named = {note.split(":", 1)[0] for note in notes}
    assert named == {
        "badcolour.toml",
        "binary.toml",
        "broken.toml",
        "builtin.toml",
        "noprimary.toml",
        "ours.toml",
        "unknown.toml",
        "wrongtype.toml",
        "z-duplicate.toml",
    }
    joined = "\n".join(notes)
    assert "not valid TOML" in joined and "taken" in joined and "sparkle" in joined
    assert "not a colour" in joined and "primary is required" in joined


def test_example_theme_file_loads(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(EXAMPLE_THEME_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    themes, notes = load_user_themes(tmp_path)
    assert notes == [] and [t.name for t in themes] == ["my-evening"]


def test_load_user_themes_missing_folder(tmp_path: Path) -> None:
    assert load_user_themes(tmp_path / "nope") == ([], [])


async def test_user_theme_registers_and_applies(tmp_path: Path) -> None:
    _write(tmp_path, "sea.toml", GOOD)
    themes, notes = load_user_themes(tmp_path)
    assert notes == []
    app = StyledApp()
    async with app.run_test(size=(100, 40)) as pilot:
        names = apply_user_themes(app, themes)
        app.theme = "owner-sea"
        await pilot.pause()
        assert app.theme == "owner-sea" and names == ["owner-sea"]
        # The file is removed: the theme is unregistered, except while it is the active one.
        assert apply_user_themes(app, [], previous=names) == []
        assert "owner-sea" in app.available_themes
        app.theme = DEFAULT_THEME
        apply_user_themes(app, [], previous=names)
        assert "owner-sea" not in app.available_themes


async def test_watch_user_themes_reports_changes(tmp_path: Path) -> None:
    reports: list[tuple[list[str], list[str]]] = []
    changed = asyncio.Event()

    async def callback(themes: list[Theme], notes: list[str]) -> None:
        reports.append(([t.name for t in themes], notes))
        changed.set()

    stop = asyncio.Event()
    task = asyncio.create_task(
        watch_user_themes(tmp_path, callback, stop_event=stop, force_polling=True, debounce_ms=50)
    )
    try:
        await asyncio.wait_for(changed.wait(), 10)
        assert reports == [([], [])]  # the initial report
        changed.clear()
        # The watcher may not be watching yet: write the files again until the change is reported
        # (the two writes may also arrive as one change or two).
        for _ in range(20):
            _write(tmp_path, "sea.toml", GOOD)
            _write(tmp_path, "bad.toml", "primary = [")
            try:
                await asyncio.wait_for(changed.wait(), 1.0)
            except asyncio.TimeoutError:
                continue
            changed.clear()
            if reports[-1][0] == ["owner-sea"] and len(reports[-1][1]) == 1:
                break
        names, notes = reports[-1]
        assert names == ["owner-sea"] and notes[0].startswith("bad.toml:")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_watch_user_themes_missing_folder_returns(tmp_path: Path) -> None:
    reports: list[list[str]] = []
    await asyncio.wait_for(
        watch_user_themes(tmp_path / "nope", lambda themes, notes: reports.append(notes)), 5
    )
    assert len(reports) == 1 and "does not exist" in reports[0][0]


@pytest.mark.parametrize("name", sorted(THEMES))
def test_theme_names_do_not_collide_with_builtins(name: str) -> None:
    assert name not in BUILTIN_THEMES
