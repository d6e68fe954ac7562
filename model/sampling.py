"""Sampling K candidate continuations in one batch that shares a single reading of the prompt.

Each candidate slot has its own random generator seeded `seed + slot`, so candidate i of a batch is the
same as generating candidate i alone with that seed: a run is reproducible and a batch is no different
from its parts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch

from companion.model.decode import decoder_for
from companion.model.sampling_settings import SamplingSettings
from companion.model.transformer import KVCache, Transformer

__all__ = ["SamplingSettings", "Generation", "sample_candidates", "sample_from_cache", "prefill",
           "sample_steps", "Step", "apply_repetition_penalty", "filter_logits", "penalise", "penalty_window", "as_drawn"]


@dataclass
class Generation:
    tokens: list[int] = field(default_factory=list)
    finish: str = ""  # "end" (a stop token), "length" (max tokens or block full), "stopped" (asked to stop)
    stop_token: int | None = None


def apply_repetition_penalty(logits: torch.Tensor, seen: list[set[int]], penalty: float, protected: Collection[int]) -> torch.Tensor:
    """Make already-seen tokens less likely: divide positive logits, multiply negative ones.

    (Dividing a negative logit would make the token *more* likely: the classic bug.) Special tokens are
    never penalised, so a reply can always end.
    """
    if penalty == 1.0:
        return logits
    logits = logits.clone()
    for row, tokens in enumerate(seen):
        ids = [t for t in tokens if t not in protected]
        if not ids:
            continue
        idx = torch.tensor(ids, device=logits.device)
        vals = logits[row, idx]
        logits[row, idx] = torch.where(vals > 0, vals / penalty, vals * penalty)
    return logits


def penalty_window(prompt: Sequence[int], settings: SamplingSettings) -> Sequence[int]:
    """The prompt tokens the repetition penalty looks back on (besides the reply so far)."""
    return prompt[-settings.repetition_window :] if settings.repetition_window else ()


def penalise(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The repetition penalty on the tokens marked in `seen` (a boolean mask shaped like `logits`)."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def as_drawn(logits: torch.Tensor, seen: torch.Tensor | None, settings: SamplingSettings,
             targets: torch.Tensor) -> torch.Tensor:
    """The logits the sampler draws from, for scoring how likely it is to say `targets` (one per row):
    the repetition penalty on `seen`, the temperature, the top-k and top-p cuts (`filter_logits`,
    which tokens survive decided without gradient). Differentiable, so a loss can ask for what is
    *said*: at the owner's 0.8, top 50 and top 0.95 the thin tail of the vocabulary (most of a small
    model's raw probability) is never drawn. Each target is kept even where a cut would drop it, so
    its log-probability stays finite and its gradient can bring it back."""
    if seen is not None and settings.repetition_penalty != 1.0:
        logits = penalise(logits, seen, settings.repetition_penalty)
    logits = logits / max(settings.temperature, 1e-5)
    kept = filter_logits(logits.detach(), settings.top_k, settings.top_p) > float("-inf")
    return logits.masked_fill(~kept.scatter(-1, targets[..., None], True), float("-inf"))


class _Penalty:
    """The repetition penalty as one (rows, vocab) mask of the tokens each row has seen, so that
    applying it is two tensor operations a step, not a Python loop over rows and sets. Same rule as
    `apply_repetition_penalty` (the reference)."""

    def __init__(self, rows: int, vocab: int, window: Collection[int], penalty: float, protected: Collection[int],
                 device) -> None:
        self.penalty, self.protected = penalty, set(protected)
        self.on = penalty != 1.0
        self.mask = torch.zeros(rows, vocab, dtype=torch.bool, device=device) if self.on else None
        if self.on:
            ids = [t for t in set(window) if t not in self.protected and 0 <= t < vocab]
            if ids:
                self.mask[:, ids] = True

    def saw(self, row: int, token: int) -> None:
        if self.on and token not in self.protected:
            self.mask[row, token] = True

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return penalise(logits, self.mask, self.penalty) if self.on else logits


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Keep the top-k tokens and the smallest set whose probability reaches top_p; the rest -inf.

    With top-k on, top-p looks only at the k survivors (already sorted by `topk`) instead of sorting
    the whole vocabulary: the same set, at a fraction of the cost per step."""
    if top_k and top_k < logits.size(-1):
        top = torch.topk(logits, top_k, dim=-1)
        kth = top.values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
        if top_p < 1.0 and bool((logits > float("-inf")).sum(-1).eq(top_k).all()):  # no ties at the k-th
            probs = torch.softmax(top.values, dim=-1)
            drop = probs.cumsum(-1) - probs > top_p  # the first token is always kept
            kept = top.values.masked_fill(drop, float("-inf"))
            return torch.full_like(logits, float("-inf")).scatter(-1, top.indices, kept)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop = probs.cumsum(-1) - probs > top_p  # the first token is always kept
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def _generators(seed: int | None, slots: list[int], device) -> list[torch.Generator]:
    base = seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    gens = []
    for slot in slots:
        g = torch.Generator(device=device)
        g.manual_seed(base + slot)
        gens.append(g)
    return gens


def kept_prefix(read: Sequence[int], prompt: Sequence[int]) -> int | None:
    """How much of what a cache has `read` a new `prompt` can keep: None when the prompt is exactly
    what was read (its last logits serve again), else the tokens shared from the start, at most all
    but the prompt's last (at least one token is always read, for its logits). The day grows a turn
    at a time, so a turn reads only what it added."""
    shared = 0
    for a, b in zip(read, prompt):
        if a != b:
            break
        shared += 1
    if shared == len(prompt) == len(read):
        return None
    return min(shared, len(prompt) - 1)


@torch.no_grad()
def prefill(model: Transformer, prompt: list[int]) -> tuple[KVCache, torch.Tensor]:
    """Read the prompt once; return the cache and the last position's logits (1, vocab)."""
    p = next(model.parameters())
    cache = KVCache.empty(model.config, 1, p.device, p.dtype)
    logits, _ = model(torch.tensor([prompt], device=p.device), cache=cache, last_only=True)
    return cache, logits[:, -1, :]


@torch.no_grad()
def sample_candidates(
    model: Transformer,
    prompt: list[int],
    k: int,
    settings: SamplingSettings,
    stop_ids: Collection[int],
    protected_ids: Collection[int] = (),
    slots: list[int] | None = None,
    on_token: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Generation]:
    """Sample `k` continuations of `prompt` (token ids) in one batch that shares one prefill.

    `slots` names each row's seed offset (default 0..k-1; a second round of candidates passes k..2k-1
    so it never repeats the first). `on_token(row, token)` streams tokens as they come; `should_stop()`
    is polled each step and ends every row with finish="stopped", keeping what was generated.
    """
    if not prompt:
        raise ValueError("the prompt is empty: nothing to continue")
    if len(prompt) >= model.config.block_size:
        raise ValueError(f"the prompt ({len(prompt)} tokens) fills the block ({model.config.block_size})")
    model.eval()
    cache, last = prefill(model, prompt)
    return sample_from_cache(model, cache, last, prompt, k, settings, stop_ids, protected_ids, slots,
                             on_token, should_stop)


Step = Callable[[list[int]], torch.Tensor]
"""One decoding step of K rows: each row's last token in, the (k, vocab) logits after it out."""


@torch.no_grad()
def sample_from_cache(
    model: Transformer,
    cache: KVCache,
    last_logits: torch.Tensor,
    prompt: list[int],
    k: int,
    settings: SamplingSettings,
    stop_ids: Collection[int],
    protected_ids: Collection[int] = (),
    slots: list[int] | None = None,
    on_token: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    fast: bool = True,
) -> list[Generation]:
    """The sampling loop on our model, from a prompt already read into a one-row `cache` whose last
    position gave `last_logits` (1, vocab). The caller's cache stays as read (the engine keeps the day's
    cache between turns): `k` rows get a copy with room for this reply only, and one row writes only past
    the positions read (see `KVCache.expand`). Each step runs `model.decode`'s step when the model's
    layers allow it (`fast`; False: the module path, which the tests compare it with)."""
    steps = min(settings.max_new_tokens, model.config.block_size - cache.length)
    rows = cache.expand(k, steps)  # room for this reply only, not the whole block
    device = last_logits.device
    decoder = decoder_for(model) if fast else None

    def step(next_ids: list[int]) -> torch.Tensor:
        if decoder is not None:  # the same arithmetic in fewer operations (model.decode)
            return decoder.step(torch.tensor(next_ids, device=device), rows)
        logits, _ = model(torch.tensor(next_ids, device=device)[:, None], cache=rows)
        return logits[:, -1, :]

    return sample_steps(step, last_logits, prompt, k, steps, settings, stop_ids, protected_ids, slots,
                        on_token, should_stop)


@torch.no_grad()
def sample_steps(
    step: Step,
    last_logits: torch.Tensor,
    prompt: list[int],
    k: int,
    steps: int,
    settings: SamplingSettings,
    stop_ids: Collection[int],
    protected_ids: Collection[int] = (),
    slots: list[int] | None = None,
    on_token: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Generation]:
    """The one sampling loop: at most `steps` tokens for each of `k` rows that all start from the logits
    after `prompt` (`last_logits`, (1, vocab)), `step(next_ids)` giving the next (k, vocab) logits.

    Whatever computes the logits (our model and its cache, or llama.cpp's parallel sequences), the
    rules are these: the repetition penalty, the cut-offs, one generator per slot (seed + slot), the
    stop tokens ending a row (finish 'end'), `should_stop` ending every row (finish 'stopped')."""
    slots = list(range(k)) if slots is None else list(slots)
    if len(slots) != k:
        raise ValueError(f"{k} candidates but {len(slots)} slots")
    device = last_logits.device
    gens = _generators(settings.seed, slots, device)
    logits = last_logits.expand(k, -1)
    protected = set(protected_ids) | set(stop_ids)
    penalty = _Penalty(k, logits.size(-1), penalty_window(prompt, settings),
                       settings.repetition_penalty, protected, device)
    greedy = settings.top_k == 1  # one token survives the filter: its argmax, with no draw to make
    results = [Generation() for _ in range(k)]
    for i in range(steps):
        if should_stop is not None and should_stop():
            for r in results:
                r.finish = r.finish or "stopped"
            break
        scores = penalty.apply(logits.float())
        if greedy:
            next_ids = scores.argmax(-1).tolist()
        else:
            scores = filter_logits(scores / max(settings.temperature, 1e-5), settings.top_k, settings.top_p)
            probs = torch.softmax(scores, dim=-1)
            next_ids = torch.cat([torch.multinomial(probs[row], 1, generator=gens[row]) for row in range(k)]).tolist()
        for row, tok in enumerate(next_ids):
            r = results[row]
            if r.finish:
                continue
            if tok in stop_ids:
                r.finish, r.stop_token = "end", tok
                continue
            r.tokens.append(tok)
            penalty.saw(row, tok)
            if on_token is not None:
                on_token(row, tok)
        if all(r.finish for r in results) or i == steps - 1:
            break
        logits = step(next_ids)
    for r in results:
        r.finish = r.finish or "length"
    return results
