"""Thread counts that fit the machine, so generation and a night never fight over the cores.

Why this exists: PyTorch's default is one intra-op thread per core, in every thread that runs it. On a
2-core machine the app's generation and the trainer thread then ask for four threads between them, and
OpenMP's busy-waiting threads collapse when any core is taken: the seedling's K=1 generation fell from
about 120 tokens/s on 1 thread to 14 on 2 threads with a neighbour busy. Measured on 2 cores
(bench/speed.py, README "Speed"): one thread decodes the small models as fast as two when the machine
is idle and many times faster when it is not.

The counts are per OS thread: `torch.set_num_threads` sets OpenMP's and MKL's count for the calling
thread, so the engine sets its own before every generation and the trainer thread its own at the start
of a night. While a night trains, generation takes only the cores the night left.

Settings: `[engine] threads` (generation) and `[night] threads` (training); 0 means the measured default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "machine_cores",
    "default_generation_threads",
    "generation_threads",
    "training_threads",
    "training_claim",
    "use_threads",
]

_lock = threading.Lock()
_claims: dict[int, int] = {}  # trainer threads running now (claim id -> threads they use)
_next_claim = 0


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_generation_threads(cores: int | None = None) -> int:
    """One thread up to 2 cores (measured: two threads gain nothing on the seedling and collapse under
    load), half the cores up to 4 beyond (not measured here: a conservative guess that leaves the rest
    to the trainer and the UI)."""
    cores = machine_cores() if cores is None else cores
    return 1 if cores <= 2 else min(4, cores // 2)


def training_threads(setting: int = 0, cores: int | None = None) -> int:
    """The trainer's count: the setting, or (0) the cores generation does not take by default."""
    if setting < 0:
        raise ValueError(f"threads must be 0 (auto) or more, not {setting}")
    if setting:
        return setting
    cores = machine_cores() if cores is None else cores
    return max(1, cores - default_generation_threads(cores))


def training_now() -> int:
    """Threads the running nights (normally none or one) are using."""
    with _lock:
        return sum(_claims.values())


def generation_threads(setting: int = 0, cores: int | None = None) -> int:
    """The engine's count for the next generation: the setting or the default, cut to the cores a
    running night leaves (never below one), so the two together do not oversubscribe the machine."""
    if setting < 0:
        raise ValueError(f"threads must be 0 (auto) or more, not {setting}")
    cores = machine_cores() if cores is None else cores
    wanted = setting or default_generation_threads(cores)
    busy = training_now()
    if busy:
        wanted = min(wanted, max(1, cores - busy))
    return wanted


def use_threads(n: int) -> None:
    """Run this OS thread's torch work on `n` intra-op threads (cheap: call it before each job)."""
    import torch

    if n < 1:
        raise ValueError(f"threads must be at least 1, not {n}")
    torch.set_num_threads(n)


@contextmanager
def training_claim(n: int) -> Iterator[int]:
    """While the body runs, this thread trains on `n` threads and generation leaves them to it."""
    global _next_claim
    use_threads(n)
    with _lock:
        _next_claim += 1
        claim = _next_claim
        _claims[claim] = n
    try:
        yield n
    finally:
        with _lock:
            _claims.pop(claim, None)
