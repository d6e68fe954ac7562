"""Adding tokens to a model and its tokenizer without changing anything the model already computes.

One implementation serves both an imported base (our role and end-of-turn tokens are added to the
base's own tokenizer) and growth's "add tokens". New tokens are appended after the old ids, so every
old id, and so every old sequence's encoding, stays what it was. Each new token's embedding row starts
as the mean of the rows of the sub-tokens it replaces (how the old tokenizer spelled it), so the model
begins with a fair guess of its meaning rather than noise. With tied embeddings that row is also the
new token's output row; the logits of every old token at every position are unchanged, because no old
row and no other weight is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
from tokenizers import AddedToken
from tokenizers import Tokenizer as RawTokenizer

from companion.model.transformer import Transformer


class VocabError(ValueError):
    """Tokens that cannot be added (already present, empty, or a tokenizer that does not fit the model)."""


@dataclass
class AddedTokens:
    """What `add_tokens` produced: the model (grown in place), a new raw tokenizer, and the new ids."""

    model: Transformer
    tokenizer: RawTokenizer
    ids: dict[str, int]


def _raw(tokenizer: object) -> RawTokenizer:
    """The `tokenizers.Tokenizer` inside our wrapper, or the object itself when it already is one."""
    inner = getattr(tokenizer, "raw", tokenizer)
    if not isinstance(inner, RawTokenizer):
        raise TypeError(f"expected a tokenizer, got {type(tokenizer).__name__}")
    return inner


def add_tokens(
    model: Transformer,
    tokenizer: object,
    tokens: Sequence[str],
    *,
    special: bool = True,
    init_texts: Mapping[str, str] | None = None,
) -> AddedTokens:
    """Append `tokens` to the vocabulary of `tokenizer` and `model`; old ids and old logits never change.

    - `tokenizer`: our `model.tokenizer.Tokenizer` or a raw `tokenizers.Tokenizer`; it is not modified:
      the result carries a new raw tokenizer (wrap it with `Tokenizer(result.tokenizer)` once it holds
      the role tokens, and save it with `.to_str()`).
    - `model`: grown in place (its embedding gets one row per new token, its config a larger
      `vocab_size`) and returned. Its vocabulary must match the tokenizer's size exactly, so that the
      new ids are the new rows.
    - `special`: added as special tokens (roles, end of turn): never produced by splitting text, and
      kept as text when typed (our `Tokenizer` encodes with `encode_special_tokens`).
    - `init_texts`: for a token, the text whose sub-tokens' mean embedding starts its row (by default
      the token's own spelling, e.g. "<|owner|>" -> "<", "|", "owner", "|", ">").

    Raises `VocabError` naming the token for an empty, repeated or already present token.
    """
    raw = _raw(tokenizer)
    old_size = raw.get_vocab_size(with_added_tokens=True)
    if model.config.vocab_size != old_size:
        raise VocabError(f"the model has {model.config.vocab_size} embedding rows but the tokenizer has "
                         f"{old_size} tokens; new ids would not be new rows")
    seen: set[str] = set()
    for token in tokens:
        if not token:
            raise VocabError("an empty token cannot be added")
        if token in seen:
            raise VocabError(f"token {token!r} is listed twice")
        if raw.token_to_id(token) is not None:
            raise VocabError(f"token {token!r} is already in the vocabulary (id {raw.token_to_id(token)})")
        seen.add(token)
    init_texts = dict(init_texts or {})

    new = RawTokenizer.from_str(raw.to_str())  # a copy: the caller's tokenizer is left as it was
    new.encode_special_tokens = True  # spell each token as the old tokenizer would read it typed
    weight = model.embed.weight.data
    rows = []
    for token in tokens:
        pieces = new.encode(init_texts.get(token, token), add_special_tokens=False).ids
        if not pieces:
            raise VocabError(f"token {token!r}: its initialising text encodes to nothing")
        rows.append(weight[torch.tensor(pieces, device=weight.device)].float().mean(0).to(weight.dtype))
    added = [AddedToken(t, special=special, normalized=False) for t in tokens]
    (new.add_special_tokens if special else new.add_tokens)(added)
    new.encode_special_tokens = False
    ids = {t: new.token_to_id(t) for t in tokens}
    expected = {t: old_size + i for i, t in enumerate(tokens)}
    if ids != expected:
        raise VocabError(f"the tokenizer gave the new tokens ids {ids}, expected {expected}")

    embed = nn.Embedding(old_size + len(tokens), model.config.n_embd, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        embed.weight[:old_size] = weight
        embed.weight[old_size:] = torch.stack(rows)
    embed.weight.requires_grad_(model.embed.weight.requires_grad)
    model.embed = embed
    model.config = replace(model.config, vocab_size=old_size + len(tokens))
    return AddedTokens(model, new, ids)

