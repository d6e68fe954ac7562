"""Speed on this machine: every engine on the same weights and prompt, alternated in one run.

Run by hand (never in CI), from the repository root:

    python bench/speed.py                         # seedling: 1 and 2 threads, idle and with a busy neighbour
    python bench/speed.py --threads 1 --no-busy --no-night --rounds 1   # a quick look
    python bench/speed.py --home ~/companions/Sol --threads 1 --no-busy --no-night   # a companion's weights

Engines: ours fp32 and ours int8 (`model.sampling`'s loop, the app's own), ours on the llama.cpp
backend (the app's `[engine] backend = "llama.cpp"`: llama.cpp computes the logits of the GGUF f16
export, our loop samples them; `companion.llamacpp`), transformers' `generate`
(the HF export of the same weights) and llama.cpp f16 (the GGUF export; when `llama_cpp_py_sync` imports:
`pip install '.[llamacpp]'`, and on glibc < 2.38 the LD_PRELOAD that `scripts/llamacpp_glibc_shim.py`
prints). For each thread count, with the machine as it is and then with a CPU-bound neighbour process:
prefill ms (the prompt read once), first-token ms (prompt read and first token chosen, K=1), tokens/s
for K=1 and K=3 greedy candidates (all rows counted; llama.cpp's K rows are parallel sequences sharing
the prompt's cache, as ours share one prefill), and the resident memory the process grew by when the
engine was built (its weights and buffers; the cache's share is in the README's notes). Rounds alternate the engines so a noisy machine hurts
all alike; the medians are printed. int8's drift from fp32 is printed too (max |delta logit| on the
prompt, greedy agreement).

The weights: the bundled seedling, or with `--home` a companion's current checkpoint (e.g. one born from
SmolLM2-135M: `companion birth --name Sol --owner T --from-base PATH --home DIR`).

A second table: a full seedling day's night (bench/night.py's day and night), per phase, with the
trainer's thread count as the app chooses it (`[night] threads` = 0).

Report the thread count and the load average printed with the figures: this machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from companion.compute.threads import machine_cores, training_threads, use_threads
from companion.home import SEEDLING_DIR
from companion.model.checkpoint import load_checkpoint
from companion.model.quantize.int8 import int8_available, int8_decoder
from companion.model.sampling import prefill, sample_candidates, sample_from_cache
from companion.model.tokenizer import Tokenizer

try:
    from bench import llamacpp
    from bench.interop import GREEDY, prompt_ids
except ImportError:  # run as a script: bench/ is on the path
    import llamacpp
    from interop import GREEDY, prompt_ids


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def neighbour(busy: bool):
    """A CPU-bound process beside the bench while the body runs (or nothing)."""
    # spins until its parent is gone, so a bench killed by a timeout leaves no neighbour behind
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    proc = subprocess.Popen([sys.executable, "-c", spin]) if busy else None
    try:
        if proc is not None:
            time.sleep(0.5)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


class Runner:
    """One engine: `prefill()` reads the prompt, `run(k, on_first)` makes k rows of `new` greedy tokens."""

    def __init__(self, name: str, threads: Callable[[int], None], prefill: Callable[[], None],
                 run: Callable[[int, Callable[[], None]], list[list[int]]]) -> None:
        self.name, self.set_threads, self.prefill, self.run = name, threads, prefill, run
        self.memory_mb = 0.0


def ours(name: str, model, prompt: list[int], new: int, fast: bool = True) -> Runner:
    """Our loop; `fast` False: each step through the modules instead of `model.decode`'s step."""
    settings = replace(GREEDY, max_new_tokens=new)

    def run(k: int, on_first: Callable[[], None]) -> list[list[int]]:
        seen = [False]

        def on_token(row: int, token: int) -> None:
            if not seen[0]:
                seen[0] = True
                on_first()

        cache, last = prefill(model, prompt)
        return [g.tokens for g in sample_from_cache(model, cache, last, prompt, k, settings, stop_ids=set(),
                                                    on_token=on_token, fast=fast)]

    return Runner(name, use_threads, lambda: prefill(model, prompt), run)


def transformers_runner(model, tokenizer: Tokenizer, prompt: list[int], new: int, work: Path) -> Runner:
    from transformers import AutoModelForCausalLM

    from companion.model.interop.hf import export_hf

    export_hf(model.state_dict(), model.config, tokenizer, work / "hf")
    hf = AutoModelForCausalLM.from_pretrained(work / "hf", dtype=torch.float32).eval()
    x = torch.tensor([prompt])

    class First:  # a streamer: its second put() is the first new token
        def __init__(self, on_first):
            self.calls, self.on_first = 0, on_first

        def put(self, value):
            self.calls += 1
            if self.calls == 2:
                self.on_first()

        def end(self):
            pass

    def run(k: int, on_first: Callable[[], None]) -> list[list[int]]:
        with torch.no_grad():
            out = hf.generate(x.expand(k, -1), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                              repetition_penalty=1.0, eos_token_id=None, pad_token_id=tokenizer.pad_id,
                              streamer=First(on_first) if k == 1 else None)
        return out[:, len(prompt):].tolist()

    def read() -> None:
        with torch.no_grad():
            hf(x, logits_to_keep=1)

    return Runner("transformers", torch.set_num_threads, read, run)


def llamacpp_runner(model, tokenizer: Tokenizer, prompt: list[int], new: int, work: Path, binding: str,
                    thread_counts: list[int]) -> Runner:
    path = gguf_f16(model, tokenizer, work)
    contexts: dict[int, llamacpp.CppModel] = {}
    current = [1]

    def cpp() -> llamacpp.CppModel:
        if current[0] not in contexts:
            contexts[current[0]] = llamacpp.CppModel(path, model.config.block_size, current[0], binding, n_seq=3)
        return contexts[current[0]]

    def threads(n: int) -> None:
        current[0] = n
        cpp()

    for n in thread_counts:  # contexts made before any timing
        threads(n)

    def read() -> None:
        m = cpp()
        m.llm._clear_context_state()
        m._decode(prompt, 0, all_logits=False)

    return Runner("llama.cpp f16", threads, read, lambda k, on_first: cpp().greedy_rows(prompt, new, k, on_first))


def gguf_f16(model, tokenizer: Tokenizer, work: Path) -> Path:
    """The weights' GGUF f16 export, written once for both llama.cpp rows."""
    from companion.model.interop.gguf import export_gguf

    path = work / "weights-f16.gguf"
    if not path.exists():
        export_gguf(model.state_dict(), model.config, tokenizer, path, dtype="f16", eos_id=tokenizer.end_id,
                    pad_id=tokenizer.pad_id)
    return path


def backend_runner(model, tokenizer: Tokenizer, prompt: list[int], new: int, work: Path) -> Runner:
    """The app's llama.cpp backend: `companion.llamacpp`'s runner for the logits, our loop for the tokens."""
    from companion.llamacpp import LlamaRunner
    from companion.model.sampling import sample_steps

    runner = LlamaRunner(gguf_f16(model, tokenizer, work), model.config.block_size, threads=1)
    settings = replace(GREEDY, max_new_tokens=new)

    def run(k: int, on_first: Callable[[], None]) -> list[list[int]]:
        runner.forget()  # the prompt read afresh each time, as the other engines do
        last, step = runner.start(prompt, k, new)
        seen = [False]

        def on_token(row: int, token: int) -> None:
            if not seen[0]:
                seen[0] = True
                on_first()

        return [g.tokens for g in sample_steps(step, last, prompt, k, new, settings, stop_ids=set(), on_token=on_token)]

    def read() -> None:
        runner.forget()
        runner.read(prompt)

    return Runner("ours llama.cpp backend", runner.set_threads, read, run)


def measure(runner: Runner, threads: int) -> dict[str, float]:
    runner.set_threads(threads)
    t = time.perf_counter()
    runner.prefill()
    prefill_ms = (time.perf_counter() - t) * 1000
    out: dict[str, float] = {"prefill": prefill_ms}
    for k in (1, 3):
        first: list[float] = []
        t = time.perf_counter()
        rows = runner.run(k, lambda: first.append(time.perf_counter()))
        seconds = time.perf_counter() - t
        out[f"K{k}"] = sum(len(r) for r in rows) / seconds
        if k == 1 and first:
            out["first"] = (first[0] - t) * 1000
    return out


def speed_table(runners: list[Runner], threads: list[int], rounds: int, busy: bool) -> None:
    with neighbour(busy):
        for n in threads:
            samples: dict[str, list[dict[str, float]]] = {r.name: [] for r in runners}
            load = os.getloadavg()[0]
            for r in runners:  # a warm-up, not counted
                measure(r, n)
            for _ in range(rounds):
                for r in runners:
                    samples[r.name].append(measure(r, n))
            label = "a busy neighbour" if busy else "no neighbour of ours"
            print(f"\n{n} thread{'s' if n > 1 else ''}, {label} (load average {load:.2f} before, "
                  f"{os.getloadavg()[0]:.2f} after; medians of {rounds})")
            print("| engine | prefill | first token | K=1 tok/s | K=3 tok/s | RSS to build |")
            print("|---|---:|---:|---:|---:|---:|")
            for r in runners:
                med = {key: statistics.median(s[key] for s in samples[r.name]) for key in samples[r.name][0]}
                print(f"| {r.name} | {med['prefill']:.1f} ms | {med.get('first', float('nan')):.1f} ms | "
                      f"{med['K1']:.0f} | {med['K3']:.0f} | {r.memory_mb:.0f} MB |")


def night_table(threads: int) -> None:
    try:
        from bench.night import find_tokenizer, time_night
    except ImportError:
        from night import find_tokenizer, time_night
    use_threads(threads)
    print(f"\nA seedling night on {threads} thread{'s' if threads > 1 else ''} "
          f"(load average {os.getloadavg()[0]:.2f} before)")
    with tempfile.TemporaryDirectory() as tmp:
        r = time_night("seedling", find_tokenizer(None), "cpu", Path(tmp) / "seedling")
    print(f"| phase | seconds |  ({r['status']}; {r['steps']} steps, {r['tokens']:,} night tokens, "
          f"{r['day_tokens']:,} day tokens; load average after {os.getloadavg()[0]:.2f})")
    print("|---|---:|")
    for phase, seconds in r["phases"].items():
        print(f"| {phase} | {seconds:.1f} |")
    print(f"| **total** | **{r['total_s']:.1f}** |")


def load_weights(home: str | None):
    """(model, tokenizer, label): the bundled seedling, or a companion's current checkpoint (read only)."""
    if home is None:
        model, _ = load_checkpoint(SEEDLING_DIR / "seedling.safetensors")
        return model.eval(), Tokenizer.load(SEEDLING_DIR / "tokenizer.json"), "seedling"
    from companion.history.weights import Weights
    from companion.home import Home
    from companion.store import Store

    h = Home.open(home, check_writable=False)
    with Store.open(h.store_path) as store:
        loaded = Weights(h, store).load_current()
    return loaded.model.eval(), loaded.tokenizer(), f"{h.name} (checkpoint {loaded.checkpoint.id})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-neighbour tables")
    parser.add_argument("--no-night", action="store_true", help="skip the night table")
    parser.add_argument("--engines", nargs="*", default=["ours fp32", "ours int8", "ours llama.cpp backend",
                                                         "transformers", "llama.cpp f16"],
                        help="also 'ours fp32 modules': our loop stepping through the modules (model.decode off)")
    parser.add_argument("--home", help="a companion's folder: its current weights instead of the seedling")
    args = parser.parse_args()
    print(f"{machine_cores()} cores; torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}")

    model, tokenizer, label = load_weights(args.home)
    prompt = prompt_ids(tokenizer, args.prompt_tokens)
    print(f"{label} {model.num_params() / 1e6:.1f}M parameters; prompt {len(prompt)} tokens; "
          f"{args.new_tokens} greedy tokens per row")
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    runners: list[Runner] = []
    fp32_tokens = sample_candidates(model, prompt, 1, replace(GREEDY, max_new_tokens=args.new_tokens), stop_ids=set())[0].tokens
    for name in args.engines:
        before = rss_mb()
        if name == "ours fp32":
            runner = ours(name, model, prompt, args.new_tokens)
        elif name == "ours fp32 modules":
            runner = ours(name, model, prompt, args.new_tokens, fast=False)
            cache, last = prefill(model, prompt)
            slow = sample_from_cache(model, cache, last, prompt, 3, replace(GREEDY, max_new_tokens=args.new_tokens),
                                     stop_ids=set(), fast=False)
            fast = sample_candidates(model, prompt, 3, replace(GREEDY, max_new_tokens=args.new_tokens), stop_ids=set())
            print("model.decode's step against the modules: greedy K=3 tokens "
                  f"{'identical' if [g.tokens for g in slow] == [g.tokens for g in fast] else 'DIFFERENT'}")
        elif name == "ours int8":
            why = int8_available()
            if why:
                print(f"ours int8: skipped ({why})")
                continue
            q = int8_decoder(model)
            with torch.no_grad():
                a, b = model(torch.tensor([prompt]))[0][0], q(torch.tensor([prompt]))[0][0]
            q_tokens = sample_candidates(q, prompt, 1, replace(GREEDY, max_new_tokens=args.new_tokens), stop_ids=set())[0].tokens
            same = next((i for i, (x, y) in enumerate(zip(fp32_tokens, q_tokens)) if x != y), len(q_tokens))
            print(f"int8 against fp32 on the prompt: max |delta logit| {float((a - b).abs().max()):.3f}, "
                  f"argmax agreement {float((a.argmax(-1) == b.argmax(-1)).float().mean()):.3f}; "
                  f"greedy tokens identical for the first {same} of {len(q_tokens)}")
            runner = ours(name, q, prompt, args.new_tokens)
        elif name == "ours llama.cpp backend":
            from companion.llamacpp import unavailable

            why = unavailable()
            if why:
                print(f"ours llama.cpp backend: skipped ({why})")
                continue
            runner = backend_runner(model, tokenizer, prompt, args.new_tokens, work)
        elif name == "transformers":
            try:
                runner = transformers_runner(model, tokenizer, prompt, args.new_tokens, work)
            except ImportError:
                print("transformers: not installed; skipped")
                continue
        elif name == "llama.cpp f16":
            binding = llamacpp.available()
            if binding != "llama_cpp_py_sync":
                print("llama.cpp: llama_cpp_py_sync is not installed; skipped (pip install '.[llamacpp]')")
                continue
            runner = llamacpp_runner(model, tokenizer, prompt, args.new_tokens, work, binding, args.threads)
        else:
            parser.error(f"unknown engine {name!r}")
        runner.memory_mb = rss_mb() - before
        runners.append(runner)
    for busy in ((False,) if args.no_busy else (False, True)):
        speed_table(runners, args.threads, args.rounds, busy)
    if not args.no_night:
        night_table(training_threads(0))


if __name__ == "__main__":
    main()
