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

With `[engine] backend = "llama.cpp"` (and the optional wheel installed) the logits come from llama.cpp
instead, on the GGUF export of the current checkpoint (`companion.llamacpp`): the same loop samples
them, so stop rules, penalty and seeds are unchanged. When llama.cpp cannot run (not installed, a
library that will not load, weights GGUF cannot carry), the engine generates with PyTorch and says
why once, in its notes.

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
from companion.model.sampling import Step, kept_prefix, prefill, sample_from_cache, sample_steps
from companion.model.tokenizer import Tokenizer
from companion.model.transformer import KVCache, Transformer

__all__ = ["Engine", "Generated", "EngineError", "sample", "BACKENDS"]

BACKENDS = ("torch", "llama.cpp")
"""What computes the day's logits (`[engine] backend`): our PyTorch model, or llama.cpp on its GGUF export."""


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
                 threads: int = 0, int8: bool = False, backend: str = "torch") -> None:
        self.home, self.store = home, store
        self.tokenizer = tokenizer
        self.device = device
        self.threads = threads  # `[engine] threads`: 0 = the measured default (companion.compute.threads)
        self.int8 = int8  # `[engine] int8`: generate with an int8 copy of the weights (model.quantize.int8)
        self.lock = threading.RLock()  # re-entrant: reload() may be called by a holder
        self.backend = backend  # `[engine] backend`: "torch" or "llama.cpp" (see BACKENDS)
        self._llama = None  # the llama.cpp runner for the current weights, when it runs here
        self._llama_off: str | None = None  # why llama.cpp does not run on the current weights
        self._told: set[str] = set()  # notes said once per engine
        self._news: list[str] = []  # notes not yet handed to the app
        self._set_loaded(loaded)
        self._news.clear()  # handed over as `notes` (the app shows them when the engine is ready)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, home: Home, store: Store, device: str | torch.device | None = None,
             threads: int | None = None, int8: bool | None = None, backend: str | None = None) -> "Engine":
        """Read the tokenizer and the current checkpoint (falling back to an older one, with notes).
        `threads`, `int8` and `backend` default to the companion's `[engine]` settings."""
        dev = _pick_device(device)
        if threads is None or int8 is None or backend is None:
            from companion.settings import EngineSettings, SettingsError

            try:
                engine_settings = home.load_settings().engine
            except (SettingsError, OSError):  # the app reports bad settings itself; run on the defaults
                engine_settings = EngineSettings()
            threads = engine_settings.threads if threads is None else threads
            int8 = engine_settings.int8 if int8 is None else int8
            backend = engine_settings.backend if backend is None else backend
        loaded = Weights(home, store).load_current(dev)
        tokenizer = loaded.tokenizer()  # the one these weights were saved with (a growth may add tokens)
        if loaded.model.config.vocab_size < tokenizer.vocab_size:
            raise EngineError(
                f"the weights know {loaded.model.config.vocab_size} tokens but the tokenizer has "
                f"{tokenizer.vocab_size}: they do not belong together"
            )
        return cls(home, store, tokenizer, loaded, dev, threads, int8, backend)

    def reload(self) -> list[str]:
        """Re-read the current checkpoint (after a night or a restore) without restarting the app."""
        with self.lock:
            loaded = Weights(self.home, self.store).load_current(self.device)
            tokenizer = loaded.tokenizer()
            self.tokenizer = tokenizer
            self._set_loaded(loaded)
            return list(loaded.notes) + self.take_notes()

    def _set_loaded(self, loaded: Loaded) -> None:
        self.model: Transformer = loaded.model.eval()
        self.meta = loaded.meta
        self.checkpoint = loaded.checkpoint
        self.notes = list(loaded.notes)
        self.decoder: Transformer = self._decoder()
        self._decoder_int8 = self.int8
        self.forget_context()
        self._drop_llama()
        self._llama_runner()  # new weights, a new export: made now (a morning), not at the first reply

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

    # -- llama.cpp ----------------------------------------------------------------------------------

    def use_backend(self, backend: str) -> None:
        """Choose what computes the day's logits (the settings screen's save): cheap and safe from the UI
        thread; the runner is made by `prepare_backend` or the next generation, under the lock."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        if backend != self.backend:
            self.backend = backend
            self._llama_off = None  # try again: it may have been installed since

    def prepare_backend(self) -> list[str]:
        """Make the llama.cpp runner now if the backend asks for one (export, load); the notes not yet
        said (why llama.cpp is off, once)."""
        with self.lock:
            self._llama_runner()
            return self.take_notes()

    def take_notes(self) -> list[str]:
        """Notes made since the last call (a fallback taken), each said once per engine."""
        news, self._news = self._news, []
        return news

    def _tell(self, note: str) -> None:
        if note not in self._told:
            self._told.add(note)
            self.notes.append(note)
            self._news.append(note)

    def _drop_llama(self) -> None:
        if self._llama is not None:
            self._llama.close()
        self._llama, self._llama_off = None, None

    def _llama_runner(self):
        """The llama.cpp runner for the current weights when the backend is llama.cpp and it can run:
        made on first need (the GGUF export cached in the home, then loaded); otherwise None, and the
        owner is told why once."""
        if self.backend != "llama.cpp":
            if self._llama is not None:
                self._drop_llama()
            return None
        if self._llama is not None or self._llama_off is not None:
            return self._llama
        from companion.llamacpp import LlamaError, LlamaUnavailable, runner_for
        from companion.model.interop import InteropError

        try:
            self._llama = runner_for(self.home, self.checkpoint, self.model, self.tokenizer,
                                     generation_threads(self.threads), self.home.name)
        except (LlamaUnavailable, LlamaError, InteropError, OSError) as exc:
            self._llama_off = str(exc)
            self._tell(f"llama.cpp generation is off ({exc}); generating with PyTorch")
        return self._llama

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
        """Before each job, under the lock (and its thread claim, `_claim`): llama.cpp's thread count
        when it generates, and the decoder the `int8` setting asks for (the day read afresh if it
        changed)."""
        runner = self._llama_runner()
        if runner is not None:
            runner.set_threads(torch.get_num_threads())  # the count `_claim` set for this job
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
        shared = kept_prefix(self._cached_ids, prompt)
        if shared is None and self._last_logits is not None:
            return self._cache, self._last_logits
        shared = len(prompt) - 1 if shared is None else shared  # the logits are gone: read the last again
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
            self._prepare()  # the int8 copy or the llama.cpp runner when asked for
            self.model.eval()
            if self._llama is not None:
                from companion.llamacpp import LlamaError

                try:
                    return sample(self.decoder, self.tokenizer, request, on_text=on_text, should_stop=should_stop,
                                  start=self._llama.start)
                except LlamaError as exc:  # a step llama.cpp refused: this reply, and the next, on PyTorch
                    self._llama.close()
                    self._llama, self._llama_off = None, str(exc)
                    self._tell(f"llama.cpp generation is off ({exc}); generating with PyTorch")
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
            last = self._llama.read(ids) if self._llama is not None else self._read(ids)[1]
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
    start: Callable[[list[int], int, int], tuple[torch.Tensor, Step]] | None = None,
) -> list[Generated]:
    """Sample `request.k` continuations of the request's context in its role, in one batch.

    `request.context_ids` are the day's tokens (the formatter's), without the role token: it is added
    here. `on_text(row, text_so_far)` is called with the row's whole text decoded afresh at every
    token, so a character made of several tokens never shows half-made. `should_stop()` is polled
    between steps; stopping keeps what each row has so far (finish 'stopped'). `read(prompt)` gives
    the prompt's cache and last logits (the engine's cached day); by default the prompt is read whole.
    `start(prompt, k, steps)` instead gives the prompt's last logits and the step that decodes the k rows
    elsewhere (llama.cpp): the same loop samples them. The model is left in eval mode.
    """
    prompt = reply_prompt(tokenizer, list(request.context_ids), request.role)
    block_size = model.config.block_size
    if len(prompt) >= block_size:
        raise EngineError(f"the day ({len(prompt)} tokens) fills the model's block ({block_size})")
    model.eval()
    rows: list[list[int]] = [[] for _ in range(request.k)]

    def on_token(row: int, token: int) -> None:
        rows[row].append(token)
        if on_text is not None:
            on_text(row, tokenizer.decode(rows[row]))

    stops, protected, slots = set(tokenizer.stop_ids), tokenizer.special_ids, list(request.slots)
    if start is not None:
        steps = min(request.sampling.max_new_tokens, block_size - len(prompt))
        last, step = start(prompt, request.k, steps)
        results = sample_steps(step, last, prompt, request.k, steps, request.sampling, stops, protected, slots,
                               on_token, should_stop)
    else:
        base, last = (read or (lambda ids: prefill(model, ids)))(prompt)
        results = sample_from_cache(model, base, last, prompt, request.k, request.sampling, stops, protected,
                                    slots, on_token, should_stop)
    return [Generated(tokenizer.decode(r.tokens), r.finish, r.tokens) for r in results]
