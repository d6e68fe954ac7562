"""The network: a decoder-only transformer in one page.

Pre-norm RMSNorm, rotary positions (so the context can be stretched later), SwiGLU, tied embeddings,
no biases, `scaled_dot_product_attention`, and a KV cache so that a day's context is read once and the
candidates that answer it share that reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from companion.model.config import ModelConfig
from companion.model.loss import autocast_on, next_token_loss

# scaled_dot_product_attention reads grouped keys/values itself from torch 2.5; before, they are repeated
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2] if p.isdigit()) >= (2, 5)
_FUSED_RMS_NORM = hasattr(F, "rms_norm")  # torch 2.4 and later


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and _FUSED_RMS_NORM:  # one kernel instead of five (decode is op-bound)
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        norm = x.float().pow(2).mean(-1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * norm).type_as(x) * self.weight


def rotary_inv_freq(head_dim: int, theta: float, scaling: float = 1.0, original_block: int = 0) -> torch.Tensor:
    """The rotary frequencies, one per pair of dimensions. With `scaling` > 1 (a stretched context) they
    follow YaRN's "NTK-by-parts" rule (Peng et al. 2023; the same formula as Hugging Face's `yarn` rope type
    with `attention_factor=1`, `beta_fast=32`, `beta_slow=1`): pairs that turn more than 32 times within the
    original block keep their frequency, pairs that turn less than once are slowed by `scaling` (position
    interpolation), and those between are blended linearly. See `model.growth.stretch` for why."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    pos_freqs = theta ** exponents
    inv_freq = 1.0 / pos_freqs
    if scaling <= 1.0:
        return inv_freq

    def correction_dim(rotations: float) -> float:
        return head_dim * math.log(original_block / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(32.0)), 0)
    high = min(math.ceil(correction_dim(1.0)), head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: the pair keeps its frequency; 0: it is interpolated
    return (1.0 / (scaling * pos_freqs)) * (1 - keep) + inv_freq * keep


def rotary_tables(head_dim: int, length: int, theta: float, device=None, scaling: float = 1.0,
                  original_block: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (length, head_dim // 2) for rotary position embedding."""
    inv_freq = rotary_inv_freq(head_dim, theta, scaling, original_block).to(device)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head by their position's angle. x: (B, H, T, D)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[None, None], sin[None, None]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


@dataclass
class KVCache:
    """Keys and values of every layer for the positions read so far; `length` is how many."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, device, dtype, capacity: int | None = None) -> "KVCache":
        """Room for `capacity` positions a row (the whole block when None)."""
        shape = (batch, config.kv_heads, config.block_size if capacity is None else capacity, config.head_dim)
        return cls(
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)],
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)],
        )

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        """Positions the cache has room for (the block, or what `expand` gave it)."""
        return self.keys[0].shape[2]

    def expand(self, batch: int, room: int | None = None) -> "KVCache":
        """The same context for `batch` rows with `room` more positions each: K candidates share one
        reading of the prompt.

        Memory is proportional to what is read, not to the block: the rows get `length + room`
        positions (the whole capacity when `room` is None). One row shares this cache's storage
        instead of copying it: it writes only past `length`, which this cache treats as free (its own
        `length` does not move), so the prompt it holds stays as read.
        """
        if self.batch != 1:
            raise ValueError("only a single-row cache can be expanded")
        room = self.capacity - self.length if room is None else room
        if room < 0 or self.length + room > self.capacity:
            raise ValueError(f"{self.length} positions read and {room} more exceed the cache's {self.capacity}")
        if batch == 1:
            return KVCache(self.keys, self.values, self.length)
        end = self.length + room

        def rows(t: torch.Tensor) -> torch.Tensor:
            out = t.new_empty((batch, t.shape[1], end, t.shape[3]))
            out[:, :, : self.length] = t[:, :, : self.length]
            return out

        return KVCache([rows(k) for k in self.keys], [rows(v) for v in self.values], self.length)

    def select(self, rows: list[int], room: int) -> "KVCache":
        """A new cache whose row i is this cache's row `rows[i]` as read, with `room` more positions:
        several prompts read together, each continued by its own rows (`model.loss.score`). Built from
        this cache by differentiable copies, so gradients flow back into the reading of the prompts,
        and this cache is never written again (autograd keeps what its reading saved)."""
        index = torch.as_tensor(rows, device=self.keys[0].device)

        def pick(t: torch.Tensor) -> torch.Tensor:
            read = t[:, :, : self.length].index_select(0, index)
            return torch.cat((read, read.new_zeros((len(rows), t.shape[1], room, t.shape[3]))), dim=2)

        return KVCache([pick(k) for k in self.keys], [pick(v) for v in self.values], self.length)

    def nbytes(self) -> int:
        """Bytes the cache's tensors take."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.n_kv = config.n_head, config.head_dim, config.kv_heads
        self.kv_dim = self.n_kv * self.head_dim
        self.qkv = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_dim, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split((C, self.kv_dim, self.kv_dim), dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(B, T, self.n_kv, self.head_dim).transpose(1, 2) for t in (k, v))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            start = cache.length
            cache.keys[layer][:, :, start : start + T] = k
            cache.values[layer][:, :, start : start + T] = v
            k = cache.keys[layer][:, :, : start + T]
            v = cache.values[layer][:, :, : start + T]
        gqa = {}
        if self.n_kv != self.n_head:  # grouped-query: each key/value head serves n_head // n_kv query heads
            if _SDPA_GQA:
                gqa = {"enable_gqa": True}
            else:
                k, v = (t.repeat_interleave(self.n_head // self.n_kv, dim=1) for t in (k, v))
        if cache is None or start == 0:  # a fresh reading: plain causal, no mask to build
            y = _attend(q, k, v, is_causal=T > 1, **gqa)
        elif T == 1:
            y = _attend(q, k, v, **gqa)
        else:  # a chunk appended to a context already read: causal within the chunk, all before it
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = _attend(q, k, v, attn_mask=mask, **gqa)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """`scaled_dot_product_attention`; on a CPU under bfloat16 autocast (a night on a CPU with native
    bfloat16), in float32: there the matrix products gain from bfloat16 but PyTorch's CPU attention
    does not (a timing harness on the seedling, 2 threads of an AVX-512 BF16 CPU, noisy: a lesson
    step 1.27 s with attention in bfloat16, 0.93 s with it in float32, 1.58 s all in float32)."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and autocast_on("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.up = nn.Linear(config.n_embd, config.hidden, bias=False)
        self.down = nn.Linear(config.hidden, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x, cos, sin, cache, layer):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps)
        # the output projection: None is the tied embedding (always, in training and on disk); a
        # decode-only copy may put a quantised linear here (model.quantize.int8)
        self.lm_head: nn.Module | None = None
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta,
                                 scaling=config.rope_scaling, original_block=config.rope_original_block)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # residual projections scaled down with depth (GPT-2)
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and with targets their mean next-token loss (`model.loss`).

        `targets` uses -100 for positions that teach nothing. Weighted losses are taken from the
        logits with `model.loss.next_token_loss`, the one formula the night trains with.
        `last_only` gives the last position's logits only, (B, 1, vocab): reading a prompt needs
        no more, and the vocabulary projection of every other position is most of a prefill's work.
        """
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start + T} positions exceed the block size {self.config.block_size}")
        if cache is not None and start + T > cache.capacity:
            raise ValueError(f"{start + T} positions exceed the cache's room for {cache.capacity}")
        if last_only and targets is not None:
            raise ValueError("last_only gives no loss: it reads one position's logits")
        x = self.hidden(idx, cache)
        if last_only:
            x = x[:, -1:]
        logits = self.project(x)
        if targets is None:
            return logits, None
        return logits, next_token_loss(logits, targets)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The last block's output at every position, (B, T, n_embd), before the final norm: what
        `project` turns into logits, for the positions a caller needs (`model.loss.score`)."""
        T = idx.shape[1]
        start = cache.length if cache is not None else 0
        cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        x = self.embed(idx)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        if cache is not None:
            cache.length += T
        return x

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states (any leading shape): the final norm, then the output projection."""
        x = self.norm(x)
        return F.linear(x, self.embed.weight) if self.lm_head is None else self.lm_head(x)  # tied embeddings

