"""The network's shape: one dataclass saved with every checkpoint, and the named presets.

Presets follow "start deep, grow wide": the `seedling` is small enough to learn on a laptop CPU, and
`v1`..`v4` are 24 layers at 384, 512, 768 and 1024 dimensions with the head size fixed at 64, so
widening from one to the next only adds heads.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


class ConfigError(ValueError):
    """A model configuration that cannot be built (unknown preset, inconsistent sizes)."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 8192
    n_layer: int = 6
    n_embd: int = 256
    head_dim: int = 64
    block_size: int = 512
    mlp_hidden: int = 0  # 0: derived from n_embd (SwiGLU's 8/3 rule, rounded up to a multiple of 64)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # Context stretching (model.growth.stretch): the block size the rotary frequencies were trained at,
    # and the factor the block has grown by since. 1.0 / 0: never stretched (every older checkpoint).
    rope_scaling: float = 1.0
    rope_original_block: int = 0
    n_kv_head: int = 0  # 0: one key/value head per query head; fewer is grouped-query attention (open bases)

    def __post_init__(self) -> None:
        if self.n_embd % self.head_dim:
            raise ConfigError(f"n_embd={self.n_embd} is not a multiple of head_dim={self.head_dim}")
        for name in ("vocab_size", "n_layer", "n_embd", "head_dim", "block_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        if self.rope_scaling < 1.0:
            raise ConfigError(f"rope_scaling={self.rope_scaling} must be at least 1")
        if self.rope_scaling > 1.0 and self.rope_original_block <= 0:
            raise ConfigError("rope_scaling > 1 needs rope_original_block, the block the rotary frequencies were trained at")
        if self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head):
            raise ConfigError(f"n_kv_head={self.n_kv_head} must divide the {self.n_head} query heads")

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_dim

    @property
    def kv_heads(self) -> int:
        """Key/value heads: n_kv_head, or one per query head when it is 0 (every older checkpoint)."""
        return self.n_kv_head or self.n_head

    @property
    def hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        return -(-(8 * self.n_embd // 3) // 64) * 64

    def to_json(self) -> str:
        data = asdict(self)
        if not data["n_kv_head"]:  # written as before, so a file's config is unchanged by this field
            del data["n_kv_head"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


PRESETS: dict[str, ModelConfig] = {
    "seedling": ModelConfig(n_layer=6, n_embd=256, block_size=512),
    "v1": ModelConfig(n_layer=24, n_embd=384, block_size=1024),
    "v2": ModelConfig(n_layer=24, n_embd=512, block_size=1024),
    "v3": ModelConfig(n_layer=24, n_embd=768, block_size=1024),
    "v4": ModelConfig(n_layer=24, n_embd=1024, block_size=1024),
}


def preset(name: str, **overrides: int | float) -> ModelConfig:
    """The named preset, optionally with fields replaced (tests use tiny vocabularies and blocks)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    base = asdict(PRESETS[name])
    base.update(overrides)
    return ModelConfig(**base)
