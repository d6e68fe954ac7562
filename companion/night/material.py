"""What a night learns from, with per-source loss weights and token budgets, packed into steps.

Sources (settings `[night.<source>]`, each with `weight` and `tokens`; either at 0 turns it off):

* **day**: the day's transcript as it stands in the store, so corrections are applied and candidates
  the owner passed over are absent; the loss is on the companion's and the inner voice's tokens, the
  owner's own words count `night.owner_weight`. A probe day (see `companion.night.guards`) gives no text.
* **dreams**: the latest `night.dreams_kept` dreams, after the good-night line; lines the owner tagged
  "off" are context only.
* **preferences**: DPO pairs and KTO examples (`companion.night.preferences`).
* **books**: queued books whose file is still there with the same sha256; the others are refused,
  named in the report, and never read.
* **replay**: older days (newest first, probe days excepted) for up to half the budget, the rest
  random conversations of the starter corpus, so that new lessons do not wear the language away.

A source's `tokens` is the most tokens drawn from it per night. Large sources are cut to it; small
ones are repeated up to it, at most PASSES[source] times: the owner's own material (a day is at most
one block) up to 16 times, so a lesson is seen often enough to stick at a fine-tuning learning rate
while replay keeps the cost in check (the probe guard has the last word); dreams, the model's own
words, at most twice, because training a model on its own samples again and again amplifies its
habits; books and replay once. Everything drawn is shuffled and packed into steps of about
`night.batch_tokens` tokens; with `night.steps = 0` the night runs exactly those steps (capped at
MAX_AUTO_STEPS), otherwise the packed steps are cycled or cut to `night.steps`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import torch

from companion.home import Home
from companion.night.guards import is_probe_day, starter_docs
from companion.night.preferences import Pair, Preferences, Unpaired, dpo_loss, kto_loss
from companion.settings import Settings
from companion.store import Book, Day, Store
from companion.transcript import Turn, count_tokens, encode_turns, parse_text
from companion.model.loss import score
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

PASSES = {"day": 16, "preferences": 16, "dreams": 2, "books": 1, "replay": 1}
MAX_AUTO_STEPS = 2000
SOURCES = ("day", "dreams", "preferences", "books", "replay")


@dataclass
class Example:
    """One next-token training sequence: inputs, targets (-100: no loss) and per-target weights."""

    inputs: list[int]
    targets: list[int]
    weights: list[float]
    source: str

    def __len__(self) -> int:
        return len(self.inputs)


Item = Union[Example, Pair, Unpaired]


@dataclass
class Material:
    items: dict[str, list[Item]] = field(default_factory=lambda: {s: [] for s in SOURCES})
    notes: list[str] = field(default_factory=list)
    books: list[tuple[Book, int]] = field(default_factory=list)  # books read tonight, with their tokens

    def tokens(self, source: str) -> int:
        return sum(len(x) for x in self.items[source])


def _on(settings: Settings, source: str) -> bool:
    budget = getattr(settings.night, source)
    return budget.weight > 0 and budget.tokens > 0


def transcript_examples(tokenizer: Tokenizer, turns: Sequence[Turn], turn_weights: Sequence[float],
                        block_size: int, source: str) -> list[Example]:
    """A transcript as training sequences of at most one block, each turn's tokens at its weight."""
    enc = encode_turns(tokenizer, turns)
    per_token: list[float] = []
    for turn, weight in zip(turns, turn_weights):
        per_token += [weight] * count_tokens(tokenizer, turn)
    inputs, targets, weights = enc.ids[:-1], enc.ids[1:], per_token[1:]
    targets = [t if w > 0 else -100 for t, w in zip(targets, weights)]
    out = []
    for start in range(0, len(inputs), block_size):
        t = targets[start : start + block_size]
        if any(x != -100 for x in t):
            out.append(Example(inputs[start : start + block_size], t, weights[start : start + block_size], source))
    return out


def role_weights(settings: Settings) -> dict[str, float]:
    return {"companion": 1.0, "inner": 1.0, "owner": settings.night.owner_weight, "text": 1.0}


def day_examples(tokenizer: Tokenizer, store: Store, day: Day, settings: Settings, block_size: int,
                 source: str = "day") -> list[Example]:
    roles = role_weights(settings)
    turns = [Turn(t.role, t.text) for t in store.turns(day.id)]
    scale = getattr(settings.night, "day" if source == "day" else "replay").weight
    return transcript_examples(tokenizer, turns, [roles[t.role] * scale for t in turns], block_size, source)


def dream_examples(tokenizer: Tokenizer, settings: Settings, dreams: Sequence[tuple[str, list[bool | None]]],
                   block_size: int) -> list[Example]:
    """Each dream after the good-night line; lines tagged off (verdict False) are context only."""
    weight = settings.night.dreams.weight
    out = []
    for text, verdicts in dreams:
        lines = parse_text(text)
        turns = [Turn("inner", settings.goodnight_line()), *lines]
        weights = [0.0] + [0.0 if i < len(verdicts) and verdicts[i] is False else weight for i in range(len(lines))]
        out += transcript_examples(tokenizer, turns, weights, block_size, "dreams")
    return out


def _paragraph_pieces(text: str, max_chars: int) -> list[str]:
    pieces = []
    for para in text.split("\n\n"):
        para = para.strip()
        while len(para) > max_chars:
            cut = para.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            pieces.append(para[:cut])
            para = para[cut:].strip()
        if para:
            pieces.append(para)
    return pieces


def book_path(home: Home, book: Book) -> Path:
    path = Path(book.path)
    return path if path.is_absolute() else home.path / path


def book_examples(home: Home, store: Store, tokenizer: Tokenizer, settings: Settings,
                  block_size: int, material: Material) -> None:
    """Read queued books up to the budget; a book that vanished or changed is refused and named."""
    budget, weight = settings.night.books.tokens, settings.night.books.weight
    used = 0
    for book in store.books("queued"):
        if used >= budget:
            break
        path = book_path(home, book)
        try:
            data = path.read_bytes()
        except OSError:
            store.refuse_book(book.id, "the file vanished before the night could read it")
            material.notes.append(f"book {book.path} was not read: the file vanished since it was queued")
            continue
        if hashlib.sha256(data).hexdigest() != book.sha256:
            store.refuse_book(book.id, "the file changed after it was queued")
            material.notes.append(f"book {book.path} was not read: the file changed since it was queued")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            store.refuse_book(book.id, "not UTF-8 text")
            material.notes.append(f"book {book.path} was not read: it is not UTF-8 text")
            continue
        # A piece of about (block - 2) tokens, at roughly three characters a token; longer ones are split.
        read = 0
        for piece in _paragraph_pieces(text, max_chars=3 * (block_size - 2)):
            if used >= budget:
                break
            examples = transcript_examples(tokenizer, [Turn("text", piece)], [weight], block_size, "books")
            for ex in examples:
                material.items["books"].append(ex)
                used += len(ex)
                read += len(ex)
        material.books.append((book, read))
        if used >= budget and read < len(text) // 4:
            material.notes.append(f"book {book.path}: the night's budget allowed only part of it ({read:,} tokens)")


def replay_examples(tokenizer: Tokenizer, store: Store, day: Day, settings: Settings, block_size: int,
                    seed: int) -> list[Example]:
    """Older days (newest first) for up to half the budget, then random starter conversations."""
    budget = settings.night.replay.tokens
    out: list[Example] = []
    used = 0
    older = [d for d in store.days() if d.closed_at is not None and d.id != day.id and d.number < day.number
             and d.in_weights and not is_probe_day(d.number)]
    for old in reversed(older):
        if used >= budget // 2:
            break
        for ex in day_examples(tokenizer, store, old, settings, block_size, source="replay"):
            out.append(ex)
            used += len(ex)
    docs = starter_docs(False, settings.day.greeting, settings.day.goodnight)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    weight = settings.night.replay.weight
    for i in order:
        if used >= budget:
            break
        turns = list(docs[i])
        for ex in transcript_examples(tokenizer, turns, [weight] * len(turns), block_size, "replay"):
            out.append(ex)
            used += len(ex)
    return out


def cap(items: Sequence[Item], budget: int) -> list[Item]:
    """The first items that fit in `budget` tokens (the first is kept even when it alone is larger)."""
    out, used = [], 0
    for item in items:
        if out and used + len(item) > budget:
            break
        out.append(item)
        used += len(item)
    return out


def draw(items: Sequence[Item], budget: int, rng: random.Random, passes: int) -> list[Item]:
    """Items repeated (each pass reshuffled) until `budget` tokens, at most `passes` passes."""
    if not items or budget <= 0:
        return []
    out: list[Item] = []
    used = 0
    for _ in range(passes):
        order = list(items)
        rng.shuffle(order)
        for item in order:
            if used + len(item) > budget and out:
                return out
            out.append(item)
            used += len(item)
    return out


def plan_steps(material: Material, settings: Settings, seed: int) -> list[list[Item]]:
    """Everything drawn, shuffled, packed into steps of about `night.batch_tokens` tokens."""
    rng = random.Random(seed)
    drawn: list[Item] = []
    for source in SOURCES:
        drawn += draw(material.items[source], getattr(settings.night, source).tokens, rng, PASSES[source])
    rng.shuffle(drawn)
    steps: list[list[Item]] = []
    batch: list[Item] = []
    used = 0
    for item in drawn:
        if batch and used + len(item) > settings.night.batch_tokens:
            steps.append(batch)
            batch, used = [], 0
        batch.append(item)
        used += len(item)
    if batch:
        steps.append(batch)
    wanted = settings.night.steps
    if wanted <= 0:
        return steps[:MAX_AUTO_STEPS]
    if not steps:
        return []
    return [steps[i % len(steps)] for i in range(wanted)]


def drawn_tokens(steps: Sequence[Sequence[Item]]) -> dict[str, int]:
    """How many tokens of each source the planned steps hold (for the morning report)."""
    out = {s: 0 for s in SOURCES}
    for batch in steps:
        for item in batch:
            out[item.source if isinstance(item, Example) else "preferences"] += len(item)
    return out


def step_loss(model: Transformer, batch: Sequence[Item], settings: Settings) -> torch.Tensor:
    """The step's loss: weighted next-token loss (normalised by the number of taught tokens, so a
    source's weight scales its pull) plus the preference losses at the preferences' weight."""
    device = next(model.parameters()).device
    examples = [x for x in batch if isinstance(x, Example)]
    pairs = [x for x in batch if isinstance(x, Pair)]
    unpaired = [x for x in batch if isinstance(x, Unpaired)]
    loss = torch.zeros((), device=device)
    if examples:
        loss = loss + score(model, [x.inputs for x in examples], [x.targets for x in examples],
                            [x.weights for x in examples]).loss()
    weight, beta = settings.night.preferences.weight, settings.night.dpo_beta
    if pairs:
        loss = loss + weight * dpo_loss(model, pairs, beta)
    if unpaired:
        loss = loss + weight * kto_loss(model, unpaired, beta)
    return loss


def preference_items(prefs: Preferences, settings: Settings) -> list[Item]:
    """Pairs and unpaired examples, cut to the preferences' budget (pairs first: they are explicit)."""
    if not _on(settings, "preferences"):
        return []
    return cap([*prefs.pairs, *prefs.unpaired], settings.night.preferences.tokens)


def gather(home: Home, store: Store, tokenizer: Tokenizer, day: Day, settings: Settings, block_size: int,
           prefs: Preferences, dreams: Sequence[tuple[str, list[bool | None]]], seed: int) -> Material:
    """Every source's items, each cut to its budget."""
    material = Material()
    if _on(settings, "day"):
        if is_probe_day(day.number):
            material.notes.append(f"day {day.number} is a probe day: its transcript is held out of training "
                                  "to measure the nights; its choices are still learned as preferences")
        else:
            material.items["day"] = cap(day_examples(tokenizer, store, day, settings, block_size),
                                        settings.night.day.tokens)
    if _on(settings, "dreams"):
        material.items["dreams"] = cap(dream_examples(tokenizer, settings, dreams, block_size),
                                       settings.night.dreams.tokens)
    material.items["preferences"] = preference_items(prefs, settings)
    if _on(settings, "books"):
        book_examples(home, store, tokenizer, settings, block_size, material)
    if _on(settings, "replay"):
        material.items["replay"] = replay_examples(tokenizer, store, day, settings, block_size, seed)
    return material


def mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
