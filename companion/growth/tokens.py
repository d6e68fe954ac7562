"""Which tokens `companion grow --add-tokens FILE|WORD...` would add, read and checked before anything runs.

Why a word usually becomes two tokens: the tokenizer is a byte-level BPE whose words carry the space
before them (" Trey" is one piece, "Trey" at the start of a line another), so a name added only as
"Trey" would still cost a lone space token each time it follows one in running text. Each word is
therefore added as written and with a leading space (" Trey", "Trey"); an entry that already begins
with a space is taken exactly as written. Forms the tokenizer already reads as one token, or that are
in its vocabulary, are named and skipped. A new token is matched wherever its text appears, also
inside a longer word ("Treyvon" reads " Trey" "v" "on"); text without it encodes exactly as before.

No torch here: the palette plans a growth from the UI's worker thread with this module.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_TOKENS = 1000  # in one growth: each new token is a row of the embedding, learned from nothing but use
MAX_CHARS = 64     # a token is a word or a short phrase, not a sentence
PATH_HINTS = (".txt", ".md", ".list", ".tokens")


class TokenInputError(ValueError):
    """An entry that cannot be a token (or a file that cannot be read); the message names it."""


@dataclass(frozen=True)
class TokenChoice:
    """The tokens to add, in id order, how many old tokens each replaces, and what was skipped and why."""

    add: tuple[str, ...]
    pieces: tuple[int, ...]
    skipped: tuple[tuple[str, str], ...]


def _looks_like_path(entry: str) -> bool:
    return entry.startswith(("/", "./", "../", "~")) or entry.lower().endswith(PATH_HINTS)


def read_entries(arguments: Sequence[str]) -> list[str]:
    """The words named on the command line: a file's lines (UTF-8, one token a line; blank lines and
    lines starting with `#` skipped), or the argument itself when it is not a file. An argument that
    looks like a path (`./x`, `~/x`, `x.txt`) but is no file is an error, not a word."""
    entries: list[str] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            raise TokenInputError(f"{argument}: is a folder; give a file with one token a line, or the words")
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise TokenInputError(f"{argument}: not UTF-8 text (byte {exc.start})") from None
            except OSError as exc:
                raise TokenInputError(f"{argument}: cannot be read ({exc.strerror or exc})") from None
            for number, line in enumerate(text.splitlines(), 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                entries.append(_checked(line.rstrip(), f"{argument}, line {number}"))
        elif _looks_like_path(argument):
            raise TokenInputError(f"{argument}: no such file (a word that looks like a file name is taken for one)")
        else:
            entries.append(_checked(argument, f"{argument!r}"))
    if not entries:
        raise TokenInputError("no tokens given: name words, or a file with one token a line")
    return entries


def _checked(entry: str, where: str) -> str:
    if not entry.strip():
        raise TokenInputError(f"{where}: a token cannot be only spaces")
    if len(entry) > MAX_CHARS:
        raise TokenInputError(f"{where}: {len(entry)} characters; a token has at most {MAX_CHARS}")
    for ch in entry:
        if "\ud800" <= ch <= "\udfff":
            raise TokenInputError(f"{where}: not valid Unicode text")
        if unicodedata.category(ch) in ("Cc", "Cf") and ch != "\u200d":
            raise TokenInputError(f"{where}: holds a control character (U+{ord(ch):04X})")
    return entry


def forms(entry: str) -> list[str]:
    """The tokens one entry asks for: the word with a leading space and as written (see the docstring)."""
    return [entry] if entry[0].isspace() else [" " + entry, entry]


def choose_tokens(tokenizer, entries: Sequence[str]) -> TokenChoice:
    """Decide, with the companion's tokenizer (`model.tokenizer.Tokenizer`), which tokens are new."""
    add: list[str] = []
    pieces: list[int] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    raw = tokenizer.raw
    for entry in entries:
        role = raw.token_to_id(entry.strip())
        if role is not None and role in tokenizer.special_ids:
            skipped.append((entry, f"a role token (id {role}); it is never text"))
            continue
        for token in forms(entry):
            if token in seen:
                continue
            seen.add(token)
            known = raw.token_to_id(token)
            ids = tokenizer.encode(token)
            if known is not None:
                skipped.append((token, f"already in the vocabulary (id {known})"))
            elif len(ids) == 1:
                skipped.append((token, f"already one token (id {ids[0]})"))
            else:
                add.append(token)
                pieces.append(len(ids))
    if len(add) > MAX_TOKENS:
        raise TokenInputError(f"{len(add)} new tokens; at most {MAX_TOKENS} can be added at once")
    return TokenChoice(tuple(add), tuple(pieces), tuple(skipped))


def describe_token(token: str) -> str:
    """A token as the owner reads it in a list: quoted, so a leading space shows."""
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
