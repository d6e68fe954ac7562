"""The one mapping between our network and the Llama layout, and Llama configs to and from ours.

Our network is a Llama: half-split rotary (what Hugging Face's `rotate_half` does, so q and k need no
permutation for it), RMSNorm, SwiGLU, tied embeddings, no biases, optional grouped-query attention.
Every format goes through the Hugging Face tensor names here; GGUF renames them and permutes q and k
to llama.cpp's adjacent-pair rotation (`gguf_permute`).
"""

from __future__ import annotations

from typing import Any

import torch

from companion.model.config import ConfigError, ModelConfig
from companion.model.interop.errors import InteropError

ARCHITECTURE = "LlamaForCausalLM"


def to_llama(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict under Hugging Face Llama names (lm_head is tied: not stored)."""
    if config.rope_scaling > 1.0:  # the export writes plain rotary positions: it would compute otherwise
        raise InteropError(f"a stretched context (rotary scaling x{config.rope_scaling:g} from "
                           f"{config.rope_original_block} tokens, YaRN by parts) cannot be exported yet")
    C, kv = config.n_embd, config.kv_heads * config.head_dim
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    for i in range(config.n_layer):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split((C, kv, kv), dim=0)
        out |= {
            hf + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            hf + "self_attn.q_proj.weight": q,
            hf + "self_attn.k_proj.weight": k,
            hf + "self_attn.v_proj.weight": v,
            hf + "self_attn.o_proj.weight": state[ours + "attn.proj.weight"],
            hf + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
            hf + "mlp.gate_proj.weight": state[ours + "mlp.gate.weight"],
            hf + "mlp.up_proj.weight": state[ours + "mlp.up.weight"],
            hf + "mlp.down_proj.weight": state[ours + "mlp.down.weight"],
        }
    return {k: v.contiguous() for k, v in out.items()}


def from_llama(tensors: dict[str, torch.Tensor], config: ModelConfig, source: str) -> dict[str, torch.Tensor]:
    """Our state dict from Hugging Face Llama names; a missing, extra or misshapen tensor is refused."""
    tensors = dict(tensors)
    head = tensors.pop("lm_head.weight", None)
    embed = tensors.get("model.embed_tokens.weight")
    if head is not None and embed is not None and not torch.equal(head, embed):
        raise InteropError(f"{source}: an untied output head (lm_head differs from the embeddings) is not supported")
    biases = sorted(k for k in tensors if k.endswith(".bias"))
    if biases:
        raise InteropError(f"{source}: biases are not supported (found {biases[0]}"
                           + (f" and {len(biases) - 1} more" if len(biases) > 1 else "") + ")")
    expected = to_llama_shapes(config)
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise InteropError(f"{source}: not the tensors of a Llama of this shape (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise InteropError(f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, the config needs {shape}")
    out = {"embed.weight": tensors["model.embed_tokens.weight"], "norm.weight": tensors["model.norm.weight"]}
    for i in range(config.n_layer):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        out |= {
            ours + "attn_norm.weight": tensors[hf + "input_layernorm.weight"],
            ours + "attn.qkv.weight": torch.cat([tensors[hf + f"self_attn.{p}_proj.weight"] for p in "qkv"], dim=0),
            ours + "attn.proj.weight": tensors[hf + "self_attn.o_proj.weight"],
            ours + "mlp_norm.weight": tensors[hf + "post_attention_layernorm.weight"],
            ours + "mlp.gate.weight": tensors[hf + "mlp.gate_proj.weight"],
            ours + "mlp.up.weight": tensors[hf + "mlp.up_proj.weight"],
            ours + "mlp.down.weight": tensors[hf + "mlp.down_proj.weight"],
        }
    return out


def to_llama_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every Llama tensor name and the shape this config needs."""
    C, kv, H, V = config.n_embd, config.kv_heads * config.head_dim, config.hidden, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    for i in range(config.n_layer):
        hf = f"model.layers.{i}."
        shapes |= {
            hf + "input_layernorm.weight": (C,), hf + "post_attention_layernorm.weight": (C,),
            hf + "self_attn.q_proj.weight": (C, C), hf + "self_attn.k_proj.weight": (kv, C),
            hf + "self_attn.v_proj.weight": (kv, C), hf + "self_attn.o_proj.weight": (C, C),
            hf + "mlp.gate_proj.weight": (H, C), hf + "mlp.up_proj.weight": (H, C), hf + "mlp.down_proj.weight": (C, H),
        }
    return shapes


def hf_config(config: ModelConfig, *, eos_id: int, pad_id: int, dtype: str = "float32") -> dict[str, Any]:
    """A Hugging Face `config.json` for `LlamaForCausalLM` computing exactly what our model computes."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.hidden,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,  # transformers 4 reads this
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},  # transformers 5
        "rope_scaling": None,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def config_from_llama(
    *,
    source: str,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    n_layer: int,
    n_head: int,
    n_kv_head: int,
    head_dim: int | None,
    context: int,
    norm_eps: float,
    rope_theta: float,
    block_size: int | None = None,
) -> ModelConfig:
    """Our config for a Llama's hyperparameters (from a HF config or GGUF metadata), or a refusal.

    `block_size` caps the context the companion lives with (a day's length and the KV cache's size);
    the base's own context is the most it may be.
    """
    head_dim = head_dim or hidden_size // n_head
    if n_head * head_dim != hidden_size:
        raise InteropError(f"{source}: {n_head} heads of {head_dim} do not make the width {hidden_size}; not supported")
    if head_dim % 2:
        raise InteropError(f"{source}: an odd head size ({head_dim}) cannot be rotated; not supported")
    block = min(block_size, context) if block_size is not None else context
    derived = ModelConfig(n_embd=hidden_size, head_dim=head_dim).hidden if hidden_size % head_dim == 0 else -1
    try:
        return ModelConfig(
            vocab_size=vocab_size, n_layer=n_layer, n_embd=hidden_size, head_dim=head_dim, block_size=block,
            mlp_hidden=0 if intermediate_size == derived else intermediate_size, rope_theta=float(rope_theta), norm_eps=float(norm_eps),
            n_kv_head=0 if n_kv_head == n_head else n_kv_head,
        )
    except ConfigError as exc:
        raise InteropError(f"{source}: {exc}") from exc


def config_from_hf(cfg: dict[str, Any], source: str, block_size: int | None = None) -> ModelConfig:
    """Our config for a Hugging Face `config.json`; anything we would not compute exactly is refused."""
    archs = cfg.get("architectures") or []
    if cfg.get("model_type") != "llama" or (archs and ARCHITECTURE not in archs):
        raise InteropError(f"{source}: architecture {cfg.get('model_type')!r} {archs} is not supported "
                           f"(only Llama, {ARCHITECTURE})")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise InteropError(f"{source}: biases are not supported (attention_bias/mlp_bias is set)")
    if cfg.get("hidden_act", "silu") != "silu":
        raise InteropError(f"{source}: activation {cfg.get('hidden_act')!r} is not supported (only silu)")
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling")
    rope_type = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or rope.get("rope_type", "default")
    if rope_type != "default":
        raise InteropError(f"{source}: rotary scaling {rope_type!r} is not supported")
    theta = cfg.get("rope_theta") or rope.get("rope_theta") or 10000.0
    try:
        return config_from_llama(
            source=source, vocab_size=int(cfg["vocab_size"]), hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]), n_layer=int(cfg["num_hidden_layers"]),
            n_head=int(cfg["num_attention_heads"]),
            n_kv_head=int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"]),
            head_dim=cfg.get("head_dim"), context=int(cfg.get("max_position_embeddings", 2048)),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_theta=float(theta), block_size=block_size,
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InteropError):
            raise
        raise InteropError(f"{source}: config.json lacks or garbles {exc}") from exc


def gguf_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """q or k rows from half-split rotation (ours, HF) to llama.cpp's adjacent pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """The inverse of `gguf_permute`: llama.cpp's adjacent pairs back to half-split rotation."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
