"""The engine: the companion's tokenizer and loaded weights on a device, and the one door to them.

Everything that runs the model during the day goes through `Engine.generate`, which holds
`Engine.lock` while it works, so two generations never share the day's cache at once. A night never
touches the engine: the trainer thread trains its own copy of the weights, and the app reloads the
engine in the morning.

The day's context only grows, so the engine keeps the key/value cache of the last prompt it read
(one row) and, for the next prompt, reads only the tokens past the longest prefix they share.
A new turn therefore costs its own tokens, not the whole day again; "more candidates" for the
same prompt costs nothing to read. Candidates are sampled by `model.sampling`'s one loop
(one seeded generator per slot), so a batch is reproducible and a later round uses new slots.

This module imports torch; the app imports it lazily, in a thread worker, after the first screen
has painted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from companion.home import Home
from companion.store import Store
from companion.transcript import reply_prompt
from companion.weights import Loaded, Weights
from model.sampling import SamplingSettings, sample_from_cache
from model.tokenizer import Tokenizer
from model.transformer import KVCache, Transformer

__all__ = ["Engine", "Generated", "EngineError", "sampling_from_settings"]


class EngineError(RuntimeError):
    """The model cannot do what was asked (no weights, a prompt that fills the block)."""


@dataclass
class Generated:
    """One sampled continuation: its text, why it ended ('end', 'length', 'stopped'), its tokens."""

    text: str
    finish: str
    tokens: list[int] = field(default_factory=list)

    def __iter__(self):  # `text, finish = generated` reads naturally at call sites
        return iter((self.text, self.finish))


def sampling_from_settings(sampling, max_new_tokens: int | None = None) -> SamplingSettings:
    """The model's sampling settings from the companion's `[sampling]` section."""
    return SamplingSettings(
        temperature=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        repetition_penalty=sampling.repetition_penalty,
        max_new_tokens=max_new_tokens if max_new_tokens is not None else sampling.max_reply_tokens,
        seed=sampling.seed,
    )


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    from companion.training import best_device

    return best_device()


class Engine:
    """The tokenizer and the current weights, loaded on a device, behind one lock."""

    def __init__(self, home: Home, store: Store, tokenizer: Tokenizer, loaded: Loaded, device: torch.device) -> None:
        self.home, self.store = home, store
        self.tokenizer = tokenizer
        self.device = device
        self.lock = threading.RLock()  # re-entrant: reload() may be called by a holder
        self._set_loaded(loaded)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, home: Home, store: Store, device: str | torch.device | None = None) -> "Engine":
        """Read the tokenizer and the current checkpoint (falling back to an older one, with notes)."""
        dev = _pick_device(device)
        loaded = Weights(home, store).load_current(dev)
        tokenizer = loaded.tokenizer()  # the one these weights were saved with (a growth may add tokens)
        if loaded.model.config.vocab_size < tokenizer.vocab_size:
            raise EngineError(
                f"the weights know {loaded.model.config.vocab_size} tokens but the tokenizer has "
                f"{tokenizer.vocab_size}: they do not belong together"
            )
        return cls(home, store, tokenizer, loaded, dev)

    def reload(self) -> list[str]:
        """Re-read the current checkpoint (after a night or a restore) without restarting the app."""
        with self.lock:
            loaded = Weights(self.home, self.store).load_current(self.device)
            tokenizer = loaded.tokenizer()
            self.tokenizer = tokenizer
            self._set_loaded(loaded)
            return list(loaded.notes)

    def _set_loaded(self, loaded: Loaded) -> None:
        self.model: Transformer = loaded.model.eval()
        self.meta = loaded.meta
        self.checkpoint = loaded.checkpoint
        self.notes = list(loaded.notes)
        self.forget_context()

    @property
    def checkpoint_id(self) -> int:
        return self.checkpoint.id

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    def stop_ids(self) -> set[int]:
        """Tokens that end a turn: the end mark, or any role token (a new turn beginning)."""
        return set(self.tokenizer.stop_ids)

    # -- the day's cache --------------------------------------------------------------------------

    def forget_context(self) -> None:
        """Drop the cached reading of the day (new weights, or a new day)."""
        self._cached_ids: list[int] = []
        self._cache: KVCache | None = None
        self._last_logits: torch.Tensor | None = None

    @torch.no_grad()
    def _read(self, prompt: Sequence[int]) -> tuple[KVCache, torch.Tensor]:
        """A one-row cache holding `prompt` and the logits after its last token.

        Only the part of the prompt past the longest prefix shared with the previous prompt is
        run through the model; at least one token is always run, for its logits.
        """
        prompt = list(prompt)
        if self._cache is None:
            p = next(self.model.parameters())
            self._cache = KVCache.empty(self.model.config, 1, p.device, p.dtype)
            self._cached_ids = []
        shared = 0
        for a, b in zip(self._cached_ids, prompt):
            if a != b:
                break
            shared += 1
        if shared == len(prompt) == len(self._cached_ids) and self._last_logits is not None:
            return self._cache, self._last_logits
        shared = min(shared, len(prompt) - 1)
        self._cache.length = shared  # positions past `shared` are stale and will be overwritten
        new = torch.tensor([prompt[shared:]], device=self.device)
        logits, _ = self.model(new, cache=self._cache)
        self._cached_ids = prompt
        self._last_logits = logits[:, -1, :]
        return self._cache, self._last_logits

    # -- generating -------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        context_ids: Sequence[int],
        k: int,
        settings: SamplingSettings,
        slots: Sequence[int] | None = None,
        on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        role: str = "companion",
    ) -> list[Generated]:
        """Sample `k` continuations of the day in the given role, in one batch.

        `context_ids` are the day's tokens (the formatter's), without the role token: it is added
        here. `on_text(row, text_so_far)` is called with the row's whole text decoded afresh at
        every token, so a character made of several tokens never shows half-made. `should_stop()`
        is polled between steps; stopping keeps what each row has so far (finish 'stopped').
        """
        if k < 1:
            raise EngineError("k must be at least 1")
        prompt = reply_prompt(self.tokenizer, list(context_ids), role)
        room = self.block_size - len(prompt)
        if room <= 0:
            raise EngineError(f"the day ({len(prompt)} tokens) fills the model's block ({self.block_size})")
        slots = list(range(k)) if slots is None else list(slots)
        if len(slots) != k:
            raise EngineError(f"{k} candidates but {len(slots)} slots")
        stop_ids = self.stop_ids()
        with self.lock:
            self.model.eval()
            base, last = self._read(prompt)
            rows: list[list[int]] = [[] for _ in range(k)]

            def on_token(row: int, token: int) -> None:
                rows[row].append(token)
                if on_text is not None:
                    on_text(row, self.tokenizer.decode(rows[row]))

            results = sample_from_cache(self.model, base, last, prompt, k, settings, stop_ids,
                                        self.tokenizer.special_ids, slots, on_token, should_stop)
        return [Generated(self.tokenizer.decode(r.tokens), r.finish, r.tokens) for r in results]

    @torch.no_grad()
    def next_speaker(self, context_ids: Sequence[int]) -> str:
        """Which role the model expects to speak next after the day so far ('owner', 'companion'
        or 'inner'): the most likely of the role tokens at the next position.

        The day uses it after the companion's reply: when the model would rather go on in its
        inner voice than hand the word back to the owner, it is given that inner line.
        """
        ids = list(context_ids)
        if not ids:
            return "owner"
        with self.lock:
            _, last = self._read(ids)
            roles = {r: self.tokenizer.role_ids[r] for r in ("owner", "companion", "inner")}
            scores = {r: float(last[0, i]) for r, i in roles.items()}
        return max(scores, key=scores.get)
