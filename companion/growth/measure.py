"""Measured time per training step, for the growth preview: the before and after shapes, on this machine."""

from __future__ import annotations

import time

import torch

from companion.night.optimizer import make_optimizer, train_step
from companion.model.transformer import Transformer


def seconds_per_step(model: Transformer, batch_tokens: int, steps: int = 2, seed: int = 0) -> float:
    """Mean seconds of `steps` training steps on random tokens, one block long, `batch_tokens` per step
    (after one warm-up step). Trains a copy: `model` is left untouched."""
    config = model.config
    param = next(model.parameters())
    copy = Transformer(config).to(device=param.device, dtype=param.dtype)
    copy.load_state_dict(model.state_dict())
    copy.train()
    rows = max(1, batch_tokens // config.block_size)
    gen = torch.Generator().manual_seed(seed)
    batch = torch.randint(0, config.vocab_size, (rows, config.block_size + 1), generator=gen).to(param.device)
    optimizer = make_optimizer(copy, 1e-5)
    elapsed = 0.0
    for step in range(steps + 1):
        t0 = time.perf_counter()
        _, loss = copy(batch[:, :-1], batch[:, 1:])
        train_step(copy, optimizer, loss, 1e-5)
        if step:
            elapsed += time.perf_counter() - t0
    return elapsed / steps
