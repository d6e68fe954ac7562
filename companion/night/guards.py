"""The night's guards: the frozen probe set, the watch on the loss, and the verdicts that roll a night back.

A night either improves the companion at an acceptable cost or leaves its weights exactly as they were.
The cost is measured on a **probe set** the nights never train on:

* the held-out 2% of the starter corpus (`companion.birth.corpus.is_held_out`), cut into fixed windows;
* **probe days**: every 10th day (day 10, 20, 30...). A probe day's transcript is never trained on as
  text, neither in its own night nor in any replay; its choices and corrections are still learned as
  preferences, so no lesson the owner gave is lost. Its transcript measures how well the companion
  models its owner's own conversations, which the starter corpus cannot.

The probe perplexity is exp(mean next-token loss) over every probe token, starter and days together;
both parts are also reported on their own.

**One probe, one number.** The figure stored with every checkpoint, shown in the checkpoints list and
leading every report (nursery, adoption, night), is the *starter probe* alone: the same fixed held-out
windows for every checkpoint of a companion, whatever days it has lived, so the same weights always
read the same perplexity. Its name (`probe_set_name`) is stored beside each figure. The night's verdict
also counts the probe days, which grow with the companion and so are reported apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from companion.birth.corpus import starter_documents
from companion.birth.nursery import CorpusTokens
from companion.store import Store
from companion.transcript import Turn, encode_documents, encode_turns
from companion.model.loss import score, shifted
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

PROBE_DAY_EVERY = 10
PROBE_WINDOWS = 32  # starter windows of block_size + 1 tokens
PROBE_DAYS_KEPT = 20  # the latest probe days only, so the probe's cost stays bounded after years


class Stopped(Exception):
    """A stop was asked for in the middle of a long measurement: the night ends at once, untouched."""


def check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise Stopped()


def is_probe_day(number: int) -> bool:
    """Day 10, 20, 30...: held out of text training, kept for the probe."""
    return number > 0 and number % PROBE_DAY_EVERY == 0


@lru_cache(maxsize=4)
def _starter(held_out: bool, greeting: str, goodnight: str) -> tuple[tuple[Turn, ...], ...]:
    """The starter corpus is read from disk once per process (about a second)."""
    return tuple(tuple(doc) for doc in starter_documents(held_out, greeting, goodnight))


def starter_docs(held_out: bool, greeting: str, goodnight: str) -> Sequence[Sequence[Turn]]:
    return _starter(held_out, greeting, goodnight)


@dataclass
class ProbeSet:
    """Token sequences to score: starter windows (block + 1 tokens) and probe-day chunks (at most that)."""

    starter: list[torch.Tensor] = field(default_factory=list)
    days: list[torch.Tensor] = field(default_factory=list)
    day_numbers: list[int] = field(default_factory=list)


@dataclass
class ProbeScore:
    ppl: float
    starter_ppl: float | None
    days_ppl: float | None
    tokens: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"ppl": self.ppl, "starter_ppl": self.starter_ppl, "days_ppl": self.days_ppl, "tokens": self.tokens}


def probe_set_name(block_size: int, windows: int = PROBE_WINDOWS) -> str:
    """The name stored beside every checkpoint's probe figure: which windows measured it."""
    return f"starter held-out, {windows} windows of {block_size + 1} tokens"


def starter_probe(tokenizer: Tokenizer, greeting: str, goodnight: str, block_size: int,
                  windows: int = PROBE_WINDOWS) -> ProbeSet:
    """The starter probe alone: the fixed held-out windows every checkpoint's figure is measured on."""
    probe = ProbeSet()
    if windows > 0:
        heldout = encode_documents(tokenizer, [list(d) for d in starter_docs(True, greeting, goodnight)])
        probe.starter = CorpusTokens.from_encoded([], heldout).heldout_windows(block_size, windows)
    return probe


def build_probe(tokenizer: Tokenizer, store: Store, greeting: str, goodnight: str, block_size: int,
                windows: int = PROBE_WINDOWS) -> ProbeSet:
    """The probe set for a night: fixed held-out starter windows, then the latest probe days."""
    probe = starter_probe(tokenizer, greeting, goodnight, block_size, windows)
    days = [d for d in store.days() if d.closed_at is not None and is_probe_day(d.number)][-PROBE_DAYS_KEPT:]
    for day in days:
        turns = [Turn(t.role, t.text) for t in store.turns(day.id)]
        ids = encode_turns(tokenizer, turns).ids
        for start in range(0, max(1, len(ids) - 1), block_size):
            chunk = ids[start : start + block_size + 1]
            if len(chunk) >= 2:
                probe.days.append(torch.tensor(chunk, dtype=torch.long))
                probe.day_numbers.append(day.number)
    return probe


@torch.no_grad()
def _nll(model: Transformer, sequences: Sequence[torch.Tensor], batch_size: int = 8,
         should_stop: Callable[[], bool] | None = None) -> tuple[float, int]:
    """Summed next-token loss and token count over variable-length sequences (right-padded, masked)."""
    total, count = 0.0, 0
    for i in range(0, len(sequences), batch_size):
        check_stop(should_stop)
        rows = [shifted(seq) for seq in sequences[i : i + batch_size]]
        scored = score(model, [x for x, _ in rows], [t for _, t in rows])
        total += float(scored.summed())
        count += scored.nll.numel()
    return total, count


def _ppl(nll: float, count: int) -> float | None:
    return math.exp(min(nll / count, 50.0)) if count else None


@torch.no_grad()
def probe_score(model: Transformer, probe: ProbeSet, should_stop: Callable[[], bool] | None = None) -> ProbeScore:
    """The probe perplexity of `model` (its train/eval mode is restored); raises Stopped when asked."""
    was_training = model.training
    model.eval()
    try:
        s_nll, s_n = _nll(model, probe.starter, should_stop=should_stop)
        d_nll, d_n = _nll(model, probe.days, should_stop=should_stop)
    finally:
        model.train(was_training)
    total = s_nll + d_nll
    if not math.isfinite(total):
        return ProbeScore(float("inf"), None, None, s_n + d_n)
    return ProbeScore(_ppl(total, s_n + d_n) or float("nan"), _ppl(s_nll, s_n), _ppl(d_nll, d_n), s_n + d_n)


def checkpoint_figure(score: ProbeScore) -> float:
    """The one number stored with a checkpoint: the starter probe (the whole probe when it has none)."""
    return score.starter_ppl if score.starter_ppl is not None else score.ppl


def probe_verdict(before: ProbeScore, after: ProbeScore, bound: float) -> str | None:
    """Why the night must be rolled back on the probe, or None when its cost is within the bound."""
    if not math.isfinite(after.ppl):
        return "the probe perplexity after the night is not finite"
    if math.isfinite(before.ppl) and after.ppl > before.ppl * (1 + bound):
        worse = after.ppl / before.ppl - 1
        return (f"the probe perplexity worsened by {worse:.1%} ({before.ppl:.2f} -> {after.ppl:.2f}), "
                f"past the bound of {bound:.1%}")
    return None


class LossWatch:
    """Watches each step's loss: a NaN or infinite loss, or one above `spike_factor` times the running
    mean of the losses before it, is a reason to roll back. The first `warm_steps` only feed the mean
    (a fresh optimizer's first steps are noisy by nature)."""

    def __init__(self, spike_factor: float, warm_steps: int = 3) -> None:
        self.spike_factor, self.warm_steps = spike_factor, warm_steps
        self.seen = 0
        self.mean = 0.0

    def check(self, step: int, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"the loss became {loss} at step {step + 1}"
        if self.seen >= self.warm_steps and self.mean > 0 and loss > self.spike_factor * self.mean:
            return (f"the loss spiked to {loss:.3f} at step {step + 1}, more than {self.spike_factor:g} times "
                    f"its running mean {self.mean:.3f}")
        self.seen += 1
        self.mean += (loss - self.mean) / self.seen if self.seen <= 10 else 0.1 * (loss - self.mean)
        return None


# ---------------------------------------------------------------------------------------------------
# The anchor: total drift, so that small nights cannot add up to a ruined language.

ANCHOR_REASONS = frozenset({"birth", "seedling", "growth", "import"})
"""Checkpoints a companion's language is measured from: its birth, its adoption of the seedling, a
growth, an import. Retention keeps all of them forever (`companion.history.retention.KEEP_FOREVER`)."""


def find_anchor(store: Store, current, chosen: int | None = None):
    """The checkpoint total drift is measured from: `chosen` (the `night.anchor` setting, a re-anchor
    by the owner) when it names a live checkpoint, else the nearest ancestor of `current` that is a
    birth, adoption, growth or import, else the latest such checkpoint; None when there is none."""
    if chosen is not None:
        picked = store.get_checkpoint(chosen)
        if picked is not None and picked.deleted_at is None:
            return picked
    seen: set[int] = set()
    node = current
    while node is not None and node.id not in seen:
        seen.add(node.id)
        if node.reason in ANCHOR_REASONS and node.deleted_at is None:
            return node
        node = store.get_checkpoint(node.parent_id) if node.parent_id is not None else None
    live = [c for c in store.checkpoints() if c.reason in ANCHOR_REASONS]
    return live[-1] if live else None


def drift_verdict(anchor_ppl: float | None, after_ppl: float | None, bound: float, anchor_id: int) -> str | None:
    """Why the night must be rolled back on total drift (the starter part of the probe after the night
    against the anchor's), or None when within `bound`."""
    if anchor_ppl is None or after_ppl is None or not math.isfinite(anchor_ppl):
        return None
    if after_ppl > anchor_ppl * (1 + bound):
        return (f"the probe perplexity has drifted {after_ppl / anchor_ppl - 1:.1%} since the anchor "
                f"(checkpoint {anchor_id}: {anchor_ppl:.2f} -> {after_ppl:.2f}), past the total bound of {bound:.1%}")
    return None
