"""The stretch night: a short training run on long windows that teaches a stretched model its new positions.

Material: the owner's past days joined in order (probe days held out, as every night does) and the
starter corpus's training side packed end to end, cut into windows of the new block. Training goes
through the one optimizer place (`companion.night.optimizer`) with the night's loss watch; afterwards the
usual probe guard decides (`companion.night.guards`), counted twice:

* the probe at the new block, before and after the stretch night, within `night.probe_bound`;
* the positions inside the old block, after the stretch night against the model before it was stretched,
  within the same bound: a longer day must not cost the short one.

Held-out loss is reported at positions inside the old block and beyond it, before and after.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from companion.night.guards import LossWatch, build_probe, check_stop, is_probe_day, probe_score, probe_verdict, starter_docs
from companion.settings import Settings
from companion.store import Store
from companion.night.optimizer import lr_at, make_optimizer, train_step
from companion.transcript import Turn, encode_documents, encode_turns
from companion.model.loss import token_nll
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer


@dataclass
class StretchReport:
    """What the stretch night did; `verdict` is None when it may be kept."""

    steps: int = 0
    total_steps: int = 0
    rows: int = 0
    learning_rate: float = 0.0
    day_windows: int = 0
    starter_windows: int = 0
    inside_original: float | None = None   # mean loss inside the old block, before stretching
    inside_before: float | None = None     # ... stretched, before the stretch night
    inside_after: float | None = None
    beyond_before: float | None = None     # mean loss at positions past the old block
    beyond_after: float | None = None
    probe_before: dict | None = None
    probe_after: dict | None = None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    verdict: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["losses"] = [round(x, 4) for x in self.losses[:: max(1, len(self.losses) // 50)]]
        return data


def _windows(stream: Sequence[int], length: int) -> list[torch.Tensor]:
    return [torch.tensor(stream[i : i + length], dtype=torch.long)
            for i in range(0, len(stream) - length + 1, length)]


def long_windows(tokenizer: Tokenizer, store: Store, settings: Settings, block_size: int, count: int,
                 seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(day windows, starter windows), each block_size + 1 tokens: every past day the weights hold,
    joined in order; then starter conversations in a seeded order, up to `count` windows in all."""
    days = [d for d in store.days() if d.closed_at is not None and d.in_weights and not is_probe_day(d.number)]
    stream: list[int] = []
    for day in days:
        stream += encode_turns(tokenizer, [Turn(t.role, t.text) for t in store.turns(day.id)]).ids
    day_windows = _windows(stream, block_size + 1)
    docs = list(starter_docs(False, settings.day.greeting, settings.day.goodnight))
    random.Random(seed).shuffle(docs)
    wanted = max(0, count - len(day_windows)) * (block_size + 1)
    starter: list[int] = []
    for encoded in encode_documents(tokenizer, [list(d) for d in docs[: max(1, wanted // 40)]]):
        starter += encoded.ids
        if len(starter) >= wanted:
            break
    return day_windows, _windows(starter, block_size + 1)


@torch.no_grad()
def split_losses(model: Transformer, sequences: Sequence[torch.Tensor], old_block: int,
                 should_stop: Callable[[], bool] | None = None) -> tuple[float | None, float | None]:
    """Mean next-token loss at positions inside the old block (predicting tokens 1..old_block) and at
    the positions past it, over `sequences` (each scored on at most the model's block)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums, counts = [0.0, 0.0], [0, 0]
    try:
        for seq in sequences:
            check_stop(should_stop)
            seq = seq[: model.config.block_size + 1].to(device).long()
            if len(seq) < 2:
                continue
            logits, _ = model(seq[None, :-1])
            losses = token_nll(logits, seq[None, 1:])[0]
            inside, beyond = losses[:old_block], losses[old_block:]
            for part, piece in enumerate((inside, beyond)):
                sums[part] += float(piece.sum())
                counts[part] += len(piece)
    finally:
        model.train(was_training)
    return tuple(s / c if c else None for s, c in zip(sums, counts))  # type: ignore[return-value]


def run_stretch_night(model: Transformer, original: Transformer, tokenizer: Tokenizer, store: Store,
                      settings: Settings, *, steps: int = 30, learning_rate: float = 1e-4,
                      probe_windows: int = 16, seed: int = 0,
                      on_step: Callable[[int, int, float, float, int, float], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> StretchReport:
    """Train the stretched `model` in place; `original` is the model before stretching (read only).

    Raises `Stopped` when asked to stop; the caller keeps nothing of `model` then. `on_step(step, total,
    loss, lr, tokens, eta_s)` reports each step."""
    t0 = time.monotonic()
    block, old_block = model.config.block_size, original.config.block_size
    device = next(model.parameters()).device
    rows = max(1, settings.night.batch_tokens // block)
    report = StretchReport(total_steps=steps, rows=rows, learning_rate=learning_rate)

    probe = build_probe(tokenizer, store, settings.day.greeting, settings.day.goodnight, block, probe_windows)
    sequences = probe.starter + probe.days
    report.inside_original, _ = split_losses(original, sequences, old_block, should_stop)
    report.inside_before, report.beyond_before = split_losses(model, sequences, old_block, should_stop)
    before = probe_score(model, probe, should_stop)
    report.probe_before = before.to_dict()

    day_windows, starter_windows = long_windows(tokenizer, store, settings, block, steps * rows, seed)
    report.day_windows, report.starter_windows = len(day_windows), len(starter_windows)
    pool = day_windows + starter_windows
    if not pool:
        report.verdict = "there is no text long enough to teach the new positions"
        return report
    random.Random(seed).shuffle(pool)
    optimizer = make_optimizer(model, learning_rate)
    watch = LossWatch(settings.night.spike_factor)
    model.train()
    t_train = time.monotonic()
    for step in range(steps):
        check_stop(should_stop)
        batch = torch.stack([pool[(step * rows + r) % len(pool)] for r in range(rows)]).to(device)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        lr = lr_at((step + 1) / steps, learning_rate, settings.night.warmup_fraction)
        value = train_step(model, optimizer, loss, lr, settings.night.grad_clip)
        report.losses.append(value)
        report.steps = step + 1
        if on_step is not None:
            spent = time.monotonic() - t_train
            on_step(step + 1, steps, value, lr, (step + 1) * rows * block, spent / (step + 1) * (steps - step - 1))
        why = watch.check(step, value)
        if why is not None:
            report.verdict = why
            report.seconds = time.monotonic() - t0
            return report
    del optimizer
    model.eval()

    after = probe_score(model, probe, should_stop)
    report.probe_after = after.to_dict()
    report.inside_after, report.beyond_after = split_losses(model, sequences, old_block, should_stop)
    report.verdict = probe_verdict(before, after, settings.night.probe_bound)
    bound = settings.night.probe_bound
    if report.verdict is None and report.inside_original is not None:
        if report.inside_after is None or not math.isfinite(report.inside_after):
            report.verdict = "the loss inside the old block is not finite after the stretch night"
        elif math.exp(report.inside_after) > math.exp(report.inside_original) * (1 + bound):
            worse = math.exp(report.inside_after - report.inside_original) - 1
            report.verdict = (f"the perplexity inside the old block of {old_block} tokens worsened by {worse:.1%} "
                              f"against the model before stretching, past the bound of {bound:.1%}")
    report.seconds = time.monotonic() - t0
    return report
