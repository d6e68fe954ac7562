"""The fault suite's harness: real homes, real processes, real SIGKILLs, and checks on what is on disk.

`tests/faults/test_kills.py` runs it short (a few kills per phase) in CI; `bench/faults.py` runs it long
by hand and prints the table. A *day trial* runs a real `DaySession` in a child process that prints one
acknowledgement line after every owner action returns (the turn, the candidates shown, a rating, a
pick, correction or written reply, an inner line, an annotation, a closed day), and is killed at a
random moment; then every acknowledged action must be in the store. A *night trial* runs
`companion sleep` in a child and kills it at a random moment of a chosen phase; then the next start
must find no leftover temporaries, weights that load with a verified checksum, and those weights must
be the pre-night ones (their file unchanged) or an accepted night's.

A *save trial* kills a child in the middle of writing a night-sized checkpoint (its temporary file on
disk): the next start must remove the temporary and name it.

Run a child by hand: `python -m tests.faults.harness day HOME SEED` (or `night HOME`, `save HOME`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BLOCK = 256
NAME = "Scout"
PHASES = ("dreaming", "probing", "preparing", "training", "checking", "saving")
QUICK_NIGHT = {"night.batch_tokens": 512, "night.learning_rate": 2e-3, "night.replay.tokens": 400,
               "night.day.tokens": 800, "night.preferences.tokens": 1200, "night.warmup_fraction": 0.1,
               "night.probe_bound": 1.0}
PROBE_WINDOWS = 2  # the quick child's probe: enough to exercise every phase, quick to score
MESSAGES = ["Hi there, how are you today?", "What is my name?", "Tell me about the sea.",
            "Do you remember the lighthouse?", "I made soup tonight.", "Good to see you."]


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("COLUMNS", None)
    return env


# ------------------------------------------------------------------------------------------ homes

def make_template(folder: Path) -> Path:
    """A companion home (tiny real model, real tokenizer, quick night settings) with one closed day
    whose night has not run. Returns the root folder holding it; copy it with `copy_home` per trial."""
    import torch

    from companion.birth.corpus import starter_documents
    from companion.home import Home
    from companion.store import Store
    from companion.history.weights import Weights
    from companion.model.tokenizer import train_tokenizer
    from companion.model.transformer import Transformer
    from tests.conftest import GOODNIGHT, GREETING, tiny_config
    from tests.test_night import script_day

    docs = starter_documents(held_out=False, greeting=GREETING, goodnight=GOODNIGHT, limit=300)
    tokenizer = train_tokenizer([t.text for doc in docs for t in doc], vocab_size=512)
    root = folder / "template"
    home = Home.create(root, NAME, owner="Trey", preset="seedling")
    tokenizer.save(home.tokenizer_path)
    settings = home.load_settings()
    for key, value in QUICK_NIGHT.items():
        settings = settings.with_value(key, value)
    home.save_settings(settings)
    torch.manual_seed(0)
    with Store.open(home.store_path) as store:
        Weights(home, store).save(Transformer(tiny_config(vocab_size=tokenizer.vocab_size, block_size=BLOCK)),
                                  "birth")
        script_day(home, store, tokenizer)
    return root


def copy_home(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest / NAME


# ------------------------------------------------------------------------------------------ the day

def day_child(home_path: str, seed: int) -> None:
    """Live days as fast as the store allows, acknowledging each action once its call has returned."""
    from companion.day import DaySession, MessageRefused
    from companion.home import Home
    from companion.store import Store
    from companion.model.tokenizer import Tokenizer

    rng = random.Random(seed)
    home = Home.open(home_path)
    _held = home.lock()  # held (by this process) until it is killed
    store = Store.open(home.store_path)
    tokenizer = Tokenizer.load(home.tokenizer_path)
    settings = home.load_settings()
    checkpoint = store.latest_checkpoint().id

    def ack(kind: str, **data) -> None:
        sys.stdout.write(json.dumps({"kind": kind, **data}) + "\n")
        sys.stdout.flush()

    print("READY", flush=True)
    while True:
        session = DaySession(home, store, tokenizer, settings, block_size=BLOCK, checkpoint_id=checkpoint)
        while session.is_open:
            text = rng.choice(MESSAGES)
            try:
                sent = session.send(text)
            except MessageRefused:
                session.good_night("full")
                ack("closed", day=session.day.id)
                break
            ack("turn", id=sent.owner_turn.id, text=text)
            cands = session.record_candidates([f"Reply {i} to {text}" for i in range(3)])
            ack("candidates", ids=[c.id for c in cands])
            stars = rng.randint(1, 4)
            session.rate(cands[1].id, stars)
            ack("rating", candidate=cands[1].id, stars=stars)
            how = rng.random()
            try:
                if how < 0.4:
                    reply = session.pick(cands[0].id)
                elif how < 0.7:
                    reply = session.correct(cands[2].id, "What I should have said.")
                else:
                    reply = session.write_reply("The reply the owner wanted.")
            except MessageRefused:
                session.good_night("full")
                ack("closed", day=session.day.id)
                break
            ack("turn", id=reply.turn.id, text=reply.turn.text)
            if rng.random() < 0.5:
                try:
                    inner = session.write_inner("I should listen more.")
                except MessageRefused:
                    inner = None
                if inner is not None:
                    ack("turn", id=inner.id, text=inner.text)
                    session.annotate(inner.id, ["keep"], "a good thought")
                    ack("annotation", turn=inner.id)
            closed = session.close_if_full()
            if closed is not None:
                ack("closed", day=closed.id)


@dataclass
class Trial:
    kind: str                 # "day" or the night phase the kill landed in
    acked: int = 0            # acknowledged actions before the kill
    lost: int = 0             # acknowledged actions missing afterwards
    unloadable: int = 0       # 1 when no weights load at the next start
    wrong_weights: int = 0    # 1 when the weights are neither the pre-night ones nor an accepted night's
    leftovers_before: int = 0  # temporaries found after the kill
    leftovers_after: int = 0   # temporaries still there after the next start
    store_ok: bool = True      # the store passes SQLite's integrity check after the kill
    notes: list[str] = field(default_factory=list)


def run_day_trial(home: Path, seed: int, rng: random.Random, most_s: float = 1.5) -> Trial:
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.harness", "day", str(home), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if line.strip() == "READY":
                ready.set()
            else:
                lines.append(line)
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(60)
    time.sleep(rng.uniform(0.02, most_s))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    err = proc.stderr.read()
    acks = []
    for line in lines:
        try:
            acks.append(json.loads(line))
        except ValueError:  # the kill cut the very line being written: that action was not acknowledged
            pass
    trial = Trial("day", acked=len(acks))
    if proc.returncode != -signal.SIGKILL:
        trial.notes.append(f"the day child ended by itself ({proc.returncode}): {err[-400:]}")
    trial.lost, trial.store_ok = check_day(home, acks)
    return trial


def check_day(home: Path, acks: list[dict]) -> tuple[int, bool]:
    """How many acknowledged actions the store lacks, and whether it passes its integrity check."""
    from companion.store import Store

    lost = 0
    with Store.open(home / "companion.db") as store:
        ok = store.integrity_check() == ["ok"]
        latest_stars: dict[int, int] = {}
        for a in acks:
            if a["kind"] == "turn":
                turn = store.get_turn(a["id"])
                lost += turn is None or turn.text != a["text"]
            elif a["kind"] == "candidates":
                lost += sum(store.get_candidate(i) is None for i in a["ids"])
            elif a["kind"] == "rating":
                latest_stars[a["candidate"]] = a["stars"]
            elif a["kind"] == "annotation":
                lost += store.annotation(turn_id=a["turn"]) is None
            elif a["kind"] == "closed":
                day = store.get_day(a["day"])
                lost += day is None or day.closed_at is None
        lost += sum(store.rating(c) != s for c, s in latest_stars.items())
    return lost, ok


# ------------------------------------------------------------------------------------------ the night

def night_child(home_path: str) -> int:
    """`companion sleep` with a 2-window probe (the CLI's is larger): the same start-up tidying, the same
    `run_night`, the phases said on stderr the same way."""
    from companion.home import Home
    from companion.night.pending import night_day
    from companion.night.pipeline import run_night
    from companion.safety.start import tidy_at_start
    from companion.store import Store

    home = Home.open(home_path)
    with home.lock(), Store.open(home.store_path) as store:
        tidy_at_start(home, store)
        day = night_day(store)

        def on_event(event) -> None:
            if event.kind == "phase":
                print(event.phase, file=sys.stderr, flush=True)

        report = run_night(home, store, day.id, on_event=on_event, probe_windows=PROBE_WINDOWS)
    print(report.status)
    return 0 if report.status in ("accepted", "nothing") else 1


def run_night_child(home: Path, *, kill_phase: str | None, delay: float, timeout: float = 600,
                    cli: bool = False) -> tuple[str, dict, int]:
    """Run a night in a child (`companion sleep` itself with `cli`, else the quick `night_child`); kill it
    `delay` seconds after `kill_phase` begins (never, with None). Returns (the phase it was in when
    killed, or "finished"), the phase start times, and the exit code."""
    command = (["-m", "companion", "--home", str(home), "sleep"] if cli
               else ["-m", "tests.faults.harness", "night", str(home)])
    proc = subprocess.Popen([sys.executable, *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=REPO)
    t0 = time.monotonic()
    starts: dict[str, float] = {}
    phase = ["starting"]
    killed = threading.Event()

    def read() -> None:
        buf = b""
        while True:
            chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                word = line.decode(errors="replace").split(":")[0].strip().split("\r")[-1].strip()
                if word in PHASES and not killed.is_set():
                    phase[0] = word
                    starts[word] = time.monotonic() - t0

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    end = t0 + timeout
    where = "finished"
    while proc.poll() is None and time.monotonic() < end:
        if kill_phase is not None and kill_phase in starts and time.monotonic() - t0 >= starts[kill_phase] + delay:
            killed.set()
            where = phase[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    if proc.poll() is None and not killed.is_set():
        proc.kill()
        where = "timeout"
    proc.wait()
    reader.join(5)
    proc.stdout.read()
    if killed.is_set() and proc.returncode != -signal.SIGKILL:
        where = "finished"  # it ended on its own just before the signal
    return where, starts, proc.returncode


def check_night(home_path: Path, pre_id: int, pre_checksum: str, day_turns: int) -> Trial:
    """The next start after a kill: leftovers removed, weights loadable, verified and legitimate."""
    from companion.home import Home
    from companion.safety.leftovers import find_leftovers
    from companion.safety.start import tidy_at_start
    from companion.store import Store
    from companion.history.weights import Weights
    from companion.model.checkpoint import CheckpointError, load_tensors, tensors_checksum

    home = Home.open(home_path)
    trial = Trial("night", leftovers_before=len(find_leftovers(home)))
    with home.lock(), Store.open(home.store_path) as store:
        trial.store_ok = store.integrity_check() == ["ok"]
        trial.notes += tidy_at_start(home, store)
        trial.leftovers_after = len(find_leftovers(home))
        weights = Weights(home, store)
        try:
            loaded = weights.load_current()
        except CheckpointError as exc:
            trial.unloadable = 1
            trial.notes.append(str(exc))
            return trial
        state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
        if tensors_checksum(state) != loaded.checkpoint.checksum:
            trial.unloadable = 1
        current = loaded.checkpoint
        legit = current.id == pre_id or (current.reason == "night" and weights.accepted(current))
        trial.wrong_weights = int(not legit)
        tensors, _ = load_tensors(weights.path_of(store.get_checkpoint(pre_id)))
        if tensors_checksum(tensors) != pre_checksum:
            trial.wrong_weights = 1
            trial.notes.append("the pre-night weights file changed")
        day = store.days()[0]
        trial.lost = max(0, day_turns - len(store.turns(day.id)))
        trial.acked = day_turns
    return trial


def night_baseline(template: Path) -> tuple[int, str, int]:
    from companion.store import Store

    with Store.open(template / NAME / "companion.db") as store:
        pre = store.latest_checkpoint()
        return pre.id, pre.checksum, len(store.turns(store.days()[0].id))


def run_night_trial(template: Path, dest: Path, phase: str, delay: float, cli: bool = False) -> Trial:
    home = copy_home(template, dest)
    pre_id, pre_checksum, turns = night_baseline(template)
    where, _, code = run_night_child(home, kill_phase=phase, delay=delay, cli=cli)
    trial = check_night(home, pre_id, pre_checksum, turns)
    trial.kind = where
    return trial


def calibrate_night(template: Path, dest: Path, cli: bool = False) -> dict[str, float]:
    """One night to the end: how long each phase lasts (kills are spread over these)."""
    home = copy_home(template, dest)
    t0 = time.monotonic()
    _, starts, code = run_night_child(home, kill_phase=None, delay=0, cli=cli)
    total = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"the calibration night ended with exit code {code}")
    order = [p for p in PHASES if p in starts]
    spans = {}
    for i, p in enumerate(order):
        nxt = starts[order[i + 1]] if i + 1 < len(order) else total
        spans[p] = max(0.01, nxt - starts[p])
    return spans


# ------------------------------------------------------------------------------------------ inside a save

def save_child(home_path: str) -> None:
    """Save a night-sized checkpoint again and again, as the night's last phase does (a wide model, so
    that each write lasts long enough to be killed in the middle of)."""
    import torch

    from companion.home import Home
    from companion.store import Store
    from companion.history.weights import Weights
    from companion.model.transformer import Transformer
    from tests.conftest import tiny_config

    home = Home.open(home_path)
    with home.lock(), Store.open(home.store_path) as store:
        weights = Weights(home, store)
        pre = weights.current()
        torch.manual_seed(0)
        model = Transformer(tiny_config(vocab_size=512, n_layer=4, n_embd=512, head_dim=64, block_size=BLOCK))
        print("READY", flush=True)
        while True:
            weights.save(model, "night", parent_id=pre.id, make_current=False)


def run_save_trial(template: Path, dest: Path, rng: random.Random) -> Trial:
    """SIGKILL a child in the middle of writing a checkpoint (as soon as its temporary file appears, plus
    a random moment), then make the next start and check what it finds."""
    home = copy_home(template, dest)
    pre_id, pre_checksum, turns = night_baseline(template)
    folder = home / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.harness", "save", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=REPO)
    proc.stdout.readline()  # READY
    delay = rng.uniform(0, 0.05)
    end = time.monotonic() + 120
    while time.monotonic() < end and proc.poll() is None:
        if any(p.name.endswith(".tmp") for p in folder.iterdir()):
            time.sleep(delay)
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    trial = check_night(home, pre_id, pre_checksum, turns)
    trial.kind = "inside a save"
    return trial


def table(trials: list[Trial]) -> str:
    """Trials per kind: acknowledged actions, losses, unloadable or wrong weights, leftovers."""
    rows = {}
    for t in trials:
        r = rows.setdefault(t.kind, Counter())
        r["trials"] += 1
        r["acked"] += t.acked
        r["lost"] += t.lost
        r["unloadable"] += t.unloadable
        r["wrong"] += t.wrong_weights
        r["tmp_before"] += t.leftovers_before
        r["tmp_after"] += t.leftovers_after
        r["store_bad"] += not t.store_ok
    head = (f"{'killed during':<14} {'trials':>6} {'acked':>7} {'lost':>5} {'unloadable':>10} {'wrong wts':>9} "
            f"{'tmp left':>8} {'tmp after start':>15} {'store bad':>9}")
    lines = [head, "-" * len(head)]
    order = ["day", *PHASES, "inside a save", "finished", "timeout"]
    for kind in sorted(rows, key=lambda k: order.index(k) if k in order else 99):
        r = rows[kind]
        lines.append(f"{kind:<14} {r['trials']:>6} {r['acked']:>7} {r['lost']:>5} {r['unloadable']:>10} {r['wrong']:>9} "
                     f"{r['tmp_before']:>8} {r['tmp_after']:>15} {r['store_bad']:>9}")
    total = Counter()
    for r in rows.values():
        total.update(r)
    lines.append(f"{'total':<14} {total['trials']:>6} {total['acked']:>7} {total['lost']:>5} {total['unloadable']:>10} "
                 f"{total['wrong']:>9} {total['tmp_before']:>8} {total['tmp_after']:>15} {total['store_bad']:>9}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "day":
        day_child(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "night":
        sys.exit(night_child(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "save":
        save_child(sys.argv[2])
    else:
        sys.exit("usage: python -m tests.faults.harness day HOME SEED | night HOME")
