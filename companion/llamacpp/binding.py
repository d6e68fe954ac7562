"""llama.cpp's C API through the `llama-cpp-py-sync` wheel's CFFI handle: load a GGUF, make a context
whose sequences share one key/value cache, decode a batch, read a row of logits.

Why the C API and not the wheel's `Llama` class: that class exposes no logits (it samples inside
llama.cpp, by llama.cpp's rules) and cannot make a unified cache, which K candidates sharing one
reading of the day need. llama.cpp's log goes nowhere (the app owns the terminal); its last error
lines are kept for the messages raised here.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["LlamaUnavailable", "LlamaError", "LlamaContext", "load_library", "unavailable"]

INSTALL = "pip install llama-cpp-py-sync, or the checkout's extra: pip install '.[llamacpp]'"


class LlamaUnavailable(RuntimeError):
    """llama.cpp cannot run here: the wheel is not installed, or its library would not load."""


class LlamaError(RuntimeError):
    """llama.cpp refused a file or a step (the message names which, with llama.cpp's own last error)."""


_lock = threading.Lock()
_library: tuple | None = None
_errors: deque[str] = deque(maxlen=4)
_log_callback = None  # kept alive as long as llama.cpp may call it


def _first_line(exc: BaseException, limit: int = 240) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_library():
    """`(lib, ffi)` of llama.cpp, loaded once, its log silenced; `LlamaUnavailable` saying why not."""
    global _library, _log_callback
    with _lock:
        if _library is not None:
            return _library
        try:
            from llama_cpp_py_sync._cffi_bindings import get_ffi, get_lib
        except ImportError:
            raise LlamaUnavailable(f"llama-cpp-py-sync is not installed ({INSTALL})") from None
        try:
            lib, ffi = get_lib(), get_ffi()
        except (RuntimeError, OSError) as exc:
            raise LlamaUnavailable(
                f"llama.cpp's library would not load ({_first_line(exc)}); on glibc older than 2.38 see "
                "the README, 'Generating on llama.cpp'") from None

        @ffi.callback("void(enum ggml_log_level, const char *, void *)")
        def _log(level, text, _data):
            if level == 4 and text != ffi.NULL:  # GGML_LOG_LEVEL_ERROR
                _errors.append(ffi.string(text).decode("utf-8", "replace").strip())

        _log_callback = _log
        lib.llama_log_set(_log, ffi.NULL)
        lib.llama_backend_init()
        _library = (lib, ffi)
        return _library


def unavailable() -> str | None:
    """Why llama.cpp cannot run here, or None when it can."""
    try:
        load_library()
    except LlamaUnavailable as exc:
        return str(exc)
    return None


def _last_error() -> str:
    return f": {_errors[-1]}" if _errors else ""


class LlamaContext:
    """One GGUF model in llama.cpp and one context on it: `n_seq` sequences sharing `n_ctx` cache cells
    (a unified cache, so a sequence copied from another shares its cells instead of copying them)."""

    def __init__(self, path: str | Path, n_ctx: int, n_batch: int, n_seq: int, threads: int) -> None:
        self.lib, self.ffi = load_library()
        self.path, self.n_batch, self.n_seq, self.threads = Path(path), n_batch, n_seq, threads
        self._ctx = None
        params = self.lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self._model = self.lib.llama_model_load_from_file(str(self.path).encode("utf-8"), params)
        if self._model == self.ffi.NULL:
            self._model = None
            raise LlamaError(f"{self.path}: llama.cpp could not load it{_last_error()}")
        self.n_vocab = int(self.lib.llama_vocab_n_tokens(self.lib.llama_model_get_vocab(self._model)))
        self.resize(n_ctx)

    def resize(self, n_ctx: int) -> None:
        """A fresh context with room for `n_ctx` cells (what every sequence held is gone)."""
        if self._ctx is not None:
            self.lib.llama_free(self._ctx)
            self._ctx = None
        p = self.lib.llama_context_default_params()
        self.batch = min(self.n_batch, n_ctx)  # llama.cpp cuts n_batch to n_ctx, and aborts on a longer batch
        p.n_ctx, p.n_batch, p.n_ubatch, p.n_seq_max = n_ctx, self.batch, min(self.batch, 512), self.n_seq
        p.n_threads = p.n_threads_batch = self.threads
        p.kv_unified = True
        p.flash_attn_type = 0  # off, as measured (bench/speed.py); the logits match ours more closely
        p.embeddings = False
        p.no_perf = True
        ctx = self.lib.llama_init_from_model(self._model, p)
        if ctx == self.ffi.NULL:
            raise LlamaError(f"{self.path}: llama.cpp could not make a context of {n_ctx} cells{_last_error()}")
        self._ctx = ctx
        self.n_ctx = int(self.lib.llama_n_ctx(ctx))

    def set_threads(self, n: int) -> None:
        if n != self.threads:
            self.threads = n
            self.lib.llama_set_n_threads(self._ctx, n, n)

    def decode(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], logits: Sequence[bool]) -> None:
        """Token i at `positions[i]` in sequence `seqs[i]`, its logits kept when `logits[i]`: one batch, or
        several in order when they are more than a batch holds (llama.cpp would abort the process)."""
        for at in range(0, len(tokens), self.batch):
            end = at + self.batch
            self._decode(tokens[at:end], positions[at:end], seqs[at:end], logits[at:end])

    def _decode(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], logits: Sequence[bool]) -> None:
        batch = self.lib.llama_batch_init(len(tokens), 0, 1)
        try:
            batch.n_tokens = len(tokens)
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = positions[i]
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seqs[i]
                batch.logits[i] = 1 if logits[i] else 0
            rc = self.lib.llama_decode(self._ctx, batch)
        finally:
            self.lib.llama_batch_free(batch)
        if rc != 0:
            raise LlamaError(f"{self.path}: llama_decode failed with code {rc}{_last_error()}")

    def logits(self, i: int) -> np.ndarray:
        """The logits of the last batch's token `i` (one whose logits were kept; -1: the last), a copy."""
        ptr = self.lib.llama_get_logits_ith(self._ctx, i)
        if ptr == self.ffi.NULL:
            raise LlamaError(f"{self.path}: no logits for batch position {i}{_last_error()}")
        return np.frombuffer(self.ffi.buffer(ptr, 4 * self.n_vocab), dtype=np.float32).copy()

    def forget(self, seq: int, start: int = 0) -> None:
        """Drop sequence `seq`'s cells from position `start` on (-1 for `seq`: every sequence)."""
        self.lib.llama_memory_seq_rm(self.lib.llama_get_memory(self._ctx), seq, start, -1)

    def share(self, src: int, dst: int) -> None:
        """Sequence `dst` sees everything `src` holds (the same cells; nothing is copied)."""
        self.lib.llama_memory_seq_cp(self.lib.llama_get_memory(self._ctx), src, dst, -1, -1)

    def close(self) -> None:
        if self._ctx is not None:
            self.lib.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            self.lib.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
