"""What a growth would do, and whether it may: checked before any weight is touched.

Every refusal is a `GrowthError` whose message names the value at fault: a width that is not larger or
not a multiple of the head size, a context that is not larger, tokens that are all known already (each
named) or not tokens at all, a model too large for this machine's memory (estimated from the sizes,
before anything is built), a night running, a companion not born.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from companion.history.cli import format_bytes
from companion.home import Home
from companion.store import Checkpoint, Store
from companion.model.config import PRESETS, ModelConfig

FP32 = 4
ADAMW_BYTES_PER_PARAM = 16  # weight, gradient and AdamW's two moments, fp32


class GrowthError(Exception):
    """A growth that cannot happen; the message says why, and nothing was changed."""


@dataclass(frozen=True)
class GrowthPlan:
    """One growth, said to the owner before they confirm it."""

    kind: str                      # "width", "context" or "tokens"
    current: Checkpoint
    before: ModelConfig
    after: ModelConfig
    params_before: int
    params_after: int
    file_bytes_before: int
    file_bytes_after: int          # estimated: the current file scaled by the parameter count
    memory_needed: int             # estimated bytes to train the grown model (weights, AdamW, activations)
    memory_available: int | None
    tokens: tuple[str, ...] = ()                # "tokens": the new tokens, in id order
    token_pieces: tuple[int, ...] = ()          # how many old tokens each replaces
    skipped: tuple[tuple[str, str], ...] = ()   # tokens asked for but already known, and why

    @property
    def target(self) -> int:
        return {"width": self.after.n_embd, "context": self.after.block_size}.get(self.kind, self.after.vocab_size)


def count_params(config: ModelConfig) -> int:
    """Parameters of a model of this shape (tied embeddings counted once), computed without building it."""
    c, h, layers = config.n_embd, config.hidden, config.n_layer
    per_layer = 2 * c + 4 * c * c + 3 * c * h  # two norms, qkv + proj, gate + up + down
    return config.vocab_size * c + layers * per_layer + c


def training_memory(config: ModelConfig, batch_tokens: int) -> int:
    """A generous estimate of the bytes one training step of this shape needs on the CPU: weights,
    gradients and AdamW moments, plus the activations kept for the backward pass (about 20 floats per
    width per token per layer, the MLP's hidden activations, and the attention scores of one block)."""
    rows = max(1, batch_tokens // config.block_size)
    tokens = rows * config.block_size
    activations = tokens * config.n_layer * (20 * config.n_embd + 4 * config.hidden) * FP32
    attention = rows * config.n_head * config.block_size ** 2 * FP32 * 2
    logits = tokens * config.vocab_size * FP32 * 3
    return count_params(config) * ADAMW_BYTES_PER_PARAM + activations + attention + logits


def available_memory() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parse_width(text: str) -> int:
    """A width in dimensions, or a preset's name (v1..v4) for its width."""
    text = str(text).strip()
    if text in PRESETS:
        return PRESETS[text].n_embd
    try:
        value = int(text)
    except ValueError:
        raise GrowthError(f"width {text!r} is neither a number of dimensions nor a preset "
                          f"({', '.join(p for p in PRESETS if p != 'seedling')})") from None
    if value <= 0:
        raise GrowthError(f"width {value} must be a positive number of dimensions")
    return value


def plan_growth(home: Home, store: Store, *, width: int | None = None, context: int | None = None,
                tokens: "list[str] | None" = None, batch_tokens: int = 4096, memory: int | None = -1) -> GrowthPlan:
    """Check the growth and say what it would be; nothing is written or loaded but the current header
    (and, for `tokens`, the current tokenizer: the words to add, as `growth.tokens.read_entries` gives them).

    `memory`: the bytes available (tests pass a number; -1 reads the machine's, None skips the check).
    """
    from companion.model.checkpoint import CheckpointError, read_meta
    from companion.model.growth import StretchError, WidenError, stretch_config, widen_config
    from companion.history.weights import Weights

    if sum(x is not None for x in (width, context, tokens)) != 1:
        raise GrowthError("say what to grow: --width D, --context N or --add-tokens WORD... (one at a time)")
    if store.running_night() is not None:
        raise GrowthError("a night is running; growth is refused until it ends")
    weights = Weights(home, store)
    current = weights.current()
    if current is None:
        raise GrowthError("the companion has no weights yet (it is not born)")
    path = weights.path_of(current)
    try:
        before = read_meta(path).config
    except CheckpointError as exc:
        raise GrowthError(f"the current weights cannot be read: {exc}") from exc
    extra: dict = {}
    try:
        if width is not None:
            kind, after = "width", widen_config(before, width)
        elif context is not None:
            kind, after = "context", stretch_config(before, context)
        else:
            kind, extra = "tokens", _plan_tokens(weights, current, before, tokens)
            after = replace(before, vocab_size=before.vocab_size + len(extra["tokens"]))
    except (WidenError, StretchError) as exc:
        raise GrowthError(str(exc)) from exc
    p0, p1 = count_params(before), count_params(after)
    size0 = path.stat().st_size
    needed = training_memory(after, batch_tokens) + count_params(before) * FP32  # the app keeps its model
    avail = available_memory() if memory == -1 else memory
    plan = GrowthPlan(kind, current, before, after, p0, p1, size0, int(size0 * p1 / p0), needed, avail, **extra)
    if avail is not None and needed > avail:
        raise GrowthError(f"growing to {describe_size(after)} needs about {format_bytes(needed)} of memory to "
                          f"train, and {format_bytes(avail)} is available; nothing was changed")
    return plan


def _plan_tokens(weights, current: Checkpoint, before: ModelConfig, entries: "list[str]") -> dict:
    """The new tokens (each checked against the current tokenizer) for `GrowthPlan`; a `GrowthError`
    names every token already known when none is left to add."""
    from companion.growth.tokens import TokenInputError, choose_tokens, describe_token
    from companion.model.checkpoint import CheckpointError
    from companion.model.tokenizer import TokenizerError

    try:
        tokenizer = weights.tokenizer(current)
    except (CheckpointError, TokenizerError) as exc:
        raise GrowthError(f"the current tokenizer cannot be read: {exc}") from exc
    if tokenizer.vocab_size != before.vocab_size:
        raise GrowthError(f"the weights have {before.vocab_size} token rows but the tokenizer has "
                          f"{tokenizer.vocab_size} tokens; tokens cannot be added to this companion")
    try:
        choice = choose_tokens(tokenizer, entries)
    except TokenInputError as exc:
        raise GrowthError(str(exc)) from exc
    if not choice.add:
        known = "; ".join(f"{describe_token(t)} {why}" for t, why in choice.skipped[:8])
        more = f" and {len(choice.skipped) - 8} more" if len(choice.skipped) > 8 else ""
        raise GrowthError(f"nothing to add: {known}{more}")
    return {"tokens": choice.add, "token_pieces": choice.pieces, "skipped": choice.skipped}


def describe_size(config: ModelConfig) -> str:
    """`256 wide x 6 layers, 4 heads, 512 tokens`."""
    return (f"{config.n_embd} wide x {config.n_layer} layers, {config.n_head} heads, "
            f"{config.block_size} tokens")


def short_size(config: ModelConfig) -> str:
    """`w384 ctx1024`: a checkpoint's size in a list."""
    return f"w{config.n_embd} ctx{config.block_size}"


def checkpoint_size(path) -> tuple[str, str]:
    """The short size of the checkpoint file at `path` (with its vocabulary, `v8196`, once tokens were
    added), and for a growth its story ("grown from ... to ..."), read from its header only; ("", "")
    when it cannot be read."""
    from companion.model.checkpoint import CheckpointError, read_meta

    try:
        meta = read_meta(path)
    except (CheckpointError, OSError):
        return "", ""
    story = ""
    if meta.extra.get("growth") == "tokens" and meta.extra.get("before") and meta.extra.get("after"):
        try:
            before, after = ModelConfig.from_json(meta.extra["before"]), ModelConfig.from_json(meta.extra["after"])
            added = after.vocab_size - before.vocab_size
            story = f"added {added} token{'s' if added != 1 else ''}: vocabulary {before.vocab_size} -> {after.vocab_size}"
        except (ValueError, TypeError):
            story = "grown (its story in the header is unreadable)"
    elif meta.extra.get("before") and meta.extra.get("after"):
        try:
            before, after = ModelConfig.from_json(meta.extra["before"]), ModelConfig.from_json(meta.extra["after"])
            story = f"grown from {describe_size(before)} to {describe_size(after)}"
        except (ValueError, TypeError):
            story = "grown (its story in the header is unreadable)"
    vocab = f" v{meta.config.vocab_size}" if meta.extra.get("tokenizer") else ""  # tokens were added
    return short_size(meta.config) + vocab, story


def preview_lines(plan: GrowthPlan, seconds_before: float | None = None,
                  seconds_after: float | None = None, day_share: float | None = None) -> list[str]:
    """The preview the owner reads before confirming (the CLI prints it, the palette shows it)."""
    b, a = plan.before, plan.after
    if plan.kind == "tokens":
        return _token_preview(plan)
    what = (f"Widen {b.n_embd} -> {a.n_embd} dimensions ({b.n_head} -> {a.n_head} heads of {a.head_dim}); "
            "it computes exactly what it computed before" if plan.kind == "width" else
            f"Stretch the context {b.block_size} -> {a.block_size} tokens, then a short stretch night on long "
            "windows under the probe guard")
    lines = [what,
             f"  parameters   {plan.params_before:,} -> {plan.params_after:,}",
             f"  checkpoint   {format_bytes(plan.file_bytes_before)} -> about {format_bytes(plan.file_bytes_after)}",
             f"  memory       about {format_bytes(plan.memory_needed)} to train"
             + (f" ({format_bytes(plan.memory_available)} available)" if plan.memory_available else "")]
    if seconds_before is not None and seconds_after is not None:
        lines.append(f"  time a step  {seconds_before:.2f} s -> {seconds_after:.2f} s (measured now)")
    if day_share is not None and plan.kind == "context":
        lines.append(f"  the day      {int(b.block_size * day_share)} -> {int(a.block_size * day_share)} tokens "
                     "from the next day on")
    lines.append("The current weights stay as they are: this growth is a new checkpoint, restorable and undoable.")
    return lines


def _token_preview(plan: GrowthPlan, shown: int = 12) -> list[str]:
    from companion.growth.tokens import describe_token

    b, a = plan.before, plan.after
    n = len(plan.tokens)
    lines = [f"Add {n} token{'s' if n != 1 else ''}: vocabulary {b.vocab_size:,} -> {a.vocab_size:,}; every old id and "
             "what the model computes for old text stay exactly as they are"]
    for i, (token, pieces) in enumerate(zip(plan.tokens[:shown], plan.token_pieces)):
        lines.append(f"  + {describe_token(token)}  id {b.vocab_size + i}, was {pieces} tokens; starts as their mean")
    if n > shown:
        lines.append(f"  + and {n - shown} more")
    for token, why in plan.skipped[:shown]:
        lines.append(f"  skipped {describe_token(token)}: {why}")
    if len(plan.skipped) > shown:
        lines.append(f"  skipped {len(plan.skipped) - shown} more already known")
    lines += [f"  parameters   {plan.params_before:,} -> {plan.params_after:,}",
              f"  checkpoint   {format_bytes(plan.file_bytes_before)} -> about {format_bytes(plan.file_bytes_after)}",
              "The new tokens are learned from use, night after night. The current weights stay as they are: this "
              "growth is a new checkpoint with its own tokenizer, restorable and undoable."]
    return lines
