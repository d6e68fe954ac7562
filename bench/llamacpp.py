"""One small interface over the two Python bindings of llama.cpp the benches can use.

- `llama_cpp_py_sync` (PyPI `llama-cpp-py-sync`): a prebuilt CPU wheel with CFFI bindings; installs in
  seconds (`pip install '.[llamacpp]'`). Its high-level class exposes no logits, so logits and greedy
  decoding go through its CFFI handle (`llama_decode`, `llama_get_logits_ith`).
- `llama_cpp` (PyPI `llama-cpp-python`): builds llama.cpp from source (about 35 minutes on 2 cores).

Never imported by the app or by CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def available() -> str | None:
    """The binding that imports, preferring the prebuilt wheel; None when neither does."""
    for name in ("llama_cpp_py_sync", "llama_cpp"):
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return None


_QUIET = None


def _quiet_sync() -> None:
    """llama.cpp logs every tensor it loads to stderr even with verbose=False: keep errors only."""
    global _QUIET
    if _QUIET is None:
        from llama_cpp_py_sync import _cffi_bindings as b

        @b.ffi.callback("void(enum ggml_log_level, const char *, void *)")
        def _log(level, text, _data):
            if level == 4:  # GGML_LOG_LEVEL_ERROR
                print(b.ffi.string(text).decode("utf-8", "replace"), end="", flush=True)

        _QUIET = _log  # keep the callback alive
        b.get_lib().llama_log_set(_log, b.ffi.NULL)


class CppModel:
    """A GGUF file in llama.cpp: `logits(ids)` for every position, `greedy(ids, n)`, `tokenize(text, special)`."""

    def __init__(self, path: str | Path, n_ctx: int, threads: int, binding: str | None = None, n_seq: int = 1):
        self.binding = binding or available()
        if self.binding is None:
            raise ImportError("neither llama_cpp_py_sync nor llama_cpp is installed")
        self.n_seq = n_seq
        if self.binding == "llama_cpp_py_sync":
            from llama_cpp_py_sync import Llama

            _quiet_sync()

            self.llm = Llama(str(path), n_ctx=n_ctx * n_seq, n_batch=n_ctx, n_threads=threads, verbose=False,
                             n_seq_max=n_seq)
            self.n_vocab = self.llm.n_vocab
        else:
            import llama_cpp

            self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, logits_all=True, verbose=False)
            self.n_vocab = self.llm.n_vocab()

    # -- the prebuilt wheel: straight to llama.cpp's C API ------------------------------------------
    def _decode(self, tokens: list[int], n_past: int, all_logits: bool) -> None:
        lib, llm = self.llm._lib, self.llm
        batch = lib.llama_batch_init(len(tokens), 0, 1)
        try:
            batch.n_tokens = len(tokens)
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = n_past + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if all_logits or i == len(tokens) - 1 else 0
            rc = lib.llama_decode(llm._ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with code {rc}")
        finally:
            lib.llama_batch_free(batch)

    def _row(self, i: int) -> np.ndarray:
        ptr = self.llm._lib.llama_get_logits_ith(self.llm._ctx, i)
        return np.frombuffer(self.llm._ffi.buffer(ptr, 4 * self.n_vocab), dtype=np.float32).copy()

    def logits(self, ids: list[int]) -> np.ndarray:
        """[len(ids), vocab] logits of one forward pass over `ids` from an empty context."""
        if self.binding == "llama_cpp_py_sync":
            self.llm._clear_context_state()
            self._decode(ids, 0, all_logits=True)
            return np.stack([self._row(i) for i in range(len(ids))])
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, ids: list[int], n: int) -> list[int]:
        """`n` argmax tokens after `ids` (no stop tokens), one decode per new token as a chat would."""
        out: list[int] = []
        if self.binding == "llama_cpp_py_sync":
            self.llm._clear_context_state()
            self._decode(ids, 0, all_logits=False)
            pos = len(ids)
            for _ in range(n):
                tok = int(self._row(-1).argmax())
                out.append(tok)
                self._decode([tok], pos, all_logits=False)
                pos += 1
            return out
        self.llm.reset()
        self.llm.eval(ids)
        for _ in range(n):
            tok = int(np.asarray(self.llm.scores[self.llm.n_tokens - 1]).argmax())
            out.append(tok)
            self.llm.eval([tok])
        return out

    def greedy_rows(self, ids: list[int], n: int, rows: int, on_first=None) -> list[list[int]]:
        """`n` argmax tokens for each of `rows` parallel sequences sharing one reading of `ids` (as our
        K candidates do): the prompt is decoded once in sequence 0 and its cache copied to the others,
        then every step decodes one token per row in one batch. Prebuilt wheel only; `rows` <= n_seq.
        `on_first()` is called when the first new token is known (first-token latency)."""
        if self.binding != "llama_cpp_py_sync":
            raise NotImplementedError("parallel sequences are wired for the prebuilt wheel only")
        if rows > self.n_seq:
            raise ValueError(f"{rows} rows but the context was made for {self.n_seq} sequences")
        lib, llm = self.llm._lib, self.llm
        llm._clear_context_state()
        self._decode(ids, 0, all_logits=False)
        memory = lib.llama_get_memory(llm._ctx)
        for r in range(1, rows):
            lib.llama_memory_seq_cp(memory, 0, r, -1, -1)
        first = int(self._row(-1).argmax())
        if on_first is not None:
            on_first()
        out = [[first] for _ in range(rows)]
        pos = len(ids)
        batch = lib.llama_batch_init(rows, 0, 1)
        try:
            for _ in range(n - 1):
                batch.n_tokens = rows
                for r in range(rows):
                    batch.token[r] = out[r][-1]
                    batch.pos[r] = pos
                    batch.n_seq_id[r] = 1
                    batch.seq_id[r][0] = r
                    batch.logits[r] = 1
                rc = lib.llama_decode(llm._ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed with code {rc}")
                for r in range(rows):
                    out[r].append(int(self._row(r).argmax()))
                pos += 1
        finally:
            lib.llama_batch_free(batch)
        return out

    def tokenize(self, text: str, special: bool) -> list[int]:
        """llama.cpp's own tokenizer on the GGUF's vocabulary, never adding a BOS."""
        if self.binding == "llama_cpp_py_sync":
            return self.llm.tokenize(text, add_special=False, parse_special=special)
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
