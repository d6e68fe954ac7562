"""Make any text safe to *show* in the terminal.

The owner's text, the model's text and file contents reach the screen verbatim. A stray escape
sequence (``\\x1b[31m``), a carriage return or a bidi override would otherwise repaint, hide or
reorder what is on screen, so every widget passes text through :func:`display_safe` before
building its ``Content``.  Markup is never an issue here because widgets build
``textual.content.Content`` objects directly (never parsed as markup); this module only deals with
characters.  The stored text is never changed: this is for display only.
"""

from __future__ import annotations

import re

__all__ = ["display_safe", "one_line"]

# Bidirectional embeddings/overrides/isolates: invisible, and able to reorder what is shown.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f" + _BIDI + "\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 64)  # caret notation: ESC -> ^[, CR -> ^M
    if code == 0x7F:
        return "^?"
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # lone surrogate (e.g. from surrogateescape): cannot be encoded
    return f"<U+{code:04X}>"


def display_safe(text: object) -> str:
    """Return ``text`` with every control character made visible.

    Newlines and tabs are kept (``\\r\\n`` becomes ``\\n``); other C0 controls are shown in caret
    notation (``^[``), C1 controls and bidi overrides as ``<U+XXXX>``, lone surrogates as U+FFFD.
    Non-strings are converted with ``str()`` so that a wrong type never crashes the display.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return _UNSAFE.sub(_escape, text)


def one_line(text: object, limit: int | None = None) -> str:
    """Like :func:`display_safe` but folded to one line (for list rows and labels).

    Newlines and tabs become spaces; when ``limit`` is given the result is cut to ``limit``
    characters with an ellipsis.
    """
    safe = display_safe(text).replace("\n", " ").replace("\t", " ")
    if limit is not None and len(safe) > limit:
        safe = safe[: max(0, limit - 1)] + "…"
    return safe
