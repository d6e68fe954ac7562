"""The birth corpus: the bundled starter conversations plus the owner's own texts, as turns.

The starter corpus is the `chitchat-dataset` package (7,168 two-person conversations, MIT licence).
Each conversation is read twice, once with its first speaker as the owner and once swapped, so both
roles learn to speak. A fixed 2% of conversations (chosen by a hash of their id, so the split never
moves) is held out: it is never trained on and serves as the probe set of every later night.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from companion.settings import render_template
from companion.transcript import Turn

HELD_OUT_PERCENT = 2
TEXT_SUFFIXES = (".txt", ".md")

# Names for the greeting lines of the starter conversations: the model learns that the greeting names
# the two speakers, and that the names are words in the text, not roles.
NAMES = (
    "Ada", "Ben", "Cleo", "Dev", "Eli", "Fern", "Gus", "Hana", "Ivo", "June", "Kai", "Lena", "Milo",
    "Nia", "Otto", "Pia", "Quinn", "Rosa", "Sam", "Tess", "Umar", "Vera", "Wes", "Xena", "Yuki", "Zoe",
    "Scout", "Trey", "Robin", "Sky", "Ash", "River", "Sage", "Max", "Lou", "Ray",
)


class CorpusError(ValueError):
    """A corpus path that does not exist or holds no usable text."""


@dataclass(frozen=True)
class Conversation:
    key: str
    messages: tuple[tuple[int, str], ...]  # (speaker 0 or 1, text)


@dataclass
class OwnerTexts:
    texts: list[tuple[str, str]] = field(default_factory=list)  # (path, text)
    notes: list[str] = field(default_factory=list)  # files skipped, and why


def _starter_path() -> Path:
    import chitchat_dataset

    return Path(chitchat_dataset.__file__).with_name("dataset.json")


def starter_conversations() -> list[Conversation]:
    """Every conversation of the starter corpus, speakers numbered in order of appearance."""
    with open(_starter_path(), encoding="utf-8") as fh:
        data = json.load(fh)
    conversations = []
    for key in sorted(data):
        speakers: dict[str, int] = {}
        messages = []
        for group in data[key]["messages"]:
            if not group:
                continue
            who = speakers.setdefault(group[0]["sender"], len(speakers) % 2)
            text = "\n".join(u["text"].strip() for u in group if u["text"].strip())
            if text:
                messages.append((who, text))
        if len(messages) >= 2:
            conversations.append(Conversation(key, tuple(messages)))
    return conversations


def is_held_out(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


def _pick(key: str, salt: str, options: tuple[str, ...]) -> str:
    return options[int(hashlib.sha1(f"{salt}:{key}".encode()).hexdigest(), 16) % len(options)]


def conversation_turns(conv: Conversation, swapped: bool, greeting: str, goodnight: str) -> list[Turn]:
    """A starter conversation as a little day: greeting, the exchange, good night."""
    companion = _pick(conv.key, "companion", NAMES)
    owner = _pick(conv.key, "owner", tuple(n for n in NAMES if n != companion))
    owner_speaker = 1 if swapped else 0
    turns = [Turn("inner", render_template(greeting, companion, owner))]
    turns += [Turn("owner" if who == owner_speaker else "companion", text) for who, text in conv.messages]
    turns.append(Turn("inner", render_template(goodnight, companion, owner)))
    return turns


def starter_documents(held_out: bool, greeting: str, goodnight: str, limit: int | None = None) -> list[list[Turn]]:
    """The starter conversations of one side of the split, each in both orientations."""
    docs = []
    for conv in starter_conversations():
        if is_held_out(conv.key) != held_out:
            continue
        docs.append(conversation_turns(conv, False, greeting, goodnight))
        docs.append(conversation_turns(conv, True, greeting, goodnight))
        if limit is not None and len(docs) >= limit:
            break
    return docs


def read_owner_texts(paths: Iterable[str | Path]) -> OwnerTexts:
    """The owner's .txt and .md files (or folders of them). Binary and non-UTF-8 files are skipped and
    named in `notes`; a path that does not exist, or that holds no text at all, is a `CorpusError`."""
    out = OwnerTexts()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise CorpusError(f"corpus path {path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found = 0
        for f in files:
            if f.suffix.lower() not in TEXT_SUFFIXES:
                if path.is_file():
                    out.notes.append(f"skipped {f}: not a .txt or .md file")
                continue
            data = f.read_bytes()
            if b"\x00" in data:
                out.notes.append(f"skipped {f}: binary file")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.notes.append(f"skipped {f}: not UTF-8 text (byte {exc.start})")
                continue
            if text.strip():
                out.texts.append((str(f), text))
                found += 1
        if not found:
            raise CorpusError(f"corpus path {path} holds no readable .txt or .md text")
    return out
