"""Text that is not valid Unicode, stopped at the edge.

Python strings may hold lone surrogates (U+D800..U+DFFF), e.g. bytes smuggled in through a terminal
or a file name decoded with `surrogateescape`. They cannot be encoded to UTF-8, so the store, the
tokenizer and every file writer would fail on them later, far from where they came in. Text from the
owner is refused with a message that names the position. (The tokenizer, below the app, repairs any
that reach it some other way, each becoming U+FFFD: `model.tokenizer`.)
"""

from __future__ import annotations

import re

__all__ = ["first_surrogate", "surrogate_problem"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def first_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text`, or None when it is valid Unicode."""
    match = _SURROGATE.search(text)
    return None if match is None else match.start()


def surrogate_problem(text: str, what: str = "the text") -> str | None:
    """None for valid Unicode, else one sentence naming the character and its position."""
    at = first_surrogate(text)
    if at is None:
        return None
    return (f"{what} holds a character that is not valid Unicode (a lone surrogate U+{ord(text[at]):04X} "
            f"at position {at + 1}); it was not taken: type it again or paste it from another place")

