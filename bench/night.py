"""How long a night takes, and how responsive the UI stays while it trains.

    python bench/night.py                      # seedling and v1 on the best device, default night settings
    python bench/night.py --presets seedling --device cpu --presses 100

For each preset: a companion with random-initialised weights (timing does not depend on what the
weights know), a full day lived through the real DaySession (questions, three candidates each, picks
and corrections, ratings, the indicators and the good-night line, until the next exchange would not fit
the day's share of the block), then one night with the companion's default night
settings, timed phase by phase. Then, while a seedling night trains in the trainer thread, a Textual
app showing the NightScreen is driven with `run_test`: each key press is timed from being sent to the
screen having handled it and refreshed (median and 95th percentile), with the same measure taken idle
for comparison. Prints small tables for the README.
"""

from __future__ import annotations

import argparse
import os
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from companion.compute.threads import training_claim, training_threads  # noqa: E402
from companion.home import Home  # noqa: E402
from companion.night.pipeline import run_night  # noqa: E402
from companion.day.scripted import Exchange, fill_day  # noqa: E402
from companion.store import Store  # noqa: E402
from companion.night.optimizer import best_device  # noqa: E402
from companion.history.weights import Weights  # noqa: E402
from companion.model.config import preset  # noqa: E402
from companion.model.tokenizer import Tokenizer, train_tokenizer  # noqa: E402
from companion.model.transformer import Transformer  # noqa: E402

QUESTIONS = ["How was your morning?", "What are you thinking about?", "Tell me about the sea.",
             "Do you remember what I said yesterday?", "What should I cook tonight?", "Why is the sky blue?"]
REPLIES = ["It was calm, thank you for asking.", "I was thinking about the rain and the old garden.",
           "The sea is wide and grey, and the gulls cry over it.", "You said you would call your sister.",
           "Something warm: a soup with lentils.", "Sunlight scatters; blue scatters most."]


def find_tokenizer(path: str | None) -> Tokenizer:
    candidates = [Path(path)] if path else [ROOT / "companion/seedling/tokenizer.json",
                                            *sorted(ROOT.glob("runs/seedling-home/*/tokenizer.json"))]
    for candidate in candidates:
        if candidate.is_file():
            print(f"tokenizer: {candidate}", file=sys.stderr)
            return Tokenizer.load(candidate)
    print("no tokenizer found: training an 8,192-token BPE on the starter corpus (a minute)", file=sys.stderr)
    from companion.birth.corpus import starter_documents

    docs = starter_documents(False, "Good morning, {companion}.", "Good night, {companion}.")
    return train_tokenizer((t.text for d in docs for t in d), vocab_size=8192)


def make_home(root: Path, tokenizer: Tokenizer, preset_name: str, steps: int = 0) -> Home:
    home = Home.create(root, f"Bench-{preset_name}", owner="Owner", preset=preset_name)
    if steps:
        settings = home.load_settings().with_value("night.steps", steps)
        home.save_settings(settings.with_value("night.lessons.steps", steps).with_value("night.lessons.finish_steps", 0.0))
    tokenizer.save(home.tokenizer_path)
    torch.manual_seed(0)
    model = Transformer(preset(preset_name, vocab_size=tokenizer.vocab_size))
    with Store.open(home.store_path) as store:
        Weights(home, store).save(model, "birth")
    return home


def scripted_exchanges(start: int = 0) -> Iterator[Exchange]:
    """Endless exchanges from the scripted lines: a question, three candidates (the line's reply first),
    picked or corrected in turn, the second candidate rated two stars. `start` shifts the first question."""
    for i in itertools.count(start):
        a = REPLIES[i % len(REPLIES)]
        options = (a, REPLIES[(i + 1) % len(REPLIES)], REPLIES[(i + 2) % len(REPLIES)])
        if i % 2:
            yield Exchange(QUESTIONS[i % len(QUESTIONS)], options, correct=(0, a), rate={1: 2})
        else:
            yield Exchange(QUESTIONS[i % len(QUESTIONS)], options, pick=0, rate={1: 2})


def full_day(home: Home, store: Store, tokenizer: Tokenizer, block_size: int) -> int:
    """A closed day lived through the real DaySession until the next exchange would not fit; its id."""
    day, _ = fill_day(home, store, scripted_exchanges(), tokenizer, block_size=block_size,
                      checkpoint_id=Weights(home, store).current().id)
    return day.id


def time_night(preset_name: str, tokenizer: Tokenizer, device: str, root: Path, steps: int = 0) -> dict:
    home = make_home(root, tokenizer, preset_name, steps)
    block = preset(preset_name).block_size
    marks: list[tuple[str, float]] = []
    with Store.open(home.store_path) as store:
        day_id = full_day(home, store, tokenizer, block)
        t0, c0 = time.perf_counter(), time.process_time()

        def on_event(event) -> None:
            if event.kind == "phase":
                marks.append((event.phase, time.perf_counter()))

        report = run_night(home, store, day_id, device=device, on_event=on_event)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    marks.append(("end", t0 + total))
    phases: dict[str, float] = {}
    for (name, at), (_, end) in zip(marks, marks[1:]):  # recalling runs twice (before and after): both count
        phases[name] = phases.get(name, 0.0) + end - at
    return {"preset": preset_name, "status": report.status, "steps": report.steps,
            "tokens": sum(report.material.values()), "total_s": total, "cpu_s": cpu, "phases": phases,
            "day_tokens": store_day_tokens(home, day_id)}


def store_day_tokens(home: Home, day_id: int) -> int:
    with Store.open(home.store_path) as store:
        return store.tokens_used(day_id)


async def _presses(app, count: int, gap_s: float) -> list[float]:
    """Send each key the way the terminal driver does, and time it until the echo widget has rendered
    the key's effect. (Not `pilot.press`: it waits for the whole process to go idle, which a process
    that is training never does.)"""
    from textual import events

    out = []
    for _ in range(count):
        n = app.count + 1
        t = time.perf_counter()
        app._driver.send_message(events.Key("x", "x"))
        deadline = t + 30
        while n not in app.rendered and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        out.append((app.rendered.get(n, deadline) - t) * 1000)
        await asyncio.sleep(gap_s)
    return out


def latency(tokenizer: Tokenizer, device: str, root: Path, presses: int) -> dict:
    """Key-to-screen latency (ms) idle and while a seedling night trains in the trainer thread."""
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    from companion.screens.night import NightScreen
    from companion.night.thread import TrainerThread

    class Echo(Static):
        """Records when it first renders each key count: the moment the key reached the screen."""

        def render(self):
            self.app.rendered.setdefault(self.app.count, time.perf_counter())
            return super().render()

    class EchoScreen(NightScreen):
        def compose(self) -> ComposeResult:
            yield Echo("", id="echo")
            yield from super().compose()

    class Bench(App):
        count = 0

        def __init__(self, screen):
            super().__init__()
            self.night_screen = screen
            self.rendered: dict[int, float] = {}

        def on_mount(self) -> None:
            self.push_screen(self.night_screen)

        def on_key(self, event) -> None:
            self.count += 1
            self.screen.query_one("#echo", Static).update(f"key {event.key} #{self.count}")

    home = make_home(root, tokenizer, "seedling")
    with Store.open(home.store_path) as store:
        day_id = full_day(home, store, tokenizer, preset("seedling").block_size)

    async def scenario() -> dict:
        screen = EchoScreen(day_number=1)
        app = Bench(screen)
        async with app.run_test(size=(100, 40)):
            idle = await _presses(app, max(20, presses // 3), 0.01)
            trainer = TrainerThread(home, day_id, on_event=screen.forwarder(), device=device)
            trainer.start()
            while screen.query_one("NightProgress").step < 1 and trainer.is_alive():
                await asyncio.sleep(0.05)
            busy = await _presses(app, presses, 0.02)
            still = trainer.is_alive()
            trainer.stop()
            while trainer.is_alive():
                await asyncio.sleep(0.05)
        return {"idle": idle, "training": busy, "trained_throughout": still}

    return asyncio.run(scenario())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["seedling", "v1"])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--tokenizer", help="a tokenizer.json (default: the seedling's, else one is trained)")
    parser.add_argument("--presses", type=int, default=60, help="key presses timed while the night trains")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--steps", type=int, default=0, help="fix the night's steps, a lesson night's too, with no finish line (0: auto, as in the app)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for the night (0: the app's automatic count, `[night] threads` = 0)")
    args = parser.parse_args()
    device = args.device or str(best_device())
    tokenizer = find_tokenizer(args.tokenizer)
    print(f"device {device}, torch threads {training_threads(args.threads)} at the start "
          f"({'set before every step, as the app does' if not args.threads else 'fixed'}), torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        with training_claim(args.threads):  # the trainer thread's rule (companion.compute.threads)
            rows = [time_night(p, tokenizer, device, Path(tmp) / p, args.steps) for p in args.presets]
        print("\n| preset | day tokens | night tokens | steps | dream | probe x2 | prepare | train | save | total |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            ph = r["phases"]
            print(f"| {r['preset']} | {r['day_tokens']:,} | {r['tokens']:,} | {r['steps']} | {ph.get('dreaming', 0):.1f} s"
                  f" | {ph.get('probing', 0) + ph.get('checking', 0):.1f} s | {ph.get('preparing', 0):.1f} s"
                  f" | {ph.get('training', 0):.1f} s | {ph.get('saving', 0):.1f} s | {r['total_s']:.1f} s |"
                  f"  ({r['status']})")
        for r in rows:  # every phase, recalling (lessons asked before and after training) included
            print(f"{r['preset']} (CPU {r['cpu_s']:.1f} s): " + ", ".join(f"{name} {sec:.1f} s" for name, sec in r["phases"].items()))
        if not args.no_latency:
            lat = latency(tokenizer, device, Path(tmp) / "latency", args.presses)
            print("\n| key-to-screen | presses | median | p95 |")
            print("|---|---:|---:|---:|")
            for name in ("idle", "training"):
                v = lat[name]
                print(f"| {name} | {len(v)} | {statistics.median(v):.1f} ms | {pct(v, 0.95):.1f} ms |")
            if not lat["trained_throughout"]:
                print("(the night ended before the presses did: raise the night's size or lower --presses)")


if __name__ == "__main__":
    main()
