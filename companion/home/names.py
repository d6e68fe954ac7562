"""A companion's name, which is also its folder's name: checked here once, for the home, the
settings and the command line alike. Imports nothing of the companion, so settings can use it."""

from __future__ import annotations

import unicodedata

from companion.home.errors import HomeError

MAX_NAME_LENGTH = 40


def validate_name(name: str, what: str = "companion name") -> str:
    """Return ``name`` if it can name a companion (and its folder), else raise
    :class:`HomeError` naming the value and why.

    Refused: empty, longer than 40 characters, path separators (``/`` or ``\\``),
    ``..``, a leading dot, leading or trailing spaces, control and other invisible
    characters (Unicode category C*)."""
    if not isinstance(name, str):
        raise HomeError(f"invalid {what} {name!r}: it must be text")

    def bad(why: str) -> HomeError:
        return HomeError(f"invalid {what} {name!r}: {why}")

    if not name:
        raise bad("it is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise bad(f"it is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    for ch in name:
        if unicodedata.category(ch).startswith("C"):
            raise bad(f"it contains a control or invisible character (U+{ord(ch):04X})")
    if "/" in name or "\\" in name:
        raise bad("it contains a path separator ('/' or '\\')")
    if ".." in name:
        raise bad("it contains '..'")
    if name.startswith("."):
        raise bad("it starts with a dot")
    if name != name.strip():
        raise bad("it starts or ends with a space")
    return name
