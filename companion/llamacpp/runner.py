"""The day's generation on llama.cpp: the logits our sampling loop asks for, computed by llama.cpp.

Sequence 0 holds the day as read so far; a new prompt reads only the tokens past the longest prefix
it shares with the last one (as the engine's own cache does). K candidates are sequences 1..K, each
made to share sequence 0's cells (no copy), then decoded together, one token per row per batch. The
cache grows (a fresh context, the day read again) when a request needs more cells than it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from companion.day.request import MAX_CANDIDATES
from companion.home import Home
from companion.llamacpp.binding import LlamaContext, load_library
from companion.llamacpp.gguf_cache import cached_gguf
from companion.model.sampling import Step, kept_prefix
from companion.store import Checkpoint

__all__ = ["LlamaRunner", "runner_for", "MAX_ROWS"]

MAX_ROWS = MAX_CANDIDATES  # the most candidates in one round: sequences 1..8, the day in sequence 0


class LlamaRunner:
    """A GGUF file in llama.cpp, read as the day grows; `read` and `start` are what the engine calls."""

    def __init__(self, path: str | Path, block_size: int, threads: int) -> None:
        self.path, self.block_size = Path(path), block_size
        self.ctx = LlamaContext(self.path, n_ctx=2 * block_size, n_batch=block_size, n_seq=MAX_ROWS + 1,
                                threads=threads)
        self._ids: list[int] = []
        self._last: torch.Tensor | None = None

    def set_threads(self, n: int) -> None:
        self.ctx.set_threads(n)

    def forget(self) -> None:
        """Drop everything read (a new day, or a bench reading the prompt afresh)."""
        self._ids, self._last = [], None
        self.ctx.forget(-1)

    def read(self, prompt: Sequence[int]) -> torch.Tensor:
        """The logits (1, vocab) after `prompt`, reading only what it adds to the last prompt read."""
        prompt = list(prompt)
        shared = kept_prefix(self._ids, prompt)
        if shared is None and self._last is not None:
            return self._last
        shared = len(prompt) - 1 if shared is None else shared  # the logits are gone: read the last again
        self._ids, self._last = [], None  # until this read succeeds
        self.ctx.forget(0, shared)
        new = prompt[shared:]
        self.ctx.decode(new, list(range(shared, len(prompt))), [0] * len(new), [False] * (len(new) - 1) + [True])
        self._ids, self._last = prompt, torch.from_numpy(self.ctx.logits(-1))[None]
        return self._last

    def start(self, prompt: Sequence[int], k: int, steps: int) -> tuple[torch.Tensor, Step]:
        """Read `prompt`, give `k` rows its cells; return its last logits and the step that decodes
        one token per row (rows are sequences 1..k, at the positions after the prompt)."""
        if not 1 <= k <= MAX_ROWS:
            raise ValueError(f"{k} rows; llama.cpp's context was made for 1 to {MAX_ROWS}")
        for row in range(1, MAX_ROWS + 1):
            self.ctx.forget(row)  # the last request's rows
        need = len(prompt) + k * max(steps, 1)
        if need > self.ctx.n_ctx:
            self.ctx.resize(min(max(need, 2 * self.ctx.n_ctx), self.block_size * (1 + MAX_ROWS)))
            self._ids, self._last = [], None
        last = self.read(prompt)
        for row in range(1, k + 1):
            self.ctx.share(0, row)
        pos = [len(prompt)]
        seqs, keep = list(range(1, k + 1)), [True] * k

        def step(next_ids: list[int]) -> torch.Tensor:
            self.ctx.decode(next_ids, [pos[0]] * k, seqs, keep)
            pos[0] += 1
            return torch.from_numpy(np.stack([self.ctx.logits(r) for r in range(k)]))

        return last, step

    def close(self) -> None:
        self.ctx.close()


def runner_for(home: Home, checkpoint: Checkpoint, model: Any, tokenizer: Any, threads: int,
               name: str = "companion") -> LlamaRunner:
    """A runner on the cached GGUF export of `checkpoint` (exported first when the cache lacks it).
    `LlamaUnavailable` before anything is written when llama.cpp cannot run here."""
    load_library()
    path = cached_gguf(home, checkpoint, model, tokenizer, name)
    return LlamaRunner(path, model.config.block_size, threads)
