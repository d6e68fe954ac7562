"""Padding and next-token losses: the one place that says how a batch of token rows is scored.

Every caller that trains or measures the network (the night's step, the probe, the preferences, the
nursery's held-out loss, the lesson margin, the stretch night, the benches) pads its rows here and takes
its loss here, so that "the loss" means one thing everywhere: a change to how tokens are counted or
weighted is made once and holds for training and for every measure of it.

Conventions: a target of `IGNORE` (-100) teaches nothing (the owner's words, a context, padding);
padding inputs are token 0, which the model reads but no target ever asks it to predict.

Two ways in: `pad` + a model's logits + `next_token_loss`/`summed_nll`/`sequence_logprobs` for windows
where every position is scored (the held-out measures), and `score` for rows of unequal length whose
targets are mostly IGNORE (the night's material, lesson cards, the margin's answers, the preferences'
replies, the probe). Measured on a seedling lesson night (bench/night.py's full day): a third of the
padded positions were padding and 29% were taught; `score` groups rows by length and projects only
the taught positions onto the vocabulary, and computes the same numbers up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100

Row = Sequence[int] | torch.Tensor


@dataclass(frozen=True)
class Padded:
    """Rows right-padded to one width: `inputs` 0 and `targets` IGNORE past each row's end, `weights`
    (when given) 0 there."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None

    @property
    def taught(self) -> int:
        """How many targets teach (are not IGNORE): the count a summed loss is divided by."""
        return int((self.targets != IGNORE).sum())


def shifted(sequence: Row, context: int = 0) -> tuple[list[int], list[int]]:
    """Inputs and targets of next-token prediction over `sequence`: each token predicts the next. The
    first `context` tokens are given, not taught (their targets are IGNORE), so an answer can be
    scored after its prompt."""
    ids = sequence.tolist() if isinstance(sequence, torch.Tensor) else list(sequence)
    given = max(context - 1, 0)
    return ids[:-1], [IGNORE] * given + ids[1 + given :]


def pad(inputs: Sequence[Row], targets: Sequence[Row], weights: Sequence[Sequence[float]] | None = None,
        device: torch.device | str | None = None) -> Padded:
    """Right-pad rows of unequal length into one batch (built on the CPU, then moved to `device`)."""
    width = max(len(x) for x in inputs)
    idx = torch.zeros(len(inputs), width, dtype=torch.long)
    tgt = torch.full((len(inputs), width), IGNORE, dtype=torch.long)
    wts = torch.zeros(len(inputs), width) if weights is not None else None
    for row, (x, t) in enumerate(zip(inputs, targets)):
        idx[row, : len(x)] = torch.as_tensor(x)
        tgt[row, : len(t)] = torch.as_tensor(t)
        if wts is not None:
            wts[row, : len(weights[row])] = torch.tensor(weights[row])  # type: ignore[index]
    if device is not None:
        idx, tgt = idx.to(device), tgt.to(device)
        wts = wts.to(device) if wts is not None else None
    return Padded(idx, tgt, wts)


@dataclass(frozen=True)
class Scored:
    """Each taught target's negative log-likelihood (flat, in no particular order), the row of the
    batch it belongs to, and its weight when the rows had weights."""

    nll: torch.Tensor
    rows: torch.Tensor
    weights: torch.Tensor | None
    count: int  # rows in the batch

    def loss(self) -> torch.Tensor:
        """`next_token_loss`'s formula: each taught token's loss times its weight, summed, divided by
        the number of taught tokens."""
        losses = self.nll if self.weights is None else self.nll * self.weights
        return losses.sum() / max(1, self.nll.numel())

    def summed(self) -> torch.Tensor:
        """The negative log-likelihood summed over every taught target (`summed_nll`)."""
        return self.nll.sum()

    def row_logprobs(self, mean: bool = False) -> torch.Tensor:
        """`sequence_logprobs`: each row's log-probability of its taught targets, summed (or per
        taught token when `mean`)."""
        total = torch.zeros(self.count, device=self.nll.device).index_add(0, self.rows, -self.nll)
        if not mean:
            return total
        taught = torch.zeros(self.count, device=self.nll.device).index_add(0, self.rows, torch.ones_like(self.nll))
        return total / taught.clamp_min(1)


def length_groups(lengths: Sequence[int], slack: float = 1.3) -> list[list[int]]:
    """Row indices grouped so that each group pads to a width at most `slack` times its shortest row
    (longest first): little padding, few forward passes."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] * slack >= lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


REST_SLACK = 3.0
"""How unequal the rests after a shared prompt may be in one read (`length_groups`' slack): they are
short (a margin's answers, a few tokens each), so padding them together costs less than another read
(measured, the lesson margin on the seedling, 2 threads: 14.6 reads a step at the usual 1.3, 10.4 at 3,
its time about a fifth less)."""

SHARED_SAVING = 64
"""A prompt is read once for the rows that share it when that saves at least this many positions
(rows less one, times the prompt's length): each shared reading costs two more forward passes, about
as much as reading this many positions on the seedling (measured, 1 thread)."""


def given_length(targets: Row) -> int:
    """How many leading positions of a row teach nothing (their targets IGNORE): its given prompt."""
    ids = targets.tolist() if isinstance(targets, torch.Tensor) else targets
    for i, t in enumerate(ids):
        if t != IGNORE:
            return i
    return len(ids)


def shared_prompts(inputs: Sequence[Row], targets: Sequence[Row],
                   saving: int = SHARED_SAVING) -> tuple[dict[tuple[int, ...], list[int]], list[int]]:
    """The rows whose given prompt (`given_length`) is the same, token for token, as other rows' and
    worth reading once (`saving`), keyed by that prompt; and the rows left to read whole (rows that
    teach nothing are in neither: they add nothing to a score). The lesson
    margin asks each morning question with up to ten answers after it: measured on a seedling lesson
    night, reading each such prompt once cut the margin's positions from 135,147 to 58,265."""
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, (x, t) in enumerate(zip(inputs, targets)):
        given = given_length(t)
        if given >= len(t):  # nothing taught: nothing to read
            continue
        ids = x.tolist() if isinstance(x, torch.Tensor) else list(x)
        by_prompt.setdefault(tuple(ids[:given]), []).append(i)
    shared = {p: rows for p, rows in by_prompt.items() if p and (len(rows) - 1) * len(p) >= saving}
    alone = sorted(i for p, rows in by_prompt.items() if p not in shared for i in rows)
    return shared, alone


def autocast_on(device_type: str) -> bool:
    """Whether an autocast is in force for `device_type` ("cpu", "cuda")."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 asks per device with its own function
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _compute_dtype(model: torch.nn.Module, device: torch.device) -> torch.dtype:
    """The dtype a linear layer gives under the autocast in force (the night autocasts on a GPU)."""
    param = next(model.parameters()).dtype
    if not autocast_on(device.type):
        return param
    getter = getattr(torch, "get_autocast_dtype", None)
    if getter is not None:
        return getter(device.type)
    return torch.get_autocast_cpu_dtype() if device.type == "cpu" else torch.get_autocast_gpu_dtype()


Adjust = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class _Scores:
    """What `score` gathers, part by part: each taught target's nll, its row, its weight."""

    def __init__(self, weighted: bool, adjust: Adjust | None = None,
                 copies: Mapping[int, Sequence[int]] | None = None) -> None:
        self.nll: list[torch.Tensor] = []
        self.rows: list[torch.Tensor] = []
        self.wts: list[torch.Tensor] | None = [] if weighted else None
        self.adjust = adjust
        self.copies = copies or {}

    def add(self, model: torch.nn.Module, hidden: torch.Tensor, batch: Padded, rows: Sequence[int],
            offset: int = 0) -> None:
        """A read batch's taught positions; `offset`: where the batch's first position is in its rows
        (after a shared prompt)."""
        taught = batch.targets != IGNORE
        logits = model.project(hidden[taught]).float()
        where = taught.nonzero()
        row_ids = torch.as_tensor(list(rows), device=hidden.device)[where[:, 0]]
        targets, positions = batch.targets[taught], where[:, 1] + offset
        wts = batch.weights[taught] if self.wts is not None and batch.weights is not None else None
        again = [(i, c) for i, r in enumerate(rows) for c in self.copies.get(r, ())]
        if again:  # a copy's positions are its row's, read once: scored again under the copy's id
            of = [(where[:, 0] == i).nonzero().squeeze(1) for i, _ in again]
            pick = torch.cat([torch.arange(len(row_ids), device=hidden.device), *of])
            row_ids = torch.cat([row_ids, *(torch.full_like(x, c) for x, (_, c) in zip(of, again))])
            logits, targets, positions = logits[pick], targets[pick], positions[pick]
            wts = wts[pick] if wts is not None else None
        if self.adjust is not None:
            logits = self.adjust(logits, row_ids, positions, targets)
        self.nll.append(F.cross_entropy(logits, targets, reduction="none"))
        self.rows.append(row_ids)
        if wts is not None:
            self.wts.append(wts)


def _read_alone(model, scores: _Scores, index: Sequence[int], inputs, targets, weights, slack, device) -> None:
    """Rows read whole, in groups of like length."""
    for part in length_groups([len(inputs[i]) for i in index], slack):
        group = [index[j] for j in part]
        batch = pad([inputs[i] for i in group], [targets[i] for i in group],
                    [weights[i] for i in group] if weights is not None else None, device)
        if bool((batch.targets != IGNORE).any()):
            scores.add(model, model.hidden(batch.inputs), batch, group)


def _read_shared(model, scores: _Scores, shared: dict[tuple[int, ...], list[int]], inputs, targets, weights,
                 slack, device) -> None:
    """Prompts of one length read together once (a cache of their keys and values), then each row's
    rest read after its prompt's cache: the same attention as reading the row whole (causal, the same
    positions), with gradients flowing through the cache into the prompt's reading."""
    from companion.model.transformer import KVCache  # model.transformer imports this module

    dtype = _compute_dtype(model, device)
    by_length: dict[int, list[tuple[int, ...]]] = {}
    for prompt in shared:
        by_length.setdefault(len(prompt), []).append(prompt)
    for length, prompts in by_length.items():
        cache = KVCache.empty(model.config, len(prompts), device, dtype, capacity=length)
        model.hidden(torch.tensor(prompts, device=device), cache)
        owned = [(g, i) for g, prompt in enumerate(prompts) for i in shared[prompt]]
        rests = [len(inputs[i]) - length for _, i in owned]
        for part in length_groups(rests, max(slack, REST_SLACK)):
            group = [owned[j][1] for j in part]
            batch = pad([inputs[i][length:] for i in group], [targets[i][length:] for i in group],
                        [weights[i][length:] for i in group] if weights is not None else None, device)
            rows = cache.select([owned[j][0] for j in part], room=batch.inputs.shape[1])
            if bool((batch.targets != IGNORE).any()):
                scores.add(model, model.hidden(batch.inputs, rows), batch, group, offset=length)


def score(model: torch.nn.Module, inputs: Sequence[Row], targets: Sequence[Row],
          weights: Sequence[Sequence[float]] | None = None, slack: float = 1.3,
          saving: int = SHARED_SAVING, adjust: Adjust | None = None,
          copies: Mapping[int, Sequence[int]] | None = None) -> Scored:
    """Score rows of unequal length on `model` (a `model.transformer.Transformer`): a prompt that
    several rows share is read once for all of them (`shared_prompts`), the rest grouped by length
    (`length_groups`), each group padded and read, and only the taught positions projected onto the
    vocabulary (`Transformer.project`). With gradients when enabled. The numbers are those of reading
    every row whole, up to float rounding (`tests/test_loss.py`). `adjust(logits, rows, positions,
    targets)` may change the taught positions' logits before they are scored (e.g. into what the
    sampler draws from, `model.sampling.as_drawn`). `copies` maps a row to rows of the same tokens
    (inputs and targets), scored again under their own ids without being read again: the lesson
    margin scores each answer as it is and as drawn (`adjust` tells them apart by id)."""
    device = next(model.parameters()).device
    copies = copies or {}
    scores = _Scores(weights is not None, adjust, copies)
    if copies:  # a copy is not read (its targets teach nothing here): its row is, for both
        skip = {c for rows in copies.values() for c in rows}
        targets = [[IGNORE] * len(t) if i in skip else t for i, t in enumerate(targets)]
    shared, alone = shared_prompts(inputs, targets, saving) if saving > 0 else ({}, list(range(len(inputs))))
    if copies:
        alone = [i for i in alone if i not in skip]
    if shared:
        _read_shared(model, scores, shared, inputs, targets, weights, slack, device)
    _read_alone(model, scores, alone, inputs, targets, weights, slack, device)
    if not scores.nll:
        empty = torch.zeros(0, device=device)
        return Scored(empty, torch.zeros(0, dtype=torch.long, device=device), empty if weights is not None else None,
                      len(inputs))
    wts = torch.cat(scores.wts) if scores.wts else None
    return Scored(torch.cat(scores.nll), torch.cat(scores.rows), wts, len(inputs))


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each position's negative log-likelihood of its target (0 where IGNORE), shaped like `targets`;
    computed in float32 whatever the model's dtype."""
    losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                             ignore_index=IGNORE, reduction="none")
    return losses.view(targets.shape)


def summed_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood summed over the taught targets: a measure adds these up over
    batches and divides by the tokens counted, so rows of any length weigh by their tokens."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss: each taught token's loss times its weight, summed, divided by the number of
    taught tokens (not by the sum of weights). So a source taught at weight 0.5 pulls half as hard as
    one at 1.0 instead of being scaled back up; with no weights it is the plain mean."""
    losses = token_nll(logits, targets).reshape(-1)
    taught = (targets.reshape(-1) != IGNORE).float()
    if weights is not None:
        losses = losses * weights.reshape(-1)
    return (losses * taught).sum() / taught.sum().clamp_min(1.0)


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Each row's log-probability of its taught targets, summed (or per taught token when `mean`): how
    likely the model finds a reply after its context, for preferences and for measuring a lesson."""
    logp = F.log_softmax(logits.float(), dim=-1)
    mask = targets != IGNORE
    picked = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask
    return picked.sum(-1) / mask.sum(-1).clamp_min(1) if mean else picked.sum(-1)
