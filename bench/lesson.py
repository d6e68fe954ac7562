"""A measured lesson: teach a few facts through corrections in one day, sleep, and count what stuck.

    companion birth --name Scout --owner Trey --from-seedling --home /tmp/lesson
    python bench/lesson.py --home /tmp/lesson --name Scout --favourite "the sea" --samples 20

Works on a copy of the companion (the original is never touched unless --in-place). The day: the
greeting, then each fact asked a few ways; the companion's own candidates are sampled, and the owner
corrects the first into the fact (the others are passed over). After the good-night line the night
runs with the companion's own night settings. Before and after, N replies are sampled to each probe
question (the taught wording and a paraphrase never taught) in a fresh day's context, and a reply
counts when it contains the fact's key word. Prints a table and the probe's cost.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion.home import Home, resolve_root  # noqa: E402
from companion.night import report_lines, run_night  # noqa: E402
from companion.store import Store  # noqa: E402
from companion.training import best_device  # noqa: E402
from companion.transcript import Turn, count_tokens, encode_turns, reply_prompt  # noqa: E402
from companion.weights import Weights  # noqa: E402
from model.sampling import SamplingSettings, sample_candidates  # noqa: E402
from model.tokenizer import Tokenizer  # noqa: E402


def facts(name: str, owner: str, favourite: str) -> list[dict]:
    """Each fact: its key word, the questions taught (with the corrected answer) and a paraphrase."""
    return [
        {"fact": "the companion's name", "key": name, "answer": f"My name is {name}.",
         "taught": ["What is your name?", "Tell me your name again?"], "probe": "Who are you?"},
        {"fact": "the owner's name", "key": owner, "answer": f"You are {owner}.",
         "taught": ["What is my name?", "Do you remember my name?"], "probe": "Who am I?"},
        {"fact": "a favourite thing", "key": favourite.split()[-1], "answer": f"My favourite thing is {favourite}.",
         "taught": ["What is your favourite thing?", "What do you love most?"], "probe": "What do you like best?"},
    ]


def sample(model, tokenizer: Tokenizer, settings, question: str, n: int, seed: int) -> list[str]:
    context = encode_turns(tokenizer, [Turn("inner", settings.greeting_line()), Turn("owner", question)]).ids
    stops = {tokenizer.end_id, *tokenizer.role_ids.values()}
    sampling = SamplingSettings(temperature=settings.sampling.temperature, top_k=settings.sampling.top_k,
                                top_p=settings.sampling.top_p, repetition_penalty=settings.sampling.repetition_penalty,
                                max_new_tokens=32, seed=seed)
    gens = sample_candidates(model, reply_prompt(tokenizer, context), n, sampling, stops,
                             protected_ids=tokenizer.special_ids)
    return [tokenizer.decode(g.tokens) for g in gens]


def count(model, tokenizer, settings, lesson: list[dict], n: int) -> dict[str, tuple[int, int]]:
    out = {}
    for i, f in enumerate(lesson):
        taught = sample(model, tokenizer, settings, f["taught"][0], n, seed=100 + i)
        probe = sample(model, tokenizer, settings, f["probe"], n, seed=200 + i)
        key = f["key"].lower()
        out[f["fact"]] = (sum(key in r.lower() for r in taught), sum(key in r.lower() for r in probe))
    return out


def live_the_day(home: Home, store: Store, model, tokenizer: Tokenizer, settings, lesson: list[dict]) -> int:
    current = Weights(home, store).current()
    budget = int(model.config.block_size * settings.day.share)
    day = store.open_day(budget, checkpoint_id=current.id)
    turns: list[Turn] = []
    used = 0

    def add(role: str, text: str, source: str):
        nonlocal used
        tokens = count_tokens(tokenizer, Turn(role, text))
        used += tokens
        turns.append(Turn(role, text))
        return store.add_turn(day.id, role, text, source, tokens=tokens)

    add("inner", settings.greeting_line(), "greeting")
    goodnight = settings.goodnight_line()
    rounds = [(f, q) for q_i in range(2) for f in lesson for q in [f["taught"][q_i]]]
    for f, question in rounds:
        need = count_tokens(tokenizer, Turn("owner", question)) + count_tokens(tokenizer, Turn("companion", f["answer"]))
        if used + need + count_tokens(tokenizer, Turn("inner", goodnight)) > budget:
            print(f"the day is full: '{question}' was not asked", file=sys.stderr)
            break
        prompt = add("owner", question, "typed")
        stops = {tokenizer.end_id, *tokenizer.role_ids.values()}
        gens = sample_candidates(model, reply_prompt(tokenizer, encode_turns(tokenizer, turns).ids),
                                 settings.sampling.candidates,
                                 SamplingSettings(temperature=settings.sampling.temperature, max_new_tokens=24, seed=used),
                                 stops, protected_ids=tokenizer.special_ids)
        cands = store.add_candidates(day.id, prompt.id, [tokenizer.decode(g.tokens) for g in gens],
                                     [g.finish for g in gens], checkpoint_id=current.id)
        reply = store.record_reply(day.id, prompt.id, "correction", f["answer"], candidate_id=cands[0].id,
                                   tokens=count_tokens(tokenizer, Turn("companion", f["answer"])))
        used += reply.turn.tokens
        turns.append(Turn("companion", f["answer"]))
    add("inner", goodnight, "goodnight")
    store.close_day(day.id, "goodnight")
    return day.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="folder of companions (or one companion's home)")
    parser.add_argument("--name", help="which companion")
    parser.add_argument("--favourite", default="the sea", help="the favourite thing to teach (default: the sea)")
    parser.add_argument("--samples", type=int, default=20, help="replies sampled per question (default 20)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--in-place", action="store_true", help="teach the companion itself, not a copy")
    args = parser.parse_args()
    device = args.device or str(best_device())
    original = Home.open(resolve_root(args.home), args.name)
    tmp = None
    if args.in_place:
        home = original
    else:
        tmp = tempfile.mkdtemp(prefix="lesson-")
        shutil.copytree(original.path, Path(tmp) / original.name, ignore=shutil.ignore_patterns("lock", "backups"))
        home = Home.open(Path(tmp) / original.name)
    try:
        settings = home.load_settings()
        tokenizer = Tokenizer.load(home.tokenizer_path)
        lesson = facts(settings.companion.name, settings.companion.owner, args.favourite)
        with home.lock(), Store.open(home.store_path) as store:
            if store.current_day() is not None:
                sys.exit("the companion has an open day; close it (or use another companion) first")
            weights = Weights(home, store)
            model = weights.load_current(device).model
            before = count(model, tokenizer, settings, lesson, args.samples)
            day_id = live_the_day(home, store, model, tokenizer, settings, lesson)
            del model
            report = run_night(home, store, day_id, settings, device,
                               on_event=lambda e: print(f"  {e.phase}", file=sys.stderr) if e.kind == "phase" else None)
            after = count(weights.load_current(device).model, tokenizer, settings, lesson, args.samples)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    n = args.samples
    print(f"\n{settings.companion.name} ({original.path}), {n} samples per question, device {device}\n")
    print("| fact | taught question: before | after | paraphrase: before | after |")
    print("|---|---:|---:|---:|---:|")
    for f in lesson:
        (tb, pb), (ta, pa) = before[f["fact"]], after[f["fact"]]
        print(f"| {f['fact']} ({f['key']}) | {tb}/{n} | {ta}/{n} | {pb}/{n} | {pa}/{n} |")
    print()
    print("\n".join(report_lines(report)))


if __name__ == "__main__":
    main()
