"""Byte-level BPE with special tokens for the roles and the end of a turn.

The roles are tokens, not text, so a model is not tied to one owner's name, and text a user types that
looks like a role marker (say "<|owner|>") is encoded as ordinary bytes: it can never become a role.
Any UTF-8 string round-trips exactly through encode and decode.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

# Order fixes their ids (0..n-1). `text` opens plain material with no speaker (books).
SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|owner|>", "<|companion|>", "<|inner|>", "<|text|>")
TOKEN_ROLES = ("owner", "companion", "inner", "text")  # every role with a token: a day's three, and plain text
DEFAULT_VOCAB = 8192


class TokenizerError(ValueError):
    """A tokenizer file that is missing, unreadable, or lacks the role tokens."""


class Tokenizer:
    """A thin, strict wrapper over a `tokenizers` BPE: plain text in, ids out, roles by id only."""

    def __init__(self, hf: _HFTokenizer, source: str = "<memory>") -> None:
        hf.encode_special_tokens = True  # typed "<|owner|>" stays text; not saved in the file, so set here
        self._hf = hf
        self.source = source
        ids = [hf.token_to_id(t) for t in SPECIAL_TOKENS]
        if any(i is None for i in ids):
            missing = [t for t, i in zip(SPECIAL_TOKENS, ids) if i is None]
            raise TokenizerError(f"{source}: tokenizer lacks the special tokens {', '.join(missing)}")
        self.pad_id, self.end_id = ids[0], ids[1]
        self.role_ids: dict[str, int] = dict(zip(TOKEN_ROLES, ids[2:]))
        self.special_ids: frozenset[int] = frozenset(ids)
        self.id_roles: dict[int, str] = {i: r for r, i in self.role_ids.items()}
        # A turn ends at its end token, or where the model opens another turn (any role token).
        self.stop_ids: frozenset[int] = frozenset({self.end_id, *self.role_ids.values()})

    @property
    def raw(self) -> _HFTokenizer:
        """The `tokenizers.Tokenizer` inside, for exporters and `model.vocab.add_tokens` (do not
        change it in place: build a new `Tokenizer` from what they return)."""
        return self._hf

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(_valid(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch([_valid(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the ids; special tokens are dropped (they are structure, not text)."""
        return self._hf.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=False)

    def save(self, path: str | Path) -> None:
        from companion.model.atomic import atomic_write_bytes

        atomic_write_bytes(Path(path), self._hf.to_str(pretty=False).encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        path = Path(path)
        try:
            hf = _HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses
            raise TokenizerError(f"{path}: cannot read tokenizer ({exc})") from exc
        return cls(hf, str(path))

    @classmethod
    def from_str(cls, text: str, source: str = "<memory>") -> "Tokenizer":
        return cls(_HFTokenizer.from_str(text), source)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid(text: str) -> str:
    """Lone surrogates (not valid Unicode; `tokenizers` raises a bare TypeError on them) become U+FFFD.
    The app refuses them where the owner types; this keeps any other path from ending in a traceback."""
    return _SURROGATE.sub("\ufffd", text) if isinstance(text, str) else text


def train_tokenizer(texts: Iterator[str] | Iterable[str], vocab_size: int = DEFAULT_VOCAB) -> Tokenizer:
    """Train a byte-level BPE on the texts; every byte is in the alphabet, so nothing is ever unknown."""
    hf = _HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(hf)
