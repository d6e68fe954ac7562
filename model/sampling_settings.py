"""The one type that says how tokens are sampled: temperature, cut-offs, penalty, length and seed.

It lives apart from the sampling loop (`model.sampling`, which needs torch) so that the day, the store
and the screens can build, record and show it without importing torch. The companion's `[sampling]`
section (`companion.settings`) is converted to it in one place (`companion.day.request`), and the store
records it as it is (its `max_new_tokens` is the candidates table's `max_tokens` column).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SamplingSettings"]


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.8
    top_k: int = 50  # 0: off
    top_p: float = 0.95  # 1.0: off
    repetition_penalty: float = 1.1  # 1.0: off
    repetition_window: int = 64  # prompt tokens (besides the reply so far) that the penalty looks back on
    max_new_tokens: int = 64
    seed: int | None = None
