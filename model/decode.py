"""One decoding step without the module tree: the network's arithmetic for one new token per row.

Why: a decoding step reads one token per row, so on a CPU the seedling's step is mostly the cost of
launching its operations (a few microseconds each), not of the arithmetic. `Transformer.forward` pays
for every module call, rotates the queries and the keys in two passes, and builds masks and slices
it needs for longer reads. This step does the same arithmetic with fewer operations: the layers'
weights taken once per generation into plain lists (no module calls, no copies), the queries and
keys rotated together for their one position, the new key and value written straight into the
cache, attention for one query as two batched products and a softmax, RMSNorm in four small
operations. The tokens are the module path's: greedy and seeded candidates are identical on the
bench's prompts and in `tests/test_decode.py` (the logits agree to float rounding).

Tried and left out: the MLP's gate and up projections as one matrix product (a concatenated copy of
the two): no faster on the seedling (one thread, the same run: 7.0 against 6.0 ms a K=3 step under
load), and the copy would have cost the 135M 212 MB. K candidate rows that share the prompt's keys
and values instead of copying them (every row's query against the prompt in one product, then each
row's own positions, one softmax over both): a step 6% faster at 300 positions and 12% at 440 on one
thread, slower below about 200, and in `bench/speed.py` (266 positions) no faster on one thread and
slower on two (K=3 678-725 against 749-768 tokens/s): the extra operations cost more than reading the
prompt once saves. The rotary embedding as one product with a (D, D) rotation matrix built once a
step: within the noise.

Only plain fp32/bf16 `nn.Linear` layers are taken; any other (the int8 copy's quantised layers) keeps
the module path (`Decoder.supports`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from companion.model.transformer import _SDPA_GQA, KVCache, Transformer

__all__ = ["Decoder", "decoder_for"]


@dataclass(frozen=True)
class _Layer:
    attn_norm: torch.Tensor
    qkv: torch.Tensor
    proj: torch.Tensor
    mlp_norm: torch.Tensor
    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor


class Decoder:
    """The decoding step of one `Transformer` as its weights stand now (see `decoder_for`)."""

    def __init__(self, model: Transformer) -> None:
        cfg = model.config
        self.rope_cos, self.rope_sin = model.rope_cos, model.rope_sin
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.n_embd = cfg.n_embd
        self.eps = cfg.norm_eps
        self.scale = self.head_dim ** -0.5
        # the products-and-softmax attention only where it was measured (fp32 on a CPU); elsewhere
        # (a GPU, half precision) the fused kernel keeps its own accumulation
        norm = model.norm.weight
        self.cpu_fp32 = norm.device.type == "cpu" and norm.dtype == torch.float32
        with torch.no_grad():
            self.layers = [_Layer(b.attn_norm.weight, b.attn.qkv.weight, b.attn.proj.weight, b.mlp_norm.weight,
                                  b.mlp.gate.weight, b.mlp.up.weight, b.mlp.down.weight)
                           for b in model.blocks]
        self.norm = model.norm.weight
        self.embed = model.embed.weight
        self.head = model.embed.weight if model.lm_head is None else model.lm_head.weight
        self.key = _weights_key(model)

    @staticmethod
    def supports(model: Transformer) -> bool:
        """Whether every layer the step reads is a plain linear layer (not the int8 copy's)."""
        linears = [m for b in model.blocks for m in (b.attn.qkv, b.attn.proj, b.mlp.gate, b.mlp.up, b.mlp.down)]
        if model.lm_head is not None:
            linears.append(model.lm_head)
        return all(type(m) is nn.Linear for m in linears)

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm in four small operations: for a few rows, cheaper than `F.rms_norm`'s composite."""
        norm = x.float().pow(2).mean(-1, keepdim=True).add_(self.eps).rsqrt_()
        return (x.float() * norm).type_as(x) * weight

    @torch.no_grad()
    def step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The logits (B, vocab) after each row's one new token `ids` (B,), written into `cache` (B rows)."""
        pos = cache.length
        if pos + 1 > cache.capacity:
            raise ValueError(f"{pos + 1} positions exceed the cache's room for {cache.capacity}")
        B, H, KV, D = ids.shape[0], self.n_head, self.n_kv, self.head_dim
        half = D // 2
        cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (D/2,)
        x = F.embedding(ids, self.embed)  # (B, C)
        gqa = {"enable_gqa": True} if KV != H and _SDPA_GQA else {}
        for i, layer in enumerate(self.layers):
            qkv = F.linear(self._rms(x, layer.attn_norm), layer.qkv).view(B, H + 2 * KV, D)
            qk = qkv[:, : H + KV].float()
            x1, x2 = qk[..., :half], qk[..., half:]
            qk = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)
            keys, values = cache.keys[i], cache.values[i]
            keys[:, :, pos] = qk[:, H:]
            values[:, :, pos] = qkv[:, H + KV :]
            k, v = keys[:, :, : pos + 1], values[:, :, : pos + 1]
            if KV != H and not _SDPA_GQA:
                k, v = (t.repeat_interleave(H // KV, dim=1) for t in (k, v))
            if not self.cpu_fp32:
                y = F.scaled_dot_product_attention(qk[:, :H, None], k, v, **gqa)  # (B, H, 1, D)
            else:  # one query on a CPU: two batched products and a softmax beat the flash kernel
                q = qk[:, :H].reshape(B, KV, H // KV, D) if gqa else qk[:, :H].reshape(B, H, 1, D)
                w = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
                y = torch.matmul(w, v)
            x = x + F.linear(y.reshape(B, self.n_embd), layer.proj)
            h = self._rms(x, layer.mlp_norm)
            x = x + F.linear(F.silu(F.linear(h, layer.gate)) * F.linear(h, layer.up), layer.down)
        cache.length = pos + 1
        return F.linear(self._rms(x, self.norm), self.head)


def _weights_key(model: Transformer) -> tuple:
    """Which weights, at which version: any in-place change (a night's optimizer step, a load into the
    same tensors) bumps a tensor's version, so a decoder built before it is not used after it."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


_decoders: "weakref.WeakKeyDictionary[Transformer, Decoder]" = weakref.WeakKeyDictionary()


def decoder_for(model: Transformer) -> Decoder | None:
    """The model's decoding step, built once and rebuilt when its weights change; None when the model
    has layers the step does not take (`Decoder.supports`). Kept beside the model, not in it, so
    that a copy of the model (`copy.deepcopy`) or its state_dict never carries it."""
    if not Decoder.supports(model):
        return None
    decoder = _decoders.get(model)
    if decoder is None or decoder.key != _weights_key(model):
        decoder = _decoders[model] = Decoder(model)
    return decoder
