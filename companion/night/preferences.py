"""The owner's preferences as training signal: DPO pairs and KTO examples, read from the store.

* **Pairs (DPO).** Every reply the owner let into the day (a pick, a correction, a reply they wrote) is
  preferred over each candidate they passed over for the same prompt; a corrected candidate is itself
  passed over by its correction. DPO (Rafailov et al., 2023) pushes the log-ratio to the pre-night
  weights up for the chosen reply and down for the rejected one. The reference log-probabilities are
  computed once, with the pre-night weights, before training starts, so only one model is in memory.
* **Unpaired examples (KTO).** A star rating or an annotation judges one reply on its own: 3-4 stars,
  or the tags keep / insightful, are desirable; 1-2 stars, or the tag off, undesirable; no rating says
  nothing. KTO (Ethayarajh et al., 2024) is built for exactly this signal: it needs no pair, only a
  label, and it compares each reply's log-ratio with a reference point z0. We estimate z0 as the
  batch's mean log-ratio clipped at 0 and detached (the paper's KL estimate, taken on the batch's own
  examples rather than on mismatched pairs: with a handful of examples a night there are too few to
  mismatch). Desirable and undesirable examples weigh the same (lambda_D = lambda_U = 1).

Every reply is given in its context: the day's transcript up to where the reply was written, cut from
the left when reply and context would not fit in the block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from companion.night.guards import check_stop
from companion.store import Store
from companion.transcript import Turn, encode_turn, parse_text
from companion.model import loss as losses
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import Transformer

GOOD_TAGS = frozenset({"keep", "insightful"})
BAD_TAGS = frozenset({"off"})


@dataclass
class ScoredReply:
    """A reply in its context, ready for `sequence_logprobs`: targets are -100 on the context."""

    inputs: list[int]
    targets: list[int]
    kind: str  # "pick" | "correction" | "written" | "candidate" | "turn" | "dream"
    text: str

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Pair:
    chosen: ScoredReply
    rejected: ScoredReply
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0

    def __len__(self) -> int:
        return len(self.chosen) + len(self.rejected)


@dataclass
class Unpaired:
    reply: ScoredReply
    desirable: bool
    ref: float = 0.0

    def __len__(self) -> int:
        return len(self.reply)


@dataclass
class Preferences:
    pairs: list[Pair] = field(default_factory=list)
    unpaired: list[Unpaired] = field(default_factory=list)
    taught: list[ScoredReply] = field(default_factory=list)  # the chosen, corrected and written replies


def reply_in_context(tokenizer: Tokenizer, context: Sequence[int], role: str, text: str, block_size: int,
                     kind: str) -> ScoredReply | None:
    """The reply's tokens after its context (cut from the left to fit); None if the reply alone is too long."""
    reply = encode_turn(tokenizer, Turn(role, text))  # role token, text, end: the one format
    room = block_size + 1 - len(reply)
    if room < 1:
        return None
    context = list(context)[-room:] if room < len(context) else list(context)
    if not context:  # the role token needs something before it to be predicted from
        context = [tokenizer.end_id]
    ids = context + reply
    targets = [-100] * len(context) + reply[1:]
    return ScoredReply(ids[:-1], targets, kind, text)


class _Day:
    """A day's turns, with the tokens of the transcript before any turn at hand."""

    def __init__(self, tokenizer: Tokenizer, store: Store, day_id: int) -> None:
        self.turns = store.turns(day_id)
        self.index = {t.id: i for i, t in enumerate(self.turns)}
        self.prefix: list[int] = [0]
        self.ids: list[int] = []
        for t in self.turns:
            self.ids += encode_turn(tokenizer, Turn(t.role, t.text))
            self.prefix.append(len(self.ids))

    def before(self, position: int) -> list[int]:
        return self.ids[: self.prefix[position]]


def _context_position(day: _Day, store: Store, prompt_turn_id: int | None) -> int | None:
    """Where the replies to a prompt were written: just before the chosen reply when there is one,
    else just after the prompt turn."""
    if prompt_turn_id is None or prompt_turn_id not in day.index:
        return None
    for choice in store.choices(prompt_turn_id=prompt_turn_id):
        if choice.turn_id in day.index:
            return day.index[choice.turn_id]
    return day.index[prompt_turn_id] + 1


def _verdict(tags: Sequence[str]) -> bool | None:
    tags = set(tags)
    if tags & BAD_TAGS:
        return False
    if tags & GOOD_TAGS:
        return True
    return None


def collect_preferences(tokenizer: Tokenizer, store: Store, day_id: int, block_size: int,
                        dream_ids: Sequence[int] = ()) -> Preferences:
    """Pairs from the day's choices, unpaired examples from its ratings and annotations (of its turns
    and of the lines of the dreams `dream_ids`)."""
    day = _Day(tokenizer, store, day_id)
    prefs = Preferences()
    for choice in store.choices(day_id):
        if choice.turn_id not in day.index:
            continue
        position = day.index[choice.turn_id]
        turn = day.turns[position]
        chosen = reply_in_context(tokenizer, day.before(position), turn.role, turn.text, block_size, choice.kind)
        if chosen is None:
            continue
        prefs.taught.append(chosen)
        if choice.prompt_turn_id is None:
            continue
        seen = {turn.text}
        for cand in store.candidates(prompt_turn_id=choice.prompt_turn_id):
            if cand.role != turn.role or cand.text in seen:
                continue
            if choice.kind == "pick" and cand.id == choice.candidate_id:
                continue
            seen.add(cand.text)
            rejected = reply_in_context(tokenizer, day.before(position), cand.role, cand.text, block_size, "candidate")
            if rejected is not None:
                prefs.pairs.append(Pair(chosen, rejected))

    for cand_id, stars in store.ratings(day_id).items():
        cand = store.get_candidate(cand_id)
        position = _context_position(day, store, cand.prompt_turn_id) if cand else None
        if cand is None or position is None:
            continue
        reply = reply_in_context(tokenizer, day.before(position), cand.role, cand.text, block_size, "candidate")
        if reply is not None:
            prefs.unpaired.append(Unpaired(reply, stars >= 3))

    for note in store.annotations(day_id):
        if note.turn_id is None or note.turn_id not in day.index:
            continue
        verdict = _verdict(note.tags)
        if verdict is None:
            continue
        position = day.index[note.turn_id]
        turn = day.turns[position]
        reply = reply_in_context(tokenizer, day.before(position), turn.role, turn.text, block_size, "turn")
        if reply is not None:
            prefs.unpaired.append(Unpaired(reply, verdict))

    for dream_id, lines, verdicts in dream_verdicts(store, dream_ids):
        context: list[int] = []
        for line, verdict in zip(lines, verdicts):
            if verdict is not None:
                reply = reply_in_context(tokenizer, context, line.role, line.text, block_size, "dream")
                if reply is not None:
                    prefs.unpaired.append(Unpaired(reply, verdict))
            context += encode_turn(tokenizer, line)
    return prefs


def dream_verdicts(store: Store, dream_ids: Sequence[int]) -> list[tuple[int, list[Turn], list[bool | None]]]:
    """Each dream's lines and the owner's verdict on each (None: not judged)."""
    wanted = set(dream_ids)
    out = []
    for dream in store.dreams():
        if dream.id not in wanted:
            continue
        lines = parse_text(dream.text)
        verdicts = []
        for i in range(len(lines)):
            note = store.annotation(dream_id=dream.id, line_index=i)
            verdicts.append(_verdict(note.tags) if note is not None else None)
        out.append((dream.id, lines, verdicts))
    return out


def logprobs(model: Transformer, replies: Sequence[ScoredReply]) -> torch.Tensor:
    """Summed log-probability of each reply given its context (with gradients when enabled)."""
    return losses.score(model, [r.inputs for r in replies], [r.targets for r in replies]).row_logprobs()


@torch.no_grad()
def score(model: Transformer, replies: Sequence[ScoredReply], batch_size: int = 8,
          should_stop: Callable[[], bool] | None = None) -> list[float]:
    """Log-probabilities without gradients, in eval mode: the reference, and the night's before/after.
    Raises guards.Stopped between batches when `should_stop()`."""
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        for i in range(0, len(replies), batch_size):
            check_stop(should_stop)
            out += logprobs(model, replies[i : i + batch_size]).tolist()
    finally:
        model.train(was_training)
    return out


def set_references(model: Transformer, prefs: Preferences,
                   should_stop: Callable[[], bool] | None = None) -> dict[int, float]:
    """Fill in the reference log-probabilities with the (pre-night) `model`. Each distinct reply is
    scored once (a chosen reply is shared by all its pairs); returns {id(reply): log-prob}, which for
    the taught replies is also the night's "before"."""
    replies = [*prefs.taught, *(p.chosen for p in prefs.pairs), *(p.rejected for p in prefs.pairs),
               *(u.reply for u in prefs.unpaired)]
    unique = list({id(r): r for r in replies}.values())
    scores = dict(zip((id(r) for r in unique), score(model, unique, should_stop=should_stop)))
    for p in prefs.pairs:
        p.ref_chosen, p.ref_rejected = scores[id(p.chosen)], scores[id(p.rejected)]
    for u in prefs.unpaired:
        u.ref = scores[id(u.reply)]
    return scores


def dpo_loss(model: Transformer, pairs: Sequence[Pair], beta: float) -> torch.Tensor:
    """Mean DPO loss: -log sigmoid(beta * (chosen log-ratio - rejected log-ratio))."""
    pi = logprobs(model, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    pi_c, pi_r = pi[: len(pairs)], pi[len(pairs) :]
    ref_c = torch.tensor([p.ref_chosen for p in pairs], device=pi.device)
    ref_r = torch.tensor([p.ref_rejected for p in pairs], device=pi.device)
    return -F.logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).mean()


def kto_loss(model: Transformer, examples: Sequence[Unpaired], beta: float) -> torch.Tensor:
    """Mean KTO loss: 1 - sigmoid(beta * (r - z0)) for desirable replies, 1 - sigmoid(beta * (z0 - r))
    for undesirable ones, with r the log-ratio to the reference and z0 as the module docstring says."""
    pi = logprobs(model, [u.reply for u in examples])
    ref = torch.tensor([u.ref for u in examples], device=pi.device)
    ratio = pi - ref
    z0 = ratio.detach().mean().clamp_min(0.0)
    sign = torch.tensor([1.0 if u.desirable else -1.0 for u in examples], device=pi.device)
    return (1 - torch.sigmoid(beta * sign * (ratio - z0))).mean()
