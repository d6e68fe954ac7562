"""Thread counts that fit the machine, so generation and a night never fight over the cores.

Why this exists: PyTorch's default is one intra-op thread per core, in every thread that runs it. On a
2-core machine the app's generation and the trainer thread then ask for four threads between them, and
OpenMP's busy-waiting threads collapse when any core is taken: the seedling's K=1 generation fell from
about 120 tokens/s on 1 thread to 14 on 2 threads with a neighbour busy. Measured on 2 cores
(bench/speed.py, README "Speed"): one thread decodes the small models as fast as two when the machine
is idle and many times faster when it is not.

The counts are per OS thread: `torch.set_num_threads` sets OpenMP's and MKL's count for the calling
thread, so the engine sets its own before every generation (a `generation_claim`) and the trainer
thread its own before every step (`pace`, under a `training_claim`). While a night trains, generation
takes only the cores the night left; a night on the automatic count takes every core nobody else is
using, and gives one back before its next step when a generation or another program wants it.

Settings: `[engine] threads` (generation) and `[night] threads` (training); 0 means the measured default.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "machine_cores",
    "default_generation_threads",
    "generation_threads",
    "training_threads",
    "training_claim",
    "generation_claim",
    "generating_now",
    "others_load",
    "OthersMeter",
    "pace",
    "use_threads",
]

_lock = threading.Lock()
_claims: dict[int, int] = {}  # trainer threads running now (claim id -> threads they use)
_generating: dict[int, int] = {}  # generations running now (claim id -> threads they use)
_next_claim = 0
_local = threading.local()  # this OS thread's training claim: (claim id, setting), for `pace`


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


def others_load(load: float | None = None, ours: int = 0) -> float:
    """How many cores other processes keep busy. `load` given (tests): that load average less the
    threads this app itself runs now (`ours`), never below 0. None: measured (`OthersMeter`, from what
    the cores did since the last look, less this process's own CPU time), or where that cannot be
    read (not Linux) the 1-minute load average less `ours`."""
    if load is None:
        measured = _others.read()
        if measured is not None:
            return measured
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # not Unix: nobody else is assumed
            return 0.0
    return max(0.0, load - ours)


class OthersMeter:
    """The cores other processes kept busy lately, measured: the busy time of this process's cores in
    /proc/stat less this process's own CPU time, over the time since the last reading (a training
    step), half-weighted with the reading before.

    Why not the load average: it is a minute-long mean. A night that starts just after a busy minute
    (the bench before it, a build) saw load 1.6 on an idle 2-core machine and trained on one thread
    for its first minute or two; and it counts this process's own threads, which it then has to
    guess at. This looks at what the cores did in the last second."""

    MIN_WINDOW_S = 0.25

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, float, float] | None = None  # (busy s, own CPU s, monotonic s)
        self.value: float | None = None

    def _sample(self) -> tuple[float, float, float] | None:
        busy = _busy_seconds()
        return None if busy is None else (busy, time.process_time(), time.monotonic())

    def read(self) -> float | None:
        """Cores kept busy by other processes (>= 0), or None where /proc/stat cannot be read."""
        with self._lock:
            now = self._sample()
            if now is None:
                return None
            if self._last is None or now[2] - self._last[2] < self.MIN_WINDOW_S:
                first = self._last if self._last is not None else now
                time.sleep(max(0.0, self.MIN_WINDOW_S - (now[2] - first[2])))
                self._last, now = first, self._sample()
                if now is None:
                    return None
            busy, own, wall = (b - a for a, b in zip(self._last, now))
            self._last = now
            estimate = max(0.0, busy - own) / max(wall, 1e-6)
            self.value = estimate if self.value is None else 0.5 * self.value + 0.5 * estimate
            return self.value


def _busy_seconds() -> float | None:
    """Seconds this process's cores (its affinity) have been busy since boot, from /proc/stat: every
    kind of time but idle and waiting on I/O; None where it cannot be read."""
    try:
        cpus = os.sched_getaffinity(0)
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.readlines()
        hz = os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields[:8]]
            ticks += sum(values) - values[3] - values[4]
    return ticks / hz if ticks else None


_others = OthersMeter()


def training_threads(setting: int = 0, cores: int | None = None, load: float | None = None, ours: int = 0) -> int:
    """The trainer's count: the setting, or (0) the cores free now: the machine's, less the threads
    generating (`generating_now`), less what other processes keep busy (`others_load`, counted as busy
    from 0.75 of a core). So a night on an idle machine trains on every core (measured on 2 cores: a
    lesson night in 83.5 s on 2 threads, 150.8 s on 1), gives a core back while the owner's reply is
    generated, and does not fight a neighbour for a core it holds (two threads on a core that is taken
    collapse: OpenMP's threads wait for each other at every operation)."""
    if setting < 0:
        raise ValueError(f"threads must be 0 (auto) or more, not {setting}")
    if setting:
        return setting
    cores = machine_cores() if cores is None else cores
    busy = generating_now() + int(others_load(load, ours) + 0.25)
    return max(1, cores - busy)


def generating_now() -> int:
    """Threads the running generations are using."""
    with _lock:
        return sum(_generating.values())


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


def _claim(table: dict[int, int], n: int) -> int:
    global _next_claim
    with _lock:
        _next_claim += 1
        table[_next_claim] = n
        return _next_claim


@contextmanager
def training_claim(setting: int = 0) -> Iterator[int]:
    """While the body runs, this thread trains and generation leaves it the cores it uses. With
    `setting` 0 (auto) the count follows the machine: `pace` before each step sets it afresh."""
    n = training_threads(setting)
    use_threads(n)
    claim = _claim(_claims, n)
    _local.claim = (claim, setting)
    try:
        yield n
    finally:
        _local.claim = None
        with _lock:
            _claims.pop(claim, None)


def pace(load: float | None = None) -> int | None:
    """Before a training step: this thread's count set afresh when its claim is automatic (the free
    cores may have changed: the owner asked for a reply, a neighbour started or stopped). Returns the
    count, or None when this thread holds no claim or a fixed one."""
    held = getattr(_local, "claim", None)
    if held is None or held[1]:
        return None
    claim, _ = held
    with _lock:
        current = _claims.get(claim, 0)
    n = training_threads(0, load=load, ours=current + generating_now())
    if n != current:
        use_threads(n)
        with _lock:
            _claims[claim] = n
    return n


@contextmanager
def generation_claim(n: int) -> Iterator[int]:
    """While a generation runs on `n` threads, a night's `pace` leaves it those cores."""
    use_threads(n)
    claim = _claim(_generating, n)
    try:
        yield n
    finally:
        with _lock:
            _generating.pop(claim, None)
