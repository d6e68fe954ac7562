"""The one transcript formatter: turns to tokens and text, for training and inference alike.

A turn is `<|role|> text <|end|>`. There is no second format anywhere: the day's gauge counts the
tokens this module produces, the model is prompted with them, the night trains on them, and the
personality book's text file is written by `render_text`. Because each turn is tokenised on its own,
a day's length is the sum of its turns' lengths, and a new turn never re-tokenises the day.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from companion.model.tokenizer import SPECIAL_TOKENS, TOKEN_ROLES, Tokenizer

END_MARK = SPECIAL_TOKENS[1]
ROLE_MARKS = {role: f"<|{role}|>" for role in TOKEN_ROLES}
_MARK_RE = re.compile("|".join(re.escape(m) for m in [*ROLE_MARKS.values(), END_MARK]))


@dataclass(frozen=True)
class Turn:
    role: str  # "owner" | "companion" | "inner" | "text"
    text: str

    def __post_init__(self) -> None:
        if self.role not in TOKEN_ROLES:
            raise ValueError(f"unknown role {self.role!r}; roles are {', '.join(TOKEN_ROLES)}")


@dataclass
class Encoded:
    """Token ids and, for each id, the role of the turn it belongs to (for loss weights)."""

    ids: list[int]
    roles: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def encode_turn(tokenizer: Tokenizer, turn: Turn) -> list[int]:
    return [tokenizer.role_ids[turn.role], *tokenizer.encode(turn.text), tokenizer.end_id]


def encode_turns(tokenizer: Tokenizer, turns: Iterable[Turn]) -> Encoded:
    turns = list(turns)
    return _assemble(tokenizer, turns, [tokenizer.encode(t.text) for t in turns])


def encode_documents(tokenizer: Tokenizer, documents: Sequence[Sequence[Turn]]) -> list[Encoded]:
    """`encode_turns` for many transcripts at once (the corpus): one batched call to the tokenizer."""
    bodies = iter(tokenizer.encode_batch([t.text for doc in documents for t in doc]))
    return [_assemble(tokenizer, doc, [next(bodies) for _ in doc]) for doc in documents]


def _assemble(tokenizer: Tokenizer, turns: Sequence[Turn], bodies: Sequence[list[int]]) -> Encoded:
    ids: list[int] = []
    roles: list[str] = []
    for turn, body in zip(turns, bodies):
        piece = [tokenizer.role_ids[turn.role], *body, tokenizer.end_id]
        ids.extend(piece)
        roles.extend([turn.role] * len(piece))
    return Encoded(ids, roles)


def count_tokens(tokenizer: Tokenizer, turn: Turn) -> int:
    """How many tokens a turn occupies in the day (what the gauge adds up)."""
    return len(encode_turn(tokenizer, turn))


def reply_prompt(tokenizer: Tokenizer, context: Sequence[int], role: str = "companion") -> list[int]:
    """The context followed by the role token that opens the turn the model is asked to write."""
    return [*context, tokenizer.role_ids[role]]


def parse_tokens(tokenizer: Tokenizer, ids: Sequence[int]) -> list[Turn]:
    """Turns back from ids: the exact inverse of `encode_turns` (an unfinished last turn is kept)."""
    turns: list[Turn] = []
    role: str | None = None
    body: list[int] = []
    for i in ids:
        if i in tokenizer.id_roles:
            if role is not None:
                turns.append(Turn(role, tokenizer.decode(body)))
            role, body = tokenizer.id_roles[i], []
        elif i == tokenizer.end_id:
            if role is not None:
                turns.append(Turn(role, tokenizer.decode(body)))
            role, body = None, []
        elif role is not None:
            body.append(i)
    if role is not None:
        turns.append(Turn(role, tokenizer.decode(body)))
    return turns


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("<|", "<\\|")


def _unescape(text: str) -> str:
    return re.sub(r"\\\\|<\\\|", lambda m: "\\" if m.group(0) == "\\\\" else "<|", text)


def render_text(turns: Iterable[Turn]) -> str:
    """The readable form: `<|owner|>hello<|end|>` per turn, one per line.

    Text that a user typed which looks like a marker is escaped (`<\\|`), so `parse_text` gives back
    exactly the turns that went in.
    """
    return "".join(f"{ROLE_MARKS[t.role]}{_escape(t.text)}{END_MARK}\n" for t in turns)


def parse_text(text: str) -> list[Turn]:
    """Turns back from `render_text` output."""
    turns: list[Turn] = []
    role: str | None = None
    pos = 0
    for m in _MARK_RE.finditer(text):
        if role is not None:
            turns.append(Turn(role, _unescape(text[pos : m.start()])))
        mark = m.group(0)
        role = next((r for r, mk in ROLE_MARKS.items() if mk == mark), None)
        pos = m.end()
    if role is not None:
        turns.append(Turn(role, _unescape(text[pos:])))
    return turns


def training_example(tokenizer: Tokenizer, turns: Sequence[Turn], role_weights: dict[str, float]) -> tuple[list[int], list[int], list[float]]:
    """Inputs, targets and per-target weights for next-token training on a transcript.

    A target's weight is its turn's role weight: the companion's and inner words teach fully, the
    owner's own words can teach less, and a role with weight 0 only serves as context.
    """
    enc = encode_turns(tokenizer, turns)
    inputs, targets = enc.ids[:-1], enc.ids[1:]
    weights = [role_weights.get(r, 0.0) for r in enc.roles[1:]]
    targets = [t if w > 0 else -100 for t, w in zip(targets, weights)]
    return inputs, targets, weights
