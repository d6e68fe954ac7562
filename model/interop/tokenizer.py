"""Tokenizers other tools read exactly as we do, and ours rebuilt from a GGUF file's vocabulary.

Both directions are byte-level BPE with one of two pre-tokenizers llama.cpp knows by name: GPT-2's
regex ("gpt-2", our own tokenizers) and digits split one by one before it ("smollm", SmolLM2's).
Anything else would be read differently by another tool, so it is refused rather than exported wrong.
Typed role markup must stay text in other tools too: Hugging Face gets `split_special_tokens`, GGUF
marks our role and end tokens as control tokens (llama.cpp parses them only when told to).
"""

from __future__ import annotations

import json
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as RawTokenizer

from companion.model.interop.errors import InteropError

# Our turn format for other tools: `<|role|>text<|end|>` per message, roles named as theirs are.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set role = {'user': 'owner', 'assistant': 'companion', 'system': 'inner'}.get(message['role'], message['role']) -%}"
    "{{- '<|' + role + '|>' + message['content'] + '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|companion|>' -}}{%- endif -%}"
)

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4


def _spec(raw: RawTokenizer) -> dict[str, Any]:
    return json.loads(raw.to_str())


def _is_byte_level(p: dict | None) -> bool:
    return bool(p) and p.get("type") == "ByteLevel" and p.get("use_regex", True) and not p.get("add_prefix_space", False)


def pre_tokenizer_name(raw: RawTokenizer, source: str) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenizer, or a refusal naming what it is."""
    spec = _spec(raw)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise InteropError(f"{source}: tokenizer model {model.get('type')!r} cannot be reproduced (only byte-level BPE)")
    if spec.get("normalizer"):
        raise InteropError(f"{source}: a tokenizer normalizer ({spec['normalizer'].get('type')}) cannot be reproduced")
    pre = spec.get("pre_tokenizer")
    if _is_byte_level(pre):
        return "gpt-2"
    if pre and pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (len(steps) == 2 and steps[0].get("type") == "Digits" and steps[0].get("individual_digits")
                and _is_byte_level(steps[1])):
            return "smollm"
    kind = pre.get("type") if pre else None
    raise InteropError(f"{source}: pre-tokenizer {kind!r} cannot be reproduced (only GPT-2's byte-level regex, "
                       "alone or after single digits)")


def _pre_tokenizer(name: str):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "gpt-2":
        return byte_level
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])


def gguf_vocabulary(raw: RawTokenizer, source: str) -> dict[str, Any]:
    """What GGUF stores of a tokenizer: tokens in id order, their types, merges, the pre-tokenizer."""
    pre = pre_tokenizer_name(raw, source)
    spec = _spec(raw)
    size = raw.get_vocab_size(with_added_tokens=True)
    by_id = {i: t for t, i in raw.get_vocab(with_added_tokens=True).items()}
    if sorted(by_id) != list(range(size)):
        raise InteropError(f"{source}: the tokenizer's ids are not 0..{size - 1} without gaps; cannot write GGUF")
    types = [NORMAL] * size
    for added in spec.get("added_tokens", []):
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return {"pre": pre, "tokens": [by_id[i] for i in range(size)], "types": types, "merges": merges}


def tokenizer_from_gguf(tokens: list[str], types: list[int], merges: list[str], model: str, pre: str,
                        source: str) -> RawTokenizer:
    """A `tokenizers` tokenizer that encodes as the GGUF file's llama.cpp tokenizer does, or a refusal."""
    if model != "gpt2":
        raise InteropError(f"{source}: tokenizer model {model!r} cannot be reproduced (only byte-level BPE, 'gpt2')")
    if pre not in ("gpt-2", "smollm"):
        raise InteropError(f"{source}: pre-tokenizer {pre!r} cannot be reproduced (only 'gpt-2' and 'smollm')")
    if len(types) != len(tokens):
        raise InteropError(f"{source}: {len(tokens)} tokens but {len(types)} token types")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise InteropError(f"{source}: the vocabulary repeats a token")
    pairs = []
    for m in merges:
        a, sep, b = m.partition(" ")
        if not sep:
            raise InteropError(f"{source}: merge {m!r} is not two tokens")
        pairs.append((a, b))
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
    raw.pre_tokenizer = _pre_tokenizer(pre)
    raw.decoder = decoders.ByteLevel()
    special = [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == CONTROL]
    user = [AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == USER_DEFINED]
    if special:
        raw.add_special_tokens(special)
    if user:
        raw.add_tokens(user)
    return raw


def hf_tokenizer_files(raw: RawTokenizer, *, eos: str, pad: str, specials: list[str], max_length: int) -> dict[str, bytes]:
    """`tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` for transformers.

    `split_special_tokens` keeps typed role markup as text, as our tokenizer does; no BOS is added; no
    space clean-up on decode, so decoding gives back exactly the text.
    """
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "split_special_tokens": True,
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": None,
        "unk_token": None,
        "eos_token": eos,
        "pad_token": pad,
        "additional_special_tokens": [s for s in specials if s not in (eos, pad)],
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "chat_template": CHAT_TEMPLATE,
    }
    special_map = {"eos_token": eos, "pad_token": pad, "additional_special_tokens": config["additional_special_tokens"]}
    return {
        "tokenizer.json": raw.to_str(pretty=False).encode("utf-8"),
        "tokenizer_config.json": json.dumps(config, indent=2).encode("utf-8"),
        "special_tokens_map.json": json.dumps(special_map, indent=2).encode("utf-8"),
    }
