"""Stretch a network's context: a longer block whose rotary positions still read what the old ones read.

Choice: YaRN's frequency rule, "NTK-by-parts" (Peng et al. 2023), without YaRN's attention temperature
(`attention_factor = 1`). Each pair of rotary dimensions is treated by how often it turns within the
original block: fast pairs (more than 32 turns) carry local order and keep their frequency exactly;
slow pairs (less than one turn) are slowed by the stretch factor, so the new, longer block spans the
angles the old block spanned (position interpolation); pairs between are blended. Compared with plain
position interpolation this leaves local order untouched (smaller change inside the old block); compared
with NTK-aware base scaling it never extrapolates a slow pair past the angles it was trained on. The
temperature is left out because it would rescale every attention score, inside the old block too.

No weight changes: only the config does (`block_size`, `rope_scaling`, `rope_original_block`), so a
checkpoint saved before any stretch (rope_scaling 1.0) loads exactly as it did. The same frequencies are
Hugging Face's `rope_scaling = {"rope_type": "yarn", "factor": ..., "original_max_position_embeddings":
..., "attention_factor": 1.0}` for export.

Inside the old block the logits are *not* bit-identical: the slow pairs turn a little slower. The change
is measured by `tests/test_growth_model.py` and `bench/growth.py`; a short stretch night on long windows
then teaches the model its new positions.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from companion.model.config import ConfigError, ModelConfig
from companion.model.transformer import Transformer


class StretchError(ValueError):
    """A context length the network cannot be stretched to."""


def stretch_config(config: ModelConfig, block_size: int) -> ModelConfig:
    """`config` with a longer block; the stretch factor is counted from the block the rotary
    frequencies were first trained at, so 512 -> 1024 -> 2048 gives factors 2 then 4."""
    if block_size <= config.block_size:
        raise StretchError(f"context {block_size} is not larger than the current context {config.block_size}")
    original = config.rope_original_block or config.block_size
    data = asdict(config)
    data.update(block_size=block_size, rope_original_block=original, rope_scaling=block_size / original)
    try:
        return ModelConfig(**data)
    except ConfigError as exc:
        raise StretchError(str(exc)) from exc


@torch.no_grad()
def stretch(model: Transformer, block_size: int) -> Transformer:
    """A new `Transformer` with the longer block and the same weights (`model` is left untouched)."""
    grown = Transformer(stretch_config(model.config, block_size))
    param = next(model.parameters())
    grown = grown.to(device=param.device, dtype=param.dtype)
    grown.load_state_dict(model.state_dict(), strict=True)
    return grown.eval()
