"""The engine: the companion's tokenizer and loaded weights on a device, and the one door to them.

Everything that runs the model during the day goes through `Engine.generate`, which holds
`Engine.lock` while it works, so two generations never share the day's cache at once. A night never
touches the engine: the trainer thread trains its own copy of the weights, and the app reloads the
engine in the morning.

The day's context only grows, so the engine keeps the key/value cache of the last prompt it read
(one row) and, for the next prompt, reads only the tokens past the longest prefix they share.
A new turn therefore costs its own tokens, not the whole day again; "more candidates" for the
same prompt costs nothing to read. What to sample comes decided, as one `SampleRequest` (the day's,
or the night's recall check): the engine only runs it, through `model.sampling`'s one loop (one
seeded generator per slot), so a request is reproducible and a later round uses new slots.
Weights that are not the engine's (the night's copy) run a request with `sample`, the same path
without the day's cache.

This module imports torch; the app imports it lazily, in a thread worker, after the first screen
has painted.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from companion.compute.threads import generation_claim, generation_threads
from companion.day.request import SampleRequest
from companion.home import Home
from companion.store import Store
from companion.transcript import reply_prompt
from companion.history.weights import Loaded, Weights
from companion.model.sampling import prefill, sample_from_cache
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import KVCache, Transformer

__all__ = ["Engine", "Generated", "EngineError", "sample"]


class EngineError(RuntimeError):
    """The model cannot do what was asked (no weights, a prompt that fills the block)."""


@dataclass
class Generated:
    """One sampled continuation: its text, why it ended ('end', 'length', 'stopped'), its tokens."""

    text: str
    finish: str
    tokens: list[int] = field(default_factory=list)


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    from companion.night.optimizer import best_device

    return best_device()


class Engine:
    """The tokenizer and the current weights, loaded on a device, behind one lock."""

    def __init__(self, home: Home, store: Store, tokenizer: Tokenizer, loaded: Loaded, device: torch.device,
                 threads: int = 0, int8: bool = False) -> None:
        self.home, self.store = home, store
        self.tokenizer = tokenizer
        self.device = device
        self.threads = threads  # `[engine] threads`: 0 = the measured default (companion.compute.threads)
        self.int8 = int8  # `[engine] int8`: generate with an int8 copy of the weights (model.quantize.int8)
        self.lock = threading.RLock()  # re-entrant: reload() may be called by a holder
        self._set_loaded(loaded)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, home: Home, store: Store, device: str | torch.device | None = None,
             threads: int | None = None, int8: bool | None = None) -> "Engine":
        """Read the tokenizer and the current checkpoint (falling back to an older one, with notes).
        `threads` and `int8` default to the companion's `[engine]` settings."""
        dev = _pick_device(device)
        if threads is None or int8 is None:
            from companion.settings import EngineSettings, SettingsError

            try:
                engine_settings = home.load_settings().engine
            except (SettingsError, OSError):  # the app reports bad settings itself; run on the defaults
                engine_settings = EngineSettings()
            threads = engine_settings.threads if threads is None else threads
            int8 = engine_settings.int8 if int8 is None else int8
        loaded = Weights(home, store).load_current(dev)
        tokenizer = loaded.tokenizer()  # the one these weights were saved with (a growth may add tokens)
        if loaded.model.config.vocab_size < tokenizer.vocab_size:
            raise EngineError(
                f"the weights know {loaded.model.config.vocab_size} tokens but the tokenizer has "
                f"{tokenizer.vocab_size}: they do not belong together"
            )
        return cls(home, store, tokenizer, loaded, dev, threads, int8)

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
        self.decoder: Transformer = self._decoder()
        self._decoder_int8 = self.int8
        self.forget_context()

    def _decoder(self) -> Transformer:
        """What generation runs: the weights themselves, or their int8 copy when `int8` is on and
        possible here (else a note says why not, and fp32 it is)."""
        if not self.int8:
            return self.model
        from companion.model.quantize.int8 import Int8Unavailable, int8_decoder

        try:
            return int8_decoder(self.model)
        except Int8Unavailable as exc:
            self.notes.append(f"int8 generation is off: {exc}")
            return self.model

    def use_int8(self, on: bool) -> None:
        """Switch int8 generation on or off (the settings screen's save). Cheap and safe from the UI
        thread: the copy is built (or dropped) by the next generation, under the lock."""
        self.int8 = on

    @property
    def checkpoint_id(self) -> int:
        return self.checkpoint.id

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    def stop_ids(self) -> set[int]:
        """Tokens that end a turn: the end mark, or any role token (a new turn beginning)."""
        return set(self.tokenizer.stop_ids)

    def _claim(self) -> AbstractContextManager[object]:
        """For each job: this OS thread's torch count (the setting, within what a night leaves), held
        as a claim so that a night's next step leaves these cores to it."""
        if self.device.type != "cpu":
            return nullcontext()
        return generation_claim(generation_threads(self.threads))

    def _prepare(self) -> None:
        """Before each job, under the lock: the decoder the `int8` setting asks for (the day read
        afresh if it changed)."""
        if self.int8 != self._decoder_int8:
            self.decoder = self._decoder()
            self._decoder_int8 = self.int8
            self.forget_context()

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
            self._cache = KVCache.empty(self.model.config, 1, p.device, p.dtype)  # the decoder's too
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
        logits, _ = self.decoder(new, cache=self._cache, last_only=True)
        self._cached_ids = prompt
        self._last_logits = logits[:, -1, :]
        return self._cache, self._last_logits

    # -- generating -------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        request: SampleRequest,
        on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Generated]:
        """Run `request` on the day's weights, reading only what the day added since the last call
        (see `sample` for what streams and how stopping works)."""
        with self.lock, self._claim():
            self._prepare()  # the int8 copy when it is asked for
            self.model.eval()
            return sample(self.decoder, self.tokenizer, request, on_text=on_text, should_stop=should_stop,
                          read=self._read)

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
        with self.lock, self._claim():
            self._prepare()
            _, last = self._read(ids)
            roles = {r: self.tokenizer.role_ids[r] for r in ("owner", "companion", "inner")}
            scores = {r: float(last[0, i]) for r, i in roles.items()}
        return max(scores, key=scores.get)


@torch.no_grad()
def sample(
    model: Transformer,
    tokenizer: Tokenizer,
    request: SampleRequest,
    *,
    on_text: Callable[[int, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    read: Callable[[list[int]], tuple[KVCache, torch.Tensor]] | None = None,
) -> list[Generated]:
    """Sample `request.k` continuations of the request's context in its role, in one batch.

    `request.context_ids` are the day's tokens (the formatter's), without the role token: it is added
    here. `on_text(row, text_so_far)` is called with the row's whole text decoded afresh at every
    token, so a character made of several tokens never shows half-made. `should_stop()` is polled
    between steps; stopping keeps what each row has so far (finish 'stopped'). `read(prompt)` gives
    the prompt's cache and last logits (the engine's cached day); by default the prompt is read whole.
    The model is left in eval mode.
    """
    prompt = reply_prompt(tokenizer, list(request.context_ids), request.role)
    block_size = model.config.block_size
    if len(prompt) >= block_size:
        raise EngineError(f"the day ({len(prompt)} tokens) fills the model's block ({block_size})")
    model.eval()
    base, last = (read or (lambda ids: prefill(model, ids)))(prompt)
    rows: list[list[int]] = [[] for _ in range(request.k)]

    def on_token(row: int, token: int) -> None:
        rows[row].append(token)
        if on_text is not None:
            on_text(row, tokenizer.decode(rows[row]))

    results = sample_from_cache(model, base, last, prompt, request.k, request.sampling, set(tokenizer.stop_ids),
                                tokenizer.special_ids, list(request.slots), on_token, should_stop)
    return [Generated(tokenizer.decode(r.tokens), r.finish, r.tokens) for r in results]
