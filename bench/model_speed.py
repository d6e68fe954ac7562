"""How fast the network is on this machine: prefill, candidates per second, training throughput.

Run by hand (never in CI):  python bench/model_speed.py [--presets seedling v1] [--repeats 3]

For each preset (random weights: speed does not depend on what was learnt) it reports
- prefill: seconds to read a prompt of half the block,
- generation tokens/s with K=1 and K=4 candidates sharing that prefill (K=4 counts all 4 rows),
- training tokens/s for one optimizer step on a batch of full blocks,
and ratios against the seedling measured in the same run, so figures from a busy machine still compare.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from companion.night.optimizer import best_device, make_optimizer, train_step
from companion.model.config import preset
from companion.model.sampling import SamplingSettings, sample_candidates
from companion.model.transformer import Transformer


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, device: torch.device, repeats: int, new_tokens: int, batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = Transformer(preset(name)).to(device).eval()
    cfg = model.config
    prompt = torch.randint(10, cfg.vocab_size, (cfg.block_size // 2,)).tolist()
    settings = SamplingSettings(max_new_tokens=new_tokens, seed=0)
    row: dict[str, float] = {"params_m": model.num_params() / 1e6}

    @torch.no_grad()
    def prefill_only():
        model(torch.tensor([prompt], device=device))

    row["prefill_s"] = timed(prefill_only, repeats)
    for k in (1, 4):
        seconds = timed(lambda: sample_candidates(model, prompt, k, settings, stop_ids=set()), repeats)
        row[f"gen_k{k}_tok_s"] = k * new_tokens / seconds
    model.train()
    optimizer = make_optimizer(model, 1e-4)
    data = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device=device)

    def step():
        _, loss = model(data[:, :-1], data[:, 1:])
        train_step(model, optimizer, loss, 1e-4)

    row["train_tok_s"] = batch * cfg.block_size / timed(step, repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["seedling", "v1"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    device = best_device()
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = {name: measure(name, device, args.repeats, args.new_tokens, args.batch) for name in args.presets}
    header = f"{'preset':<10}{'params':>9}{'prefill s':>11}{'K=1 tok/s':>11}{'K=4 tok/s':>11}{'K4/K1':>7}{'train tok/s':>13}"
    print(header)
    for name, r in rows.items():
        print(f"{name:<10}{r['params_m']:>8.1f}M{r['prefill_s']:>11.3f}{r['gen_k1_tok_s']:>11.1f}{r['gen_k4_tok_s']:>11.1f}"
              f"{r['gen_k4_tok_s'] / r['gen_k1_tok_s']:>7.2f}{r['train_tok_s']:>13.0f}")
    base = rows.get("seedling")
    if base:
        for name, r in rows.items():
            if name != "seedling":
                print(f"{name} vs seedling: prefill x{r['prefill_s'] / base['prefill_s']:.1f} slower, "
                      f"K=1 generation x{base['gen_k1_tok_s'] / r['gen_k1_tok_s']:.1f} slower, "
                      f"training x{base['train_tok_s'] / r['train_tok_s']:.1f} slower")


if __name__ == "__main__":
    main()
