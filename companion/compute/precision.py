"""The number format a night trains in: bfloat16 where the hardware does it natively, else float32.

A night's step is mostly matrix products, and on a CPU with native bfloat16 (AVX-512 BF16 or AMX)
PyTorch's bfloat16 products are several times faster than float32 ones (measured on 2 threads of such
a CPU, the seedling's 512 x 256 x 704 product: 0.31 ms against 1.17 ms). So a night there trains
under bfloat16 autocast, as it does on a GPU: the weights, the optimizer, the gradients and the loss
stay float32; the products are bfloat16, attention float32 (`model.transformer`). What the night
*measures* (the probe, the lessons' recall, the finish line, the guards) stays float32 on a CPU, so
that a night's verdict does not depend on the format it trained in. On a CPU without native bfloat16
the products would be emulated and slower: such a night trains in float32, as before.

`[night] cpu_bfloat16 = false` keeps a CPU night in float32 everywhere (for runs to be compared across
machines).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

__all__ = ["native_cpu_bfloat16", "training_precision", "training_autocast", "measuring_autocast"]


def native_cpu_bfloat16() -> bool:
    """Whether this CPU does bfloat16 products natively (AVX-512 BF16 or AMX), as PyTorch sees it."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    for check in checks:
        if check is not None:
            with contextlib.suppress(Exception):
                if check():
                    return True
    return False


def training_precision(device: torch.device, cpu_bfloat16: bool = True) -> str:
    """"bfloat16" or "float32": the format a night's training steps compute in on `device`."""
    if device.type == "cuda":
        return "bfloat16"
    if device.type == "cpu" and cpu_bfloat16 and native_cpu_bfloat16():
        return "bfloat16"
    return "float32"


def training_autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast a training step is built under (`training_precision`'s answer)."""
    if precision == "bfloat16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measuring_autocast(device: torch.device) -> ContextManager:
    """The autocast what a night measures is computed under: bfloat16 on a GPU, none on a CPU (so
    that a verdict never depends on the format a CPU night trained in)."""
    return training_autocast(device, "bfloat16") if device.type == "cuda" else contextlib.nullcontext()
