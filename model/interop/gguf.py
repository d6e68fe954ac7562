"""GGUF, llama.cpp's file, written and read with the `gguf` package (llama.cpp's own writer and reader).

Export writes architecture `llama` with every hyperparameter llama.cpp needs, the tokenizer as
byte-level BPE (`gpt2`) with its pre-tokenizer, merges and token types (our role and end tokens are
control tokens), no BOS, our stop and padding ids and a chat template. q and k are permuted to
llama.cpp's adjacent-pair rotation. Norms stay f32; 2-D weights are f32, f16 or q8_0.
Import reads a Llama GGUF, dequantises every tensor with `gguf` and undoes the permutation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from companion.model.config import ModelConfig
from companion.model.interop.errors import InteropError
from companion.model.interop.llama import from_llama, config_from_llama, gguf_permute, gguf_unpermute, to_llama
from companion.model.interop.output import staged_file
from companion.model.interop.tokenizer import CHAT_TEMPLATE, gguf_vocabulary, tokenizer_from_gguf

DTYPES = ("f32", "f16", "q8_0")

# Hugging Face name suffix -> GGUF name suffix, per layer
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}


def _gguf():
    """The `gguf` package (a dependency; imported when GGUF is used), or a refusal that says how to get it."""
    try:
        import gguf
    except ImportError as exc:
        raise InteropError("GGUF needs the `gguf` package: pip install 'gguf>=0.17'") from exc
    return gguf


def gguf_name(hf: str) -> str:
    """The GGUF tensor name of a Hugging Face Llama tensor name."""
    if hf in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf]
    _, _, i, rest = hf.split(".", 3)  # model.layers.<i>.<rest>
    return f"blk.{i}.{_LAYER_NAMES[rest]}"


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a GGUF tensor name, or None for a tensor a Llama does not have."""
    for hf, g in _GLOBAL_NAMES.items():
        if name == g:
            return hf
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
        for hf, g in _LAYER_NAMES.items():
            if parts[2] == g:
                return f"model.layers.{parts[1]}.{hf}"
    return None


def gguf_tensors(model_state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Our tensors under GGUF names, q and k permuted for llama.cpp (f32, before any quantisation)."""
    out = {}
    for name, t in to_llama(model_state, config).items():
        t = t.detach().float().cpu()
        if name.endswith("q_proj.weight"):
            t = gguf_permute(t, config.n_head)
        elif name.endswith("k_proj.weight"):
            t = gguf_permute(t, config.kv_heads)
        out[gguf_name(name)] = t.contiguous()
    return out


def export_gguf(
    model_state: dict[str, torch.Tensor],
    config: ModelConfig,
    tokenizer: Any,
    path: str | Path,
    *,
    dtype: str = "f16",
    name: str = "companion",
    eos_id: int,
    pad_id: int,
    overwrite: bool = False,
) -> Path:
    """Write a GGUF file llama.cpp runs as our model; nothing appears under `path` unless all of it is written.

    `tokenizer` is our `Tokenizer` (or a raw `tokenizers.Tokenizer`); one whose pre-tokenizer llama.cpp
    would read differently is refused before anything is written.
    """
    import numpy as np

    gguf = _gguf()
    path = Path(path)
    if dtype not in DTYPES:
        raise InteropError(f"dtype {dtype!r} is not supported for GGUF; choose one of: {', '.join(DTYPES)}")
    raw = getattr(tokenizer, "raw", tokenizer)
    vocab = gguf_vocabulary(raw, str(getattr(tokenizer, "source", "tokenizer")))
    if len(vocab["tokens"]) != config.vocab_size:
        raise InteropError(f"the tokenizer has {len(vocab['tokens'])} tokens but the model {config.vocab_size}")
    tensors = gguf_tensors(model_state, config)
    Q = gguf.GGMLQuantizationType
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    with staged_file(path, overwrite) as tmp:
        writer = gguf.GGUFWriter(tmp, arch="llama")
        try:
            writer.add_name(name)
            writer.add_context_length(config.block_size)
            writer.add_embedding_length(config.n_embd)
            writer.add_block_count(config.n_layer)
            writer.add_feed_forward_length(config.hidden)
            writer.add_head_count(config.n_head)
            writer.add_head_count_kv(config.kv_heads)
            writer.add_key_length(config.head_dim)
            writer.add_value_length(config.head_dim)
            writer.add_rope_dimension_count(config.head_dim)
            writer.add_rope_freq_base(config.rope_theta)
            writer.add_layer_norm_rms_eps(config.norm_eps)
            writer.add_vocab_size(config.vocab_size)
            writer.add_file_type(file_type)
            writer.add_tokenizer_model("gpt2")
            writer.add_tokenizer_pre(vocab["pre"])
            writer.add_token_list(vocab["tokens"])
            writer.add_token_types(vocab["types"])
            writer.add_token_merges(vocab["merges"])
            writer.add_eos_token_id(eos_id)
            writer.add_pad_token_id(pad_id)
            writer.add_add_bos_token(False)
            writer.add_add_eos_token(False)
            writer.add_chat_template(CHAT_TEMPLATE)
            for tname, t in tensors.items():
                arr = t.numpy()
                if arr.ndim == 1 or dtype == "f32":
                    writer.add_tensor(tname, arr.astype(np.float32))
                elif dtype == "f16" or arr.shape[-1] % 32:
                    writer.add_tensor(tname, arr.astype(np.float16))
                else:
                    writer.add_tensor(tname, gguf.quants.quantize(arr, Q.Q8_0), raw_dtype=Q.Q8_0)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return path


def _f32(value: Any) -> float:
    """A float GGUF stored as f32, as the shortest decimal that reads back to that f32 (1e-05, not
    9.99999974e-06): so an exported config reads back equal."""
    import numpy as np

    return float(str(np.float32(value)))


def _field(reader: Any, key: str, source: str, default: Any = None, required: bool = True) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if required and default is None:
            raise InteropError(f"{source}: GGUF metadata {key} is missing")
        return default
    return field.contents()


def read_gguf(path: str | Path, block_size: int | None = None) -> tuple[ModelConfig, dict[str, torch.Tensor], Any]:
    """Our config, our state dict (f32) and the raw tokenizer of a Llama GGUF file, or a refusal
    naming the file and what is unsupported."""
    gguf = _gguf()
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise InteropError(f"{source}: no such file")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, struct and numpy errors on damage
        raise InteropError(f"{source}: not a readable GGUF file, or truncated ({type(exc).__name__}: {exc})") from exc
    arch = _field(reader, "general.architecture", source)
    if arch != "llama":
        raise InteropError(f"{source}: architecture {arch!r} is not supported (only llama)")
    scaling = _field(reader, "llama.rope.scaling.type", source, required=False)
    if scaling not in (None, "none"):
        raise InteropError(f"{source}: rotary scaling {scaling!r} is not supported")
    n_head = int(_field(reader, "llama.attention.head_count", source))
    width = int(_field(reader, "llama.embedding_length", source))
    head_dim = int(_field(reader, "llama.attention.key_length", source, width // n_head, required=False))
    rope_dim = int(_field(reader, "llama.rope.dimension_count", source, head_dim, required=False))
    if rope_dim != head_dim:
        raise InteropError(f"{source}: partial rotary ({rope_dim} of {head_dim} dimensions) is not supported")
    tokens = _field(reader, "tokenizer.ggml.tokens", source)
    raw = tokenizer_from_gguf(
        tokens, list(_field(reader, "tokenizer.ggml.token_type", source, [1] * len(tokens), required=False)),
        list(_field(reader, "tokenizer.ggml.merges", source, [], required=False)),
        _field(reader, "tokenizer.ggml.model", source), _field(reader, "tokenizer.ggml.pre", source, "default", required=False),
        source)
    config = config_from_llama(
        source=source, vocab_size=len(tokens), hidden_size=width,
        intermediate_size=int(_field(reader, "llama.feed_forward_length", source)),
        n_layer=int(_field(reader, "llama.block_count", source)), n_head=n_head,
        n_kv_head=int(_field(reader, "llama.attention.head_count_kv", source, n_head, required=False)),
        head_dim=head_dim, context=int(_field(reader, "llama.context_length", source)),
        norm_eps=_f32(_field(reader, "llama.attention.layer_norm_rms_epsilon", source)),
        rope_theta=_f32(_field(reader, "llama.rope.freq_base", source, 10000.0, required=False)),
        block_size=block_size,
    )
    hf: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        if name is None:
            kind = "biases are" if t.name.endswith(".bias") else f"tensor {t.name} is"
            raise InteropError(f"{source}: {kind} not supported in a Llama companion")
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError as exc:
            raise InteropError(f"{source}: tensor {t.name} has quantisation {t.tensor_type.name}, "
                               "which cannot be dequantised here") from exc
        except Exception as exc:
            raise InteropError(f"{source}: tensor {t.name} is unreadable or truncated ({exc})") from exc
        shape = tuple(int(d) for d in reversed(t.shape))
        tensor = torch.from_numpy(arr.astype("float32", copy=True)).reshape(shape)
        if name.endswith("q_proj.weight"):
            tensor = gguf_unpermute(tensor, config.n_head)
        elif name.endswith("k_proj.weight"):
            tensor = gguf_unpermute(tensor, config.kv_heads)
        hf[name] = tensor
    return config, from_llama(hf, config, source), raw
