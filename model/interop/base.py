"""An open Llama-family model as a companion's first weights.

The base's own tokenizer becomes the companion's, forever; our special tokens (padding, end of turn,
the roles) are appended to it by `model.vocab.add_tokens`, so every id the base knew keeps its meaning
and the base computes exactly what it computed before for every old sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from companion.model.interop.errors import InteropError
from companion.model.tokenizer import SPECIAL_TOKENS, Tokenizer, TokenizerError
from companion.model.transformer import Transformer
from companion.model.vocab import add_tokens


@dataclass
class Base:
    model: Transformer
    tokenizer: Tokenizer
    added: dict[str, int]  # our special tokens appended to the base's vocabulary, with their ids
    source: str
    kind: str  # "gguf" or "hf"


def base_kind(path: Path) -> str:
    """'hf' for a folder, 'gguf' for a GGUF file (by its magic), else a refusal naming the path."""
    if path.is_dir():
        return "hf"
    if not path.is_file():
        raise InteropError(f"{path}: no such file or folder")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InteropError(f"{path}: unreadable ({exc.strerror or exc})") from exc
    if magic != b"GGUF":
        raise InteropError(f"{path}: neither a GGUF file nor a Hugging Face model folder")
    return "gguf"


def read_base(path: str | Path, block_size: int | None = None) -> Base:
    """Read a Llama-family base (HF folder or GGUF file) and give it our special tokens.

    `block_size` caps the context the companion lives with (the base's own is the most). Every
    refusal is an `InteropError` naming the file and what is unsupported; nothing is written here.
    """
    path = Path(path).expanduser()
    kind = base_kind(path)
    if kind == "hf":
        from companion.model.interop.hf import read_hf

        config, state, raw = read_hf(path, block_size)
    else:
        from companion.model.interop.gguf import read_gguf

        config, state, raw = read_gguf(path, block_size)
    model = Transformer(config)
    model.load_state_dict(state, strict=True)
    missing = [t for t in SPECIAL_TOKENS if raw.token_to_id(t) is None]
    added: dict[str, int] = {}
    if missing:
        grown = add_tokens(model, raw, missing)
        model, raw, added = grown.model, grown.tokenizer, grown.ids
    try:
        tokenizer = Tokenizer(raw, str(path))
    except TokenizerError as exc:
        raise InteropError(str(exc)) from exc
    return Base(model.eval(), tokenizer, added, str(path), kind)
