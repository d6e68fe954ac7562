"""The app's own themes, its stylesheet, and the owner's theme files.

``companion.tcss`` uses only Textual's standard theme variables ($primary, $surface, $text-muted,
...), so any theme (ours, Textual's built-ins, or one the owner writes) restyles the whole app.
Owner themes are small TOML files in a themes folder; a bad file is skipped and named in a note,
never a crash, and the folder can be watched so that edits show up while the app runs.

This package imports nothing from ``companion`` or ``model`` (and never torch).
"""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

__all__ = [
    "DEFAULT_THEME",
    "EXAMPLE_THEME_PATH",
    "STYLESHEET_PATH",
    "THEMES",
    "THEME_FILE_KEYS",
    "apply_user_themes",
    "load_user_theme",
    "load_user_themes",
    "register_themes",
    "reserved_theme_names",
    "watch_user_themes",
]

STYLESHEET_PATH: Path = Path(__file__).with_name("companion.tcss")
"""The app's stylesheet; use as ``CSS_PATH = STYLESHEET_PATH``."""

EXAMPLE_THEME_PATH: Path = Path(__file__).with_name("example.toml")
"""A commented owner theme file, for the app to copy into a new themes folder."""

THEMES: dict[str, Theme] = {
    theme.name: theme
    for theme in (
        # Evening: a lamp-lit amber on dusk violet. The default.
        Theme(
            name="companion-dusk",
            primary="#E0A458",
            secondary="#8C96D0",
            accent="#E57A77",
            foreground="#E8E3F0",
            background="#1B1826",
            surface="#24202F",
            panel="#302A42",
            success="#8FC79A",
            warning="#E9B872",
            error="#E06C75",
            dark=True,
        ),
        # Morning: warm paper, terracotta and slate blue.
        Theme(
            name="companion-dawn",
            primary="#B8572F",
            secondary="#4F6E9C",
            accent="#A8437A",
            foreground="#3A3340",
            background="#FBF6EE",
            surface="#F3EBDD",
            panel="#E6D9C3",
            success="#3F7D4A",
            warning="#A86B12",
            error="#B33434",
            dark=False,
        ),
        # Forest floor: moss green and bark on deep green-black.
        Theme(
            name="companion-moss",
            primary="#8DBF6A",
            secondary="#C9A66B",
            accent="#6FB7A8",
            foreground="#DDE6D5",
            background="#141C17",
            surface="#1B261F",
            panel="#25342A",
            success="#7FBF7F",
            warning="#D9B44A",
            error="#D9695F",
            dark=True,
        ),
    )
}
"""The project's own themes, by name."""

DEFAULT_THEME = "companion-dusk"

THEME_FILE_KEYS: dict[str, type] = {
    "name": str,
    "primary": str,
    "secondary": str,
    "accent": str,
    "foreground": str,
    "background": str,
    "surface": str,
    "panel": str,
    "boost": str,
    "success": str,
    "warning": str,
    "error": str,
    "dark": bool,
}
"""Keys a theme file may have; only ``primary`` is required (``name`` defaults to the file stem)."""

MAX_THEME_FILE_BYTES = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def register_themes(app: Any) -> list[str]:
    """Register the project's themes with ``app`` and return their names."""
    for theme in THEMES.values():
        app.register_theme(theme)
    return list(THEMES)


def reserved_theme_names() -> set[str]:
    """Names an owner's theme may not take: Textual's built-ins and ours."""
    return set(BUILTIN_THEMES) | set(THEMES)


def load_user_theme(path: Path, reserved: Iterable[str] = ()) -> Theme:
    """Read one theme file; raises ``ValueError`` with a plain-words reason when it is bad."""
    try:
        size = path.stat().st_size
        if size > MAX_THEME_FILE_BYTES:
            raise ValueError(f"file too large ({size:,} bytes; the most is {MAX_THEME_FILE_BYTES:,})")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read the file ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise ValueError("not UTF-8 text") from error
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"not valid TOML ({error})") from error

    unknown = sorted(set(data) - set(THEME_FILE_KEYS) - {"variables"})
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(THEME_FILE_KEYS)}, variables"
        )
    for key, value in data.items():
        expected = THEME_FILE_KEYS.get(key)
        if expected is not None and not isinstance(value, expected):
            raise ValueError(f"{key} must be a {'true/false' if expected is bool else 'string'}")

    name = data.get("name", path.stem)
    if not _NAME.match(name):
        raise ValueError(
            f"name {name!r} must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    if name in set(reserved) | reserved_theme_names():
        raise ValueError(f"name {name!r} is taken by a built-in theme; choose another")
    if "primary" not in data:
        raise ValueError("primary is required (a colour such as \"#E0A458\")")

    colors: dict[str, str] = {}
    for key, expected in THEME_FILE_KEYS.items():
        if expected is str and key != "name" and key in data:
            try:
                Color.parse(data[key])
            except ColorParseError as error:
                raise ValueError(f"{key} = {data[key]!r} is not a colour") from error
            colors[key] = data[key]

    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise ValueError("[variables] must map names to strings")

    theme = Theme(name=name, dark=data.get("dark", True), variables=dict(variables), **colors)
    try:
        theme.to_color_system().generate()
    except Exception as error:  # a theme that cannot produce its colours must not reach the app
        raise ValueError(f"the colours do not make a theme ({error})") from error
    return theme


def load_user_themes(folder: Path, reserved: Iterable[str] = ()) -> tuple[list[Theme], list[str]]:
    """Read every ``*.toml`` theme file in ``folder`` (sorted by file name).

    Returns the good themes and a list of notes, one per skipped file (``"name.toml: reason"``).
    A missing folder gives no themes and no notes.  Two files with the same theme name: the first
    (by file name) wins, the second is named in a note.
    """
    folder = Path(folder)
    themes: list[Theme] = []
    notes: list[str] = []
    if not folder.is_dir():
        return themes, notes
    taken = set(reserved)
    for path in sorted(folder.glob("*.toml")):
        try:
            if not path.is_file():
                continue
            theme = load_user_theme(path, reserved=taken)
        except ValueError as error:
            notes.append(f"{path.name}: {error}")
            continue
        taken.add(theme.name)
        themes.append(theme)
    return themes, notes


def apply_user_themes(app: Any, themes: Iterable[Theme], previous: Iterable[str] = ()) -> list[str]:
    """Register ``themes`` with ``app``; unregister names in ``previous`` that are gone.

    The active theme is never unregistered from under the app (it stays until switched away).
    Returns the names now registered.
    """
    names = []
    for theme in themes:
        app.register_theme(theme)
        names.append(theme.name)
    for gone in set(previous) - set(names):
        if gone != getattr(app, "theme", None):
            app.unregister_theme(gone)
    return names


ThemesCallback = Callable[[list[Theme], list[str]], "Awaitable[None] | None"]


async def watch_user_themes(
    folder: Path,
    callback: ThemesCallback,
    *,
    reserved: Iterable[str] = (),
    initial: bool = True,
    stop_event: Any = None,
    force_polling: bool | None = None,
    debounce_ms: int = 300,
) -> None:
    """Watch ``folder`` and call ``callback(themes, notes)`` after every change to a ``*.toml``.

    Meant to run in an *async* Textual worker (the callback then runs on the app's loop and may
    call ``app.register_theme`` directly)::

        self.run_worker(watch_user_themes(folder, self.on_user_themes), group="themes",
                        exclusive=True)

    ``initial`` calls back once with the current themes before waiting for changes.  A folder that
    does not exist is reported once in the notes and the watcher returns (it creates nothing).
    Cancelling the worker, or setting ``stop_event``, ends the watch.
    """
    from watchfiles import awatch  # imported here so the rest of the module never needs it

    folder = Path(folder)
    reserved = tuple(reserved)

    async def report() -> None:
        themes, notes = load_user_themes(folder, reserved)
        result = callback(themes, notes)
        if inspect.isawaitable(result):
            await result

    if not folder.is_dir():
        result = callback([], [f"{folder}: the themes folder does not exist"])
        if inspect.isawaitable(result):
            await result
        return
    if initial:
        await report()
    changes: AsyncIterator[set[tuple[Any, str]]] = awatch(
        folder,
        stop_event=stop_event,
        force_polling=force_polling,
        debounce=debounce_ms,
        recursive=False,
        watch_filter=lambda _change, path: path.endswith(".toml"),
    )
    async for _changes in changes:
        await report()
