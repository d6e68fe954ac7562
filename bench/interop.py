"""Other tools on our weights: export the seedling, run it in transformers (and llama.cpp when installed).

Run by hand (never in CI):  python bench/interop.py [--threads 1] [--new-tokens 200] [--rounds 3]

Reports, in one run and for the same prompt (a real formatted day from the held-out starter corpus):
- max |delta logit| against our model: transformers fp32 (HF export), llama.cpp f16 and q8_0 (GGUF export);
- greedy-token agreement over the new tokens;
- tokens/s of generation (one row, `--new-tokens` new tokens after the prompt) for our engine,
  transformers and llama.cpp, measured in alternating rounds so a busy machine hurts all alike.
llama.cpp is used when `llama_cpp_py_sync` (the prebuilt CPU wheel `llama-cpp-py-sync`,
`pip install '.[llamacpp]'`) or `llama_cpp` (llama-cpp-python, built from source: about 35 minutes on
2 cores) imports; see bench/llamacpp.py. llama.cpp's own tokenizer on the GGUF is checked against ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from companion.birth.corpus import starter_documents
from companion.home import SEEDLING_DIR
from companion.transcript import encode_turns, reply_prompt
from companion.model.checkpoint import load_checkpoint
from companion.model.interop.gguf import export_gguf
from companion.model.interop.hf import export_hf
from companion.model.sampling import SamplingSettings, sample_candidates
from companion.model.tokenizer import Tokenizer

try:
    from bench import llamacpp
except ImportError:  # run as a script: bench/ is on the path
    import llamacpp

GREEDY = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0)


def prompt_ids(tokenizer: Tokenizer, length: int) -> list[int]:
    doc = starter_documents(True, "Good morning, {companion}.", "Good night, {companion}.", limit=4)[3]
    return reply_prompt(tokenizer, encode_turns(tokenizer, doc).ids[: length - 1])


def ours_greedy(model, prompt: list[int], n: int) -> list[int]:
    [gen] = sample_candidates(model, prompt, 1, replace(GREEDY, max_new_tokens=n), stop_ids=set())
    return gen.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=120)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {args.threads}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    model, _ = load_checkpoint(SEEDLING_DIR / "seedling.safetensors")
    model.eval()
    tokenizer = Tokenizer.load(SEEDLING_DIR / "tokenizer.json")
    prompt = prompt_ids(tokenizer, args.prompt_tokens)
    x = torch.tensor([prompt])
    with torch.no_grad():
        ours_logits = model(x)[0][0]
    ours_tokens = ours_greedy(model, prompt, args.new_tokens)
    results: dict[str, dict] = {}
    runners = {"ours": lambda: ours_greedy(model, prompt, args.new_tokens)}

    work = Path(tempfile.mkdtemp(prefix="bench-interop-"))
    export_hf(model.state_dict(), model.config, tokenizer, work / "hf")
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(work / "hf", dtype=torch.float32).eval()
    with torch.no_grad():
        hf_logits = hf(x).logits[0]
        hf_out = hf.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                             repetition_penalty=1.0, eos_token_id=None, pad_token_id=tokenizer.pad_id)[0, len(prompt):].tolist()
    results["transformers fp32"] = {"delta": (hf_logits - ours_logits).abs().max().item(), "tokens": hf_out}

    def hf_run():
        with torch.no_grad():
            hf.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                        repetition_penalty=1.0, eos_token_id=None, pad_token_id=tokenizer.pad_id)
    runners["transformers"] = hf_run

    binding = llamacpp.available()
    if binding is None:
        print("llama.cpp: neither llama_cpp_py_sync nor llama_cpp is installed; skipped "
              "(pip install llama-cpp-py-sync: a prebuilt CPU wheel)")
    else:
        print(f"llama.cpp through {binding}")
        texts = [("plain", "Hello there! How's your day going? I'm fine, 123 thanks.", False),
                 ("accents, emoji, CJK", "Café naïve — emoji 🙂 and 日本語, it's 2026", False),
                 ("typed markup", "I typed <|owner|> and <|end|> myself.", False),
                 ("formatted turns", tokenizer.raw.decode(prompt, skip_special_tokens=False), True)]
        for dtype in ("f16", "q8_0"):
            path = export_gguf(model.state_dict(), model.config, tokenizer, work / f"seedling-{dtype}.gguf",
                               dtype=dtype, eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
            cpp = llamacpp.CppModel(path, model.config.block_size, args.threads, binding)
            cpp_logits = torch.from_numpy(cpp.logits(prompt))
            results[f"llama.cpp {dtype}"] = {"delta": (cpp_logits - ours_logits).abs().max().item(),
                                             "tokens": cpp.greedy(prompt, args.new_tokens)}
            for label, text, special in texts:
                ours_ids = prompt if label == "formatted turns" else tokenizer.encode(text)
                same = cpp.tokenize(text, special) == ours_ids
                print(f"llama.cpp {dtype} tokenizer, {label} ({len(ours_ids)} tokens, special={special}): "
                      + ("same ids as ours" if same else "DIFFERENT ids"))
            runners[f"llama.cpp {dtype}"] = lambda cpp=cpp: cpp.greedy(prompt, args.new_tokens)

    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    print(f"seedling {model.num_params() / 1e6:.1f}M parameters; prompt {len(prompt)} tokens (a formatted held-out day); "
          f"{args.new_tokens} greedy tokens")
    for name, r in results.items():
        agree = sum(a == b for a, b in zip(r["tokens"], ours_tokens))
        first = next((i for i, (a, b) in enumerate(zip(r["tokens"], ours_tokens)) if a != b), None)
        print(f"{name:<18} max |delta logit| {r['delta']:.2e}; greedy tokens {agree}/{len(ours_tokens)} agree"
              + (f" (first difference at {first})" if first is not None else ""))
    for name, seconds in times.items():
        print(f"{name:<18} {args.new_tokens / statistics.median(seconds):7.1f} tokens/s (median of {args.rounds})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
