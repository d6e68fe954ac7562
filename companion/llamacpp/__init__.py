"""The day's generation on llama.cpp (the `[engine] backend = "llama.cpp"` setting), when the optional
`llama-cpp-py-sync` wheel is installed (`pip install 'companion[llamacpp]'`).

llama.cpp only computes logits here: it runs the GGUF export of the current checkpoint (`gguf_cache`,
cached in the companion's home, keyed by the checkpoint), the day in one sequence and the K candidates
as parallel sequences sharing its cells (`runner`). Sampling stays `model.sampling`'s one loop, so the
stop rules, the repetition penalty and the seed of each candidate slot are ours; the engine
(`companion.engine`) stays the one place that runs a request. The night trains in PyTorch as always.
"""

from companion.llamacpp.binding import LlamaError, LlamaUnavailable, unavailable
from companion.llamacpp.gguf_cache import cached_gguf
from companion.llamacpp.runner import LlamaRunner, runner_for

__all__ = ["LlamaError", "LlamaUnavailable", "unavailable", "cached_gguf", "LlamaRunner", "runner_for"]
