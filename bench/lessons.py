"""Lessons that stick, measured: teach facts through the real day, sleep the real night N times, and
count what the companion says back, asked afresh.

    companion birth --name Sprout --owner Ana --from-seedling --home /tmp/lessons
    python bench/lessons.py --home /tmp/lessons --facts bench/facts.json --nights 5 --samples 20 \
        [--heldout CONVERSATIONS.json] [--json OUT]

FACTS.json is a list of {"question", "answer", "key", "paraphrases": [...]} (`key`: the words that
must appear in a reply for it to count; `paraphrases`: other ways to ask, never taught).

Works on a copy of the companion (never the original, unless --in-place). Day 1 is lived through
the real `DaySession` as an owner would: each fact is asked; the companion's candidates are sampled
by the real engine; the owner corrects the first candidate into the answer for the first three facts
and writes the reply for the others (each is recorded as a lesson by the store); after each reply the
app's inner-voice rule runs; the rest of the day is ordinary chat (lines from the starter corpus's
training side, the first candidate picked) until the good-night line. Later days are ordinary chat
only: the nights teach what the store holds. After each real night (the companion's own settings),
measured on the weights that are current then:

* recall: replies, of S per question, that contain the key (taught phrasing; paraphrases never taught);
* cross-talk: replies to a taught question that contain another fact's key (out of facts x S);
* intrusion: replies to the ordinary owner lines of the held-out starter corpus that the night's own
  check asks (`[night.lessons] intrusion_lines`, ten by default; five before) that contain any key
  (out of lines x S);
* the mean log-probability of the taught answers asked in a fresh morning; the probe perplexity (the
  night's own probe set); drift since the anchor (birth/adoption/growth/import); perplexity on the
  companion's lines of --heldout (a list of conversations, each a list of alternating lines, the
  owner first), and the night's wall time (and its CPU time, which is what it would take on an idle
  machine at --threads 1, whatever else the machine was doing).

Every reply is asked as `companion.lessons.recall` asks (a fresh day built as the day builds it, the
companion's sampling settings, fixed seeds; replies capped at 32 tokens).

S samples with fixed seeds are one draw of what the weights say: a fact said in 95% of replies shows
19 or 20 of 20 only 74% of the time. With `--rates N` each night also asks every taught question and
every ordinary line N more times with other seeds and prints the rates they estimate (a fact's rate
to within about 0.01 at N=400), and from them the chance that one S-sample measure finds every fact
in at least 95% of its samples (19 of 20): what "every fact at 19 of 20" would be on a rerun; and
each taught answer's exact probability of being drawn whole in a fresh morning (the night's own
finish-line measure, `companion.lessons.margin.drawn_whole`), which the rates sit just above.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class FactsError(ValueError):
    """A facts or conversations file that cannot be used; the message names the file and the entry."""


def read_facts(path: Path) -> list[dict]:
    """The facts, checked: a list of objects with a non-empty question, answer and key, and a list of
    paraphrases (strings). Errors name the file, the entry (by number and question) and the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FactsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise FactsError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise FactsError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, list) or not data:
        raise FactsError(f"{path}: must be a non-empty JSON list of facts, each "
                         '{"question", "answer", "key", "paraphrases": [...]}')
    facts, keys = [], set()
    for i, entry in enumerate(data, 1):
        where = f"{path}: fact {i}"
        if not isinstance(entry, dict):
            raise FactsError(f"{where} must be an object, not {type(entry).__name__}")
        if isinstance(entry.get("question"), str) and entry["question"].strip():
            where += f" ({entry['question'].strip()!r})"
        for name in ("question", "answer", "key"):
            if name not in entry:
                raise FactsError(f"{where} has no {name!r}")
            if not isinstance(entry[name], str) or not entry[name].strip():
                raise FactsError(f"{where}: {name!r} must be non-empty text")
        paraphrases = entry.get("paraphrases", [])
        if not isinstance(paraphrases, list) or not all(isinstance(p, str) and p.strip() for p in paraphrases):
            raise FactsError(f"{where}: 'paraphrases' must be a list of non-empty texts")
        unknown = sorted(set(entry) - {"question", "answer", "key", "paraphrases"})
        if unknown:
            raise FactsError(f"{where}: unknown field {unknown[0]!r} (fields: question, answer, key, paraphrases)")
        if entry["key"].strip().lower() in keys:
            raise FactsError(f"{where}: key {entry['key']!r} is another fact's key too; keys tell facts apart")
        keys.add(entry["key"].strip().lower())
        facts.append({"question": entry["question"].strip(), "answer": entry["answer"].strip(),
                      "key": entry["key"].strip(), "paraphrases": [p.strip() for p in paraphrases]})
    return facts


def read_conversations(path: Path) -> list[list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FactsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FactsError(f"{path}: not valid JSON text ({exc})") from None
    if not isinstance(data, list) or not data:
        raise FactsError(f"{path}: must be a non-empty JSON list of conversations (each a list of lines)")
    for i, conv in enumerate(data, 1):
        if not isinstance(conv, list) or len(conv) < 2 or not all(isinstance(x, str) and x.strip() for x in conv):
            raise FactsError(f"{path}: conversation {i} must be a list of at least two non-empty lines")
    return data


# ---------------------------------------------------------------------------------------------------


def live_day(home, store, engine, settings, teach: list[dict], chat: list[tuple[str, str]], rng) -> int:
    """One day through the real DaySession (`companion.day.scripted`: the model's own candidates and
    inner lines, each round sampled and recorded by a `Round` as the app does): the facts to teach
    (corrections, then written replies), then ordinary chat until the day is nearly full; the good-night
    line. Returns the day's id."""
    from companion.day import MessageRefused
    from companion.day.scripted import Exchange, ScriptedDay

    day = ScriptedDay(home, store, engine.tokenizer, settings, block_size=engine.block_size,
                      checkpoint_id=engine.checkpoint_id, engine=engine)

    def exchange(script: Exchange) -> bool:
        try:
            lived = day.ask(script)
        except MessageRefused:
            return False
        try:
            day.answer(lived, script)
        except MessageRefused:  # no room for the answer: write the shortest reply that fits
            day.answer(lived, Exchange(script.say, write="Yes."))
        return True

    for i, fact in enumerate(teach):
        script = (Exchange(fact["question"], correct=(0, fact["answer"])) if i < 3
                  else Exchange(fact["question"], write=fact["answer"]))
        if not exchange(script):
            print(f"  the day is full: {fact['question']!r} was not asked", file=sys.stderr)
    for _ in range(6):
        line, _reply = rng.choice(chat)
        if day.session.room < day.session.cost(line) + 40 or not exchange(Exchange(line, pick=0)):
            break
    return day.good_night().id


def _parser() -> argparse.ArgumentParser:
    """The bench's command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--home", required=True, help="folder of companions (or one companion's home)")
    parser.add_argument("--name", help="which companion, when the folder holds several")
    parser.add_argument("--facts", required=True, type=Path, help="JSON list of facts (see above)")
    parser.add_argument("--nights", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20, help="replies sampled per question (default 20)")
    parser.add_argument("--heldout", type=Path, help="JSON list of conversations (lists of alternating lines)")
    parser.add_argument("--json", type=Path, help="write the per-night results here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--in-place", action="store_true", help="teach the companion itself, not a copy")
    parser.add_argument("--rates", type=int, default=0, metavar="N",
                        help="also estimate each fact's and the intrusion's true rate from N more samples (other seeds)")
    return parser


@dataclass
class Measurer:
    """What the companion says now, measured the same way before the first night and after each."""

    engine: object
    settings: object
    facts: list
    taught: list
    paraphrased: list
    lines: list
    probe: object
    anchor_ppl: float | None
    conversations: list | None
    samples: int
    rates: int = 0

    def row(self, night: int, seconds: float | None, status: str) -> dict:
        """One night's row: recall, paraphrases, cross-talk, intrusion, log-probs, probe, drift, held-out."""
        from companion.lessons.recall import measure
        from companion.night.guards import probe_score

        engine, settings, facts, taught, paraphrased = self.engine, self.settings, self.facts, self.taught, self.paraphrased
        lines, probe, anchor_ppl, conversations = self.lines, self.probe, self.anchor_ppl, self.conversations
        samples, tok = self.samples, engine.tokenizer
        model = engine.model
        rec = measure(model, tok, settings, taught, samples, ordinary=lines)
        par = measure(model, tok, settings, paraphrased, samples)
        score = probe_score(model, probe)
        logp = [answer_logprob(model, tok, settings, f["question"], f["answer"]) for f in facts]
        row = {
            "night": night, "status": status,
            "recall": {f["key"]: r.total for f, r in zip(facts, rec.lessons)},
            "paraphrase_recall": {f["key"]: 0 for f in facts},
            "crosstalk": rec.crosstalk, "intrusion": rec.intrusion, "intrusion_samples": rec.intrusion_samples,
            "answer_logprob": sum(logp) / len(logp),
            "probe_ppl": score.ppl,
            "drift": (score.starter_ppl / anchor_ppl - 1) if anchor_ppl and score.starter_ppl else None,
            "heldout_ppl": heldout_ppl(model, tok, conversations) if conversations else None,
            "seconds": seconds,
            "examples": {f["key"]: r.examples[:2] for f, r in zip(facts, rec.lessons)},
            "intrusion_examples": rec.intrusion_examples[:3],
        }
        for p, r in zip(paraphrased, par.lessons):
            row["paraphrase_recall"][p.key] += r.total
        if self.rates:
            row.update(true_rates(model, tok, settings, taught, lines, self.rates, samples))
        return row


RATE_DRAWS = 7_000_003  # the --rates samples' seeds, shifted from the measure's own


def true_rates(model, tokenizer, settings, taught, lines, n: int, samples: int) -> dict:
    """Each taught question's rate of replies that say its key, and the ordinary lines' rate of replies
    that carry any key, from `n` samples each (`measure` with other seeds); and the chance that a
    `samples`-sample measure finds every fact in at least 95% of its samples."""
    from companion.lessons.margin import drawn_whole
    from companion.lessons.recall import measure

    out = measure(model, tokenizer, settings, taught, n, ordinary=lines, phrasings=False, draws=RATE_DRAWS,
                  keep_examples=10)
    whole = drawn_whole(model, tokenizer, settings, model.config.block_size, taught)
    rates = {x.key: r.total / n for x, r in zip(taught, out.lessons)}
    need = math.ceil(0.95 * samples)
    reliable = 1.0
    for rate in rates.values():
        reliable *= sum(math.comb(samples, k) * rate ** k * (1 - rate) ** (samples - k) for k in range(need, samples + 1))
    return {"rates": rates, "reliable": reliable, "drawn_whole": {x.key: w for x, w in zip(taught, whole)},
            "intrusion_rate": out.intrusion / out.intrusion_samples if out.intrusion_samples else None,
            "rate_samples": n, "rate_intrusion_examples": out.intrusion_examples}


def _working_home(args):
    """The companion the bench teaches: a copy of it in a temporary folder (returned too, to remove
    afterwards), or the companion itself with --in-place."""
    from companion.home import Home, resolve_root

    original = Home.open(resolve_root(args.home), args.name)
    if args.in_place:
        return original, None
    tmp = tempfile.mkdtemp(prefix="lessons-")
    shutil.copytree(original.path, Path(tmp) / original.name, ignore=shutil.ignore_patterns("lock", "backups"))
    return Home.open(Path(tmp) / original.name), tmp


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.nights < 0 or args.samples < 1:
        parser.error("--nights must be at least 0 and --samples at least 1")
    try:
        facts = read_facts(args.facts)
        conversations = read_conversations(args.heldout) if args.heldout else None
    except FactsError as exc:
        print(f"bench/lessons.py: {exc}", file=sys.stderr)
        return 2

    import random

    import torch

    from companion.engine import Engine
    from companion.history.weights import Weights
    from companion.home import HomeError
    from companion.lessons.cards import ordinary_exchanges
    from companion.lessons.recall import intrusion_lines
    from companion.lessons.text import LessonText
    from companion.night.guards import ProbeSet, build_probe, find_anchor, probe_score
    from companion.night.report import report_lines
    from companion.store import Store

    torch.set_num_threads(args.threads)
    try:
        home, tmp = _working_home(args)
    except (HomeError, OSError) as exc:
        print(f"bench/lessons.py: {exc}", file=sys.stderr)
        return 2
    rows = []
    try:
        settings = home.load_settings()
        taught = [LessonText(f["question"], f["answer"], key=f["key"]) for f in facts]
        paraphrased = [LessonText(p, f["answer"], key=f["key"]) for f in facts for p in f["paraphrases"]]
        lines = intrusion_lines(settings, settings.night.lessons.intrusion_lines)  # the lines the night checks
        chat = list(ordinary_exchanges(settings))
        rng = random.Random(0)
        with home.lock(), Store.open(home.store_path) as store:
            if store.current_day() is not None:
                print("bench/lessons.py: the companion has an open day; close it (or use another companion)",
                      file=sys.stderr)
                return 2
            engine = Engine.load(home, store, args.device)
            tok, block = engine.tokenizer, engine.block_size
            probe = build_probe(tok, store, settings.day.greeting, settings.day.goodnight, block)
            anchor = find_anchor(store, Weights(home, store).current(), settings.night.anchor)
            anchor_ppl = None
            if anchor is not None:
                anchor_ppl = probe_score(Weights(home, store).load(anchor, args.device).model,
                                         ProbeSet(starter=probe.starter)).starter_ppl

            measurer = Measurer(engine, settings, facts, taught, paraphrased, lines, probe, anchor_ppl,
                                conversations, args.samples, args.rates)
            measure_now = measurer.row

            rows.append(measure_now(0, None, "before"))
            print_row(rows[-1], facts, args.samples, header=True)
            for night in range(1, args.nights + 1):
                day_id = live_day(home, store, engine, settings, facts if night == 1 else [], chat, rng)
                report, row = sleep_and_measure(home, store, day_id, settings, args.device, engine,
                                                lambda seconds, status, n=night: measure_now(n, seconds, status),
                                                args.threads)
                rows.append(row)
                print_row(row, facts, args.samples)
                print(f"  night {night} ({report.steps} steps): "
                      + ", ".join(f"{name} {s:.1f} s" for name, s in row["phases"].items()), flush=True)
                if args.json:  # after every night: a run stopped by a deadline keeps what it measured
                    _write_json(args.json, args.samples, facts, rows)
            print()
            print("\n".join(report_lines(report)) if args.nights else "")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        _write_json(args.json, args.samples, facts, rows)
    return 0


def sleep_and_measure(home, store, day_id: int, settings, device: str, engine, measure_now, threads: int = 1):
    """The real night on `day_id`, timed (wall, CPU and per phase), then the engine reloaded and the
    companion measured; returns the night's report and its row. The night trains on `threads` (a
    fixed claim, as the app's trainer thread holds one: the day's generations set the count to the
    engine's own, so without it the night ran on that count, not --threads)."""
    from companion.compute.threads import training_claim
    from companion.night.pipeline import run_night

    t0, c0 = time.monotonic(), time.process_time()
    progress = Progress()
    with training_claim(threads):
        report = run_night(home, store, day_id, settings, device, on_event=progress)
    seconds, cpu = time.monotonic() - t0, time.process_time() - c0
    engine.reload()
    if report.status != "accepted":
        print(f"  {report.status}: {report.reason}", file=sys.stderr)
    row = measure_now(seconds, report.status)
    row["cpu_seconds"] = cpu  # the night's CPU time: its wall time on idle cores, whatever the load
    row["phases"] = progress.phases(seconds)
    row["steps"] = report.steps
    row["precision"] = report.precision  # what its steps computed in (companion.compute.precision)
    return report, row


def _write_json(path: Path, samples: int, facts: list[dict], rows: list[dict]) -> None:
    out = {"samples": samples, "facts": facts, "nights": rows}
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class Progress:
    """The night's phases and every tenth step, on stderr (a long night under load is not silent), and
    each phase's wall time (a phase that runs twice, as recalling does before and after training,
    adds up): what the README's per-phase table of a night reads."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, event) -> None:
        if event.kind == "phase":
            self.marks.append((event.phase, event.elapsed_s))
            print(f"  {event.elapsed_s:6.0f} s  {event.phase} {event.text}", file=sys.stderr, flush=True)
        elif event.kind == "step" and (event.step % 10 == 0 or event.step == event.total):
            print(f"  {event.elapsed_s:6.0f} s  step {event.step}/{event.total} loss {event.loss:.3f}",
                  file=sys.stderr, flush=True)

    def phases(self, total_s: float) -> dict[str, float]:
        """Seconds per phase, in the order first met; the last phase runs until `total_s`."""
        out: dict[str, float] = {}
        ends = [at for _, at in self.marks[1:]] + [total_s]
        for (name, at), end in zip(self.marks, ends):
            out[name] = out.get(name, 0.0) + max(0.0, end - at)
        return out


def answer_logprob(model, tokenizer, settings, question: str, answer: str) -> float:
    """Log-probability of the answer's tokens (and its end) asked first thing in a fresh day."""
    from companion.lessons.margin import answer_logprobs
    from companion.lessons.morning import asked_prompt, reply_ids

    prompt = asked_prompt(settings, tokenizer, model.config.block_size, question)
    answer_ids = reply_ids(tokenizer, answer)
    import torch

    with torch.no_grad():
        return float(answer_logprobs(model, [prompt], [answer_ids], mean=False)[0])


def heldout_ppl(model, tokenizer, conversations: list[list[str]]) -> float:
    """Perplexity on the companion's lines (every second line) of the conversations, each formatted by
    the one transcript formatter."""
    import torch

    from companion.transcript import Turn, training_example
    from companion.model.loss import summed_nll

    total, count = 0.0, 0
    block = model.config.block_size
    with torch.no_grad():
        for conv in conversations:
            turns = [Turn("owner" if i % 2 == 0 else "companion", line) for i, line in enumerate(conv)]
            inputs, targets, _ = training_example(tokenizer, turns, {"companion": 1.0})
            for start in range(0, len(inputs), block):
                idx = torch.tensor([inputs[start:start + block]])
                tgt = torch.tensor([targets[start:start + block]])
                if (tgt != -100).sum() == 0:
                    continue
                logits, _ = model(idx)
                total += float(summed_nll(logits, tgt))
                count += int((tgt != -100).sum())
    return math.exp(total / count) if count else float("nan")


def print_row(row: dict, facts: list[dict], samples: int, header: bool = False) -> None:
    n = len(facts)
    if header:
        print(f"\n{n} facts, {samples} samples per question; recall and cross-talk out of {n * samples}, "
              f"intrusion out of {row['intrusion_samples']}\n")
        print("| night | status | recall (taught) | paraphrases | cross-talk | intrusion | answer log-prob "
              "| probe ppl | drift | held-out ppl | night s |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    num = lambda v, f: "—" if v is None else format(v, f)  # noqa: E731
    per = " ".join(str(v) for v in row["recall"].values())
    paraphrase_total = sum(row["paraphrase_recall"].values())
    para_n = sum(len(f["paraphrases"]) for f in facts) * samples
    print(f"| {row['night']} | {row['status']} | {sum(row['recall'].values())} ({per}) | {paraphrase_total}/{para_n} "
          f"| {row['crosstalk']} | {row['intrusion']}/{row['intrusion_samples']} | {row['answer_logprob']:.2f} "
          f"| {row['probe_ppl']:.2f} | {num(row['drift'], '+.1%')} | {num(row['heldout_ppl'], '.2f')} "
          f"| {num(row['seconds'], '.0f')} |", flush=True)
    if "rates" in row:
        need = math.ceil(0.95 * samples)
        print(f"  rates from {row['rate_samples']} more samples each: "
              + " ".join(f"{k} {v:.3f}" for k, v in row["rates"].items())
              + f"; every fact at {need}+ of {samples}: {row['reliable']:.0%} of reruns"
              + f"; intrusion {row['intrusion_rate']:.3f}", flush=True)
        print("  drawn whole (exact, the taught answer's own tokens): "
              + " ".join(f"{k} {v:.3f}" for k, v in row["drawn_whole"].items()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
