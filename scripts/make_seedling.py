"""Package a trained companion as the bundled seedling: fp16 weights, tokenizer, and its story.

    python scripts/make_seedling.py --home runs/seedling-home --name Seedling --command "companion birth ..."

Writes `companion/seedling/seedling.safetensors` (fp16, at most 16 MB), `tokenizer.json`, and
`SEEDLING.md` with the command and seed that made it, its held-out loss (measured here, on the fixed
held-out split), and a few unedited sample replies (fixed seeds, the default sampling settings).
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import torch

from companion.birth.create import corpus_documents
from companion.home import SEEDLING_DIR, Home
from companion.birth.nursery import CorpusTokens
from companion.store import Store
from companion.night.optimizer import mean_loss
from companion.settings import render_template
from companion.transcript import Turn, encode_documents, encode_turns, reply_prompt
from companion.history.weights import Weights
from companion.model.checkpoint import CheckpointMeta, save_checkpoint
from companion.model.sampling import SamplingSettings, sample_candidates
from companion.model.tokenizer import Tokenizer

PROMPTS = [
    "Hi! How are you today?",
    "What did you do this weekend?",
    "Do you have any pets?",
    "I'm thinking of learning to cook. Any ideas?",
    "What kind of music do you like?",
]
MAX_BYTES = 16 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--command", required=True, help="the exact command(s) that trained it, for SEEDLING.md")
    parser.add_argument("--out", default=str(SEEDLING_DIR))
    args = parser.parse_args()

    home = Home.open(args.home, args.name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = home.load_settings()
    tokenizer = Tokenizer.load(home.tokenizer_path)
    with Store.open(home.store_path) as store:
        loaded = Weights(home, store).load_current()
    model, meta = loaded.model.eval(), loaded.meta

    _, heldout_docs = corpus_documents(settings, home)
    data = CorpusTokens(torch.zeros(0, dtype=torch.int32),
                        CorpusTokens.from_encoded([], encode_documents(tokenizer, heldout_docs)).heldout)
    windows = data.heldout_windows(model.config.block_size, 10_000)
    heldout = mean_loss(model, windows)

    target = out / "seedling.safetensors"
    save_checkpoint(target, model, CheckpointMeta(model.config, reason="seedling", step=meta.step,
                                                  probe={"heldout_loss": round(heldout, 4)},
                                                  extra={"command": args.command}), dtype=torch.float16)
    if target.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{target} is {target.stat().st_size:,} bytes, over the 16 MB the package allows")
    shutil.copyfile(home.tokenizer_path, out / "tokenizer.json")

    # Samples from the shipped fp16 weights as a new companion sees them (names Scout and Trey).
    from companion.model.checkpoint import load_checkpoint

    shipped, _ = load_checkpoint(target)
    greeting = Turn("inner", render_template(settings.day.greeting, "Scout", "Trey"))
    defaults = SamplingSettings(temperature=0.8, top_k=50, top_p=0.95, repetition_penalty=1.1, max_new_tokens=48)
    samples = []
    for i, prompt in enumerate(PROMPTS):
        context = encode_turns(tokenizer, [greeting, Turn("owner", prompt)]).ids
        [gen] = sample_candidates(shipped, reply_prompt(tokenizer, context), 1,
                                  SamplingSettings(**{**defaults.__dict__, "seed": i}), tokenizer.stop_ids,
                                  protected_ids=tokenizer.special_ids)
        samples.append((prompt, tokenizer.decode(gen.tokens)))

    lines = [
        "# The bundled seedling",
        "",
        f"- preset `seedling`: {model.config.n_layer} layers, {model.config.n_embd} dims, block {model.config.block_size},"
        f" {tokenizer.vocab_size:,}-token BPE; {model.num_params() / 1e6:.1f}M parameters, stored in fp16"
        f" ({target.stat().st_size / 1e6:.1f} MB)",
        f"- trained {meta.step:,} optimizer steps (batch 8 x {model.config.block_size} tokens:"
        f" {meta.step * 8 * model.config.block_size:,} tokens) on the starter corpus, both orientations",
        f"- held-out loss {heldout:.3f} (perplexity {math.exp(heldout):.1f}) on the fixed 2% held-out split"
        f" ({len(windows)} windows of {model.config.block_size} tokens), measured on the fp32 weights",
        "",
        "Made with:",
        "",
        "```",
        args.command,
        f"python scripts/make_seedling.py --home {args.home}" + (f" --name {args.name}" if args.name else "") + " --command '...'",
        "```",
        "",
        "Unedited samples (the owner's line, then the seedling's reply; seeds 0-4, temperature 0.8, top-k 50,"
        " top-p 0.95, repetition penalty 1.1):",
        "",
    ]
    for prompt, reply in samples:
        shown = reply.replace("\n", "\n> ")
        lines += [f"> **Trey:** {prompt}", ">", f"> **Scout:** {shown}", ""]
    (out / "SEEDLING.md").write_text("\n".join(lines), encoding="utf-8")
    for f in ("seedling.safetensors", "tokenizer.json", "SEEDLING.md"):
        (out / f).chmod(0o644)  # package data: readable by every user of an installation
    print("\n".join(lines))


if __name__ == "__main__":
    main()
