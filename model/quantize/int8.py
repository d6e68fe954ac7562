"""Int8 for decoding on a CPU: a copy of the network whose linear layers, the output projection
included (the MLP's down projections excepted), hold int8 weights (one scale per output row) and run on
PyTorch's dynamic int8 kernels (activations are quantised per call too: that, not the weights, is most of
the drift).

Why: one decoding step reads every weight once for one token per row, so on a CPU its time is mostly
the time to stream the weights from memory; int8 weights are a quarter of fp32's. The copy is for the
day's generation only: the night trains, measures and saves the fp32 weights, and the copy is rebuilt
from them after every load. What it costs in accuracy is measured, not assumed (bench/speed.py reports
the logit drift and the greedy agreement against fp32; tests/test_int8.py bounds it on a small model).

Built on `torch.ao.quantization.quantize_dynamic` (activations quantised per call, weights once). It is
deprecated upstream in favour of torchao; when a torch lacks it, or has no int8 engine for this CPU,
`Int8Unavailable` says so and the caller keeps fp32.
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn as nn

from companion.model.transformer import Transformer

__all__ = ["Int8Unavailable", "int8_decoder", "int8_available", "KEEP_FP32"]

KEEP_FP32 = ("mlp.down",)  # linear layers left in fp32 (see int8_decoder)


class Int8Unavailable(RuntimeError):
    """This torch or this CPU cannot run int8 linear layers."""


def int8_available() -> str:
    """'' when int8 decoding can run here, else why not (in words)."""
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic"
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        return "this torch has no int8 engine for this CPU"
    return ""


def int8_decoder(model: Transformer) -> Transformer:
    """A decode-only int8 copy of `model` (on the CPU). The original is untouched; the embedding table
    is shared with it (a lookup reads one row per token: nothing to gain by shrinking it), and the
    tied output projection becomes its own int8 linear layer."""
    why = int8_available()
    if why:
        raise Int8Unavailable(why)
    if next(model.parameters()).device.type != "cpu":
        raise Int8Unavailable("int8 decoding runs on the CPU only")
    from torch.ao.quantization import quantize_dynamic

    embed = model.embed
    model.embed = None  # not copied: shared below
    try:
        q = copy.deepcopy(model)
    finally:
        model.embed = embed
    q.embed = embed
    head = nn.Linear(model.config.n_embd, model.config.vocab_size, bias=False)
    head.weight = nn.Parameter(embed.weight.detach().clone(), requires_grad=False)
    q.lm_head = head
    q.eval()
    with warnings.catch_warnings():  # the deprecation notice is about the API's future, not this use
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig

        # One scale per output row. The MLP's down projections stay fp32: their inputs (SwiGLU's
        # products) have outliers that 8-bit activations cannot hold; measured on the seedling (a
        # 300-token day), quantising them moved a logit by up to 3.7 and changed 11% of the argmaxes,
        # the other layers together by 0.7 and 4%.
        spec = {name: per_channel_dynamic_qconfig for name, m in q.named_modules()
                if isinstance(m, nn.Linear) and not name.endswith(KEEP_FP32)}
        quantize_dynamic(q, spec, dtype=torch.qint8, inplace=True)
    for p in q.parameters():
        p.requires_grad_(False)
    return q
