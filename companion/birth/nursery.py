"""The nursery: pretraining a newborn model on its birth corpus, resumable.

It trains on random windows of one long token stream, with linear warmup and cosine decay over the
run's budget (steps, or minutes of wall-clock time), measures the held-out loss on fixed windows now
and then, and reports progress through a callback so the CLI draws a bar and the app a widget.
The nursery keeps its own optimizer state between runs; nothing else ever reads it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from companion.compute.threads import pace
from companion.night.optimizer import lr_at, make_optimizer, mean_loss, train_step
from companion.transcript import Encoded
from companion.model.transformer import Transformer


@dataclass
class CorpusTokens:
    """The training stream and the held-out stream, each one 1-D int32 tensor of documents end to end."""

    train: torch.Tensor
    heldout: torch.Tensor

    @classmethod
    def from_encoded(cls, train: Sequence[Encoded], heldout: Sequence[Encoded]) -> "CorpusTokens":
        def stream(docs: Sequence[Encoded]) -> torch.Tensor:
            return torch.tensor([i for d in docs for i in d.ids], dtype=torch.int32)

        return cls(stream(train), stream(heldout))

    def heldout_windows(self, block_size: int, count: int) -> list[torch.Tensor]:
        """Fixed, non-overlapping windows of block_size + 1 tokens from the start of the held-out stream."""
        size = block_size + 1
        n = min(count, len(self.heldout) // size)
        return [self.heldout[i * size : (i + 1) * size] for i in range(n)]


@dataclass
class NurseryProgress:
    step: int
    total_steps: int | None  # None when the budget is minutes
    fraction: float
    loss: float
    heldout: float | None
    lr: float
    tokens: int
    elapsed: float
    sample: str | None = None


@dataclass
class NurseryResult:
    steps: int
    tokens: int
    heldout_before: float
    heldout_after: float
    elapsed: float
    stopped: bool


def _budget(steps: int | None, minutes: float | None, deadline: float | None) -> float | None:
    """The nursery's minutes (None when it counts steps); exactly one of steps and minutes, positive."""
    if deadline is not None and minutes is None and steps is None:
        minutes = max(deadline - time.monotonic(), 0.0) / 60 or 1e-9
    if (steps is None) == (minutes is None):
        raise ValueError("give the nursery either steps or minutes")
    if steps is not None and steps < 1 or minutes is not None and minutes <= 0 and deadline is None:
        raise ValueError("the nursery's budget must be positive")
    return minutes


def _draw_batch(data: CorpusTokens, block: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
    """`batch_size` random windows of `block + 1` tokens from the training split."""
    offsets = torch.randint(0, len(data.train) - block - 1, (batch_size,), generator=gen)
    return torch.stack([data.train[o : o + block + 1] for o in offsets.tolist()]).long()


def run_nursery(
    model: Transformer,
    optimizer: torch.optim.AdamW | None,
    data: CorpusTokens,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    deadline: float | None = None,
    batch_size: int = 8,
    peak_lr: float = 1e-3,
    warmup: float = 0.03,
    seed: int = 0,
    heldout_windows: int = 32,
    eval_every_s: float = 30.0,
    on_progress: Callable[[NurseryProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    sample: Callable[[Transformer], str] | None = None,
) -> tuple[NurseryResult, torch.optim.AdamW]:
    """Train for `steps` optimizer steps or `minutes` of wall-clock time, whichever is given.

    With `deadline` (a `time.monotonic()` instant) the minutes are the whole run's: training stops early
    enough that the final held-out check fits before it (measured by timing the first check). At least
    one step is always taken, so a run always has weights to save. The held-out loss is measured on
    `heldout_windows` fixed windows (the starter probe, seconds), never on the whole held-out split."""
    minutes = _budget(steps, minutes, deadline)
    block = model.config.block_size
    if len(data.train) < block + 2:
        raise ValueError(f"the training corpus has {len(data.train)} tokens, fewer than one block ({block})")
    device = next(model.parameters()).device
    optimizer = optimizer or make_optimizer(model, peak_lr)
    windows = data.heldout_windows(block, heldout_windows)
    gen = torch.Generator().manual_seed(seed)
    budget_s = minutes * 60 if minutes is not None else None

    eval_start = time.monotonic()
    heldout_before = mean_loss(model, windows)
    start = time.monotonic()
    if deadline is not None and steps is None:  # leave room for the closing check, the sample and the save
        budget_s = max(deadline - start - 2 * (start - eval_start) - 2.0, 1e-3)
    last_eval = start
    step = tokens = 0
    loss_value = float("nan")
    heldout = heldout_before
    stopped = False
    model.train()
    while True:
        elapsed = time.monotonic() - start
        fraction = step / steps if steps is not None else elapsed / budget_s
        if fraction >= 1.0 and step > 0:
            break
        if should_stop is not None and should_stop():
            stopped = True
            break
        lr = lr_at(fraction, peak_lr, warmup)
        pace()  # the free cores, afresh, under a caller's automatic training claim (companion.compute.threads)
        batch = _draw_batch(data, block, batch_size, gen).to(device)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        loss_value = train_step(model, optimizer, loss, lr)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"nursery loss became {loss_value} at step {step}")
        step += 1
        tokens += batch_size * block
        now = time.monotonic()
        report = NurseryProgress(step, steps, min(1.0, step / steps if steps else (now - start) / budget_s),
                                 loss_value, None, lr, tokens, now - start)
        if now - last_eval >= eval_every_s:
            last_eval = now
            report.heldout = heldout = mean_loss(model, windows)
            report.sample = sample(model) if sample is not None else None
            model.train()
        if on_progress is not None:
            on_progress(report)
    heldout = mean_loss(model, windows)
    elapsed = time.monotonic() - start
    if on_progress is not None:
        on_progress(NurseryProgress(step, steps, 1.0 if not stopped else fraction, loss_value, heldout,
                                    0.0, tokens, elapsed, sample(model) if sample is not None else None))
    model.eval()
    return NurseryResult(step, tokens, heldout_before, heldout, elapsed, stopped), optimizer
