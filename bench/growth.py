"""Growth on the bundled seedling: widened 256 -> 384, stretched 512 -> 1024, then the same nights as an
unwidened seedling.

    python bench/growth.py                                # 3 nights, a 30-step stretch night, 1 thread
    python bench/growth.py --stretch-steps 12 --windows 12 --nights 3     # reduced (a busy machine)
    python bench/growth.py --no-stretch --nursery-steps 60 --nights 2     # a growth nursery, both given it

With `--nursery-steps N` both companions are then given the same N nursery steps on the starter corpus
(`companion nursery --steps N`: a fresh optimizer, warmup and cosine decay at `--nursery-lr`), right
after the growth and before the nights: does the widened model put its new capacity to use when it is
given the same extra training as the control? `--no-stretch` widens only (the stretch is a separate
question and costs a long stretch night).

Two companions adopt the bundled seedling: *grown* is widened to 384 (`run_growth`, the same pipeline as
`companion grow --width 384`) and stretched to 1024 (`companion grow --context 1024`, with its stretch
night); *control* stays as it was. Both then live the same scripted days (the same questions, candidates,
picks and corrections, each day filling a 512-token block's share) and sleep the same default nights.
Held-out loss is measured on the starter corpus's held-out conversations: windows of 513 tokens (what
the seedling could read) for both, and for the grown one also windows of 1025 tokens, split into
positions inside the first 512 and beyond them. Prints markdown tables for the README.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from companion.birth.create import adopt_seedling, create_home  # noqa: E402
from companion.growth.grow import run_growth  # noqa: E402
from companion.growth.plan import plan_growth, short_size  # noqa: E402
from companion.growth.stretch_night import split_losses  # noqa: E402
from companion.night.guards import starter_docs  # noqa: E402
from companion.home import Home  # noqa: E402
from companion.night.pipeline import run_night  # noqa: E402
from companion.birth.nursery import CorpusTokens  # noqa: E402
from companion.day.scripted import fill_day  # noqa: E402
from companion.store import Store  # noqa: E402
from companion.night.optimizer import mean_loss  # noqa: E402
from companion.transcript import encode_documents  # noqa: E402
from companion.history.weights import Weights  # noqa: E402
from companion.model.tokenizer import Tokenizer  # noqa: E402

from bench.night import scripted_exchanges  # noqa: E402  (the same scripted lines as the night bench)


def scripted_day(home: Home, store: Store, tokenizer: Tokenizer, number: int, block_size: int) -> int:
    """The same closed day for every companion, lived through the real DaySession: the night bench's
    exchanges from question `number` on, until the next would not fit a day of `block_size`'s share."""
    day, _ = fill_day(home, store, scripted_exchanges(number), tokenizer, block_size=block_size,
                      checkpoint_id=Weights(home, store).current().id)
    return day.id


class HeldOut:
    """The held-out starter windows, cut once: 513 tokens for both, 1025 for the stretched model."""

    def __init__(self, tokenizer: Tokenizer, settings, count: int) -> None:
        docs = [list(d) for d in starter_docs(True, settings.day.greeting, settings.day.goodnight)]
        tokens = CorpusTokens.from_encoded([], encode_documents(tokenizer, docs))
        self.short = tokens.heldout_windows(512, count)
        self.long = tokens.heldout_windows(1024, count // 2)

    def measure(self, home: Home) -> dict[str, float | None]:
        with Store.open(home.store_path) as store:
            model = Weights(home, store).load_current().model.float()
        out: dict[str, float | None] = {"loss": mean_loss(model, self.short, batch_size=4), "inside": None,
                                        "beyond": None, "size": short_size(model.config)}
        if model.config.block_size >= 1024:
            out["inside"], out["beyond"] = split_losses(model, self.long, 512)
        return out


def nursery(home: Home, steps: int, lr: float, windows: int) -> dict:
    """The same growth nursery for either companion: `steps` nursery steps at peak `lr`, fresh optimizer."""
    from companion.birth.create import NurseryPlan, run_birth_nursery

    with Store.open(home.store_path) as store:
        t0 = time.perf_counter()
        outcome = run_birth_nursery(home, store, NurseryPlan(steps=steps, peak_lr=lr, heldout_windows=windows,
                                                             eval_every_s=1e9), log=lambda line: None)
    return {"seconds": time.perf_counter() - t0, "steps": outcome.result.steps, "probe": outcome.probe_ppl}


def night(home: Home, tokenizer: Tokenizer, number: int) -> dict:
    with Store.open(home.store_path) as store:
        day_id = scripted_day(home, store, tokenizer, number, block_size=512)  # a 384-token day
        t0 = time.perf_counter()
        report = run_night(home, store, day_id, device="cpu")
    return {"status": report.status, "seconds": time.perf_counter() - t0, "steps": report.steps,
            "probe": (report.probe_before or {}).get("ppl"), "probe_after": (report.probe_after or {}).get("ppl")}


def print_tables(args, held, growth_times: dict, nurseries: dict, rows: list, nights: dict) -> None:
    """The README's tables: held-out loss at each stage for both companions, then each night."""
    def f(x):
        return "—" if x is None else f"{x:.3f}"

    print(f"\nthreads {args.threads}; stretch night {args.stretch_steps} steps at lr {args.stretch_lr:g}; "
          f"{len(held.short)} held-out windows of 513 tokens, {len(held.long)} of 1025")
    print(f"growth took {growth_times['width']:.0f} s (width)"
          + (f" and {growth_times['context']:.0f} s (context, with its stretch night)" if "context" in growth_times
             else ""))
    for name, r in nurseries.items():
        print(f"nursery ({args.nursery_steps} steps at peak lr {args.nursery_lr:g}), {name.lower()}: "
              f"{r['seconds']:.0f} s, starter probe ppl {f(r['probe'])}")
    print()
    print("| stage | companion | size | held-out loss (513-token windows) | inside 512 (1025-token windows) | beyond 512 |")
    print("|---|---|---|---:|---:|---:|")
    for stage, name, m in rows:
        print(f"| {stage} | {name.lower()} | {m['size']} | {f(m['loss'])} | {f(m['inside'])} | {f(m['beyond'])} |")
    print("\n| night | companion | status | steps | time | probe ppl before -> after |")
    print("|---:|---|---|---:|---:|---|")
    for n in range(args.nights):
        for name in ("Control", "Grown"):
            r = nights[name][n]
            print(f"| {n + 1} | {name.lower()} | {r['status']} | {r['steps']} | {r['seconds']:.0f} s | "
                  f"{f(r['probe'])} -> {f(r['probe_after'])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--stretch-steps", type=int, default=30)
    parser.add_argument("--stretch-lr", type=float, default=1e-4)
    parser.add_argument("--windows", type=int, default=24, help="held-out windows of 513 tokens (half as many of 1025)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-stretch", action="store_true", help="widen only")
    parser.add_argument("--nursery-steps", type=int, default=0, help="a growth nursery of N steps for both")
    parser.add_argument("--nursery-lr", type=float, default=3e-4, help="the growth nursery's peak learning rate")
    parser.add_argument("--root", help="folder for the two companions (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.root or tempfile.mkdtemp(prefix="growth-bench-"))
    homes = {}
    for name in ("Grown", "Control"):
        home, _ = create_home(root, name, "Owner", "seedling", [])
        with Store.open(home.store_path) as store:
            adopt_seedling(home, store)
        homes[name] = home
    tokenizer = Tokenizer.load(homes["Grown"].tokenizer_path)
    held = HeldOut(tokenizer, homes["Grown"].load_settings(), args.windows)
    rows: list[tuple[str, str, dict]] = []

    def record(stage: str, name: str) -> None:
        m = held.measure(homes[name])
        rows.append((stage, name, m))
        print(f"{stage:<28} {name:<8} {m}", file=sys.stderr, flush=True)

    record("seedling", "Grown")
    grown = homes["Grown"]
    growth_times = {}
    kinds = (("width", 384),) if args.no_stretch else (("width", 384), ("context", 1024))
    for kind, value in kinds:
        with Store.open(grown.store_path) as store:
            plan = plan_growth(grown, store, width=value if kind == "width" else None,
                               context=value if kind == "context" else None)
            t0 = time.perf_counter()
            result = run_growth(grown, store, plan, steps=args.stretch_steps, learning_rate=args.stretch_lr,
                                probe_windows=args.windows // 2)
            growth_times[kind] = time.perf_counter() - t0
        print("\n".join(result.lines()), file=sys.stderr, flush=True)
        if result.status != "grown":
            print(f"growth refused: {result.reason}", file=sys.stderr)
            return 1
        record(f"after {kind} growth", "Grown")
    record("seedling", "Control")
    nurseries = {}
    if args.nursery_steps:
        for name in ("Control", "Grown"):
            nurseries[name] = nursery(homes[name], args.nursery_steps, args.nursery_lr, args.windows)
            print(f"nursery {name}: {nurseries[name]}", file=sys.stderr, flush=True)
            record(f"after a {args.nursery_steps}-step nursery", name)
    nights: dict[str, list[dict]] = {"Grown": [], "Control": []}
    for n in range(1, args.nights + 1):
        for name in ("Control", "Grown"):
            nights[name].append(night(homes[name], tokenizer, n))
            print(f"night {n} {name}: {nights[name][-1]}", file=sys.stderr, flush=True)
            if n in (1, args.nights):
                record(f"after night {n}", name)

    print_tables(args, held, growth_times, nurseries, rows, nights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
