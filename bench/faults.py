"""The fault suite, long: many real kills, a real full disk, and every corruption the fault hunt found.

    python bench/faults.py                              # 60 day kills, 60 night kills, full disk, corruptions
    python bench/faults.py --day-kills 10 --night-kills 12 --save-kills 5 --no-disk

Day kills: a real `DaySession` in a child process acknowledges every owner action once it returns,
and is SIGKILLed at a random moment; every acknowledged action must be in the store. Night kills:
`companion sleep` in a child, killed at a random moment of a phase (round robin over dreaming,
probing, preparing, training, checking and saving, the moment drawn within the phase's measured
length), and kills inside the write of a night-sized checkpoint; the next start must leave no temporary file, and the weights must load with a verified
checksum and be either the untouched pre-night weights or an accepted night's. Full disk: a small
tmpfs (root only; otherwise those rows say skipped). Corruptions: each applied to a fresh copy of a
companion, then a command is run; it must end in a sentence (no traceback) and change nothing it
should not. Prints one table per part; torch runs on one thread in every child.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.harness import (  # noqa: E402
    PHASES, REPO, calibrate_night, child_env, copy_home, make_template, run_day_trial, run_night_trial,
    run_save_trial, table,
)


def cli(home: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "companion", "--home", str(home), *argv], capture_output=True,
                          text=True, env=child_env(), cwd=REPO, input=stdin, timeout=600)


def sentence(done: subprocess.CompletedProcess) -> str:
    text = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""])[-1]
    return text if len(text) <= 110 else text[:107] + "..."


# ------------------------------------------------------------------------------------------ corruptions

def _overwrite_middle(path: Path, n: int = 8192) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(max(0, size // 2 - n // 2))
        fh.write(os.urandom(n))


def _fill_store(home: Path) -> None:
    from companion.store import Store

    with Store.open(home / "companion.db") as store:
        day = store.open_day(10_000)
        for i in range(400):
            store.add_turn(day.id, "owner", f"line {i}: " + "the lighthouse keeper counts the waves " * 6, "typed")
        store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _current_file(home: Path) -> Path:
    pointer = json.loads((home / "checkpoints" / "CURRENT").read_text())
    return home / pointer["path"]


def _newer_checkpoint(home: Path, reason: str = "nursery", day_night: bool = False) -> None:
    """Save a second checkpoint over the birth one (so a damaged current one has something to fall back to)."""
    import torch

    from companion.home import Home
    from companion.store import Store
    from companion.history.weights import Weights

    h = Home.open(home)
    with Store.open(h.store_path) as store:
        weights = Weights(h, store)
        loaded = weights.load_current()
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.add_(0.01)
        if day_night:  # what the old commit order left after a crash: saved, current, night never recorded
            day = store.days()[0]
            store.start_night(day.id, loaded.checkpoint.id)
            weights.save(loaded.model, "night", day_id=day.id, parent_id=loaded.checkpoint.id, make_current=True)
        else:
            weights.save(loaded.model, reason, parent_id=loaded.checkpoint.id)


def _load_current_notes(home: Path) -> str:
    from companion.home import Home
    from companion.store import Store
    from companion.history.weights import Weights

    h = Home.open(home)
    with Store.open(h.store_path) as store:
        loaded = Weights(h, store).load_current()
        return f"lives on checkpoint {loaded.checkpoint.id}: " + " | ".join(loaded.notes)


def corruption_trials(template: Path, base: Path) -> list[tuple[str, bool, str]]:
    """(what was done, whether the outcome is the one wanted, what the owner read)."""
    rows = []

    def trial(name: str, corrupt, check):
        home = copy_home(template, base / f"c{len(rows):02d}")
        try:
            corrupt(home)
            ok, said = check(home)
        except Exception as exc:  # a trial that crashes is a failed trial, reported as such
            ok, said = False, f"harness error: {type(exc).__name__}: {exc}"
        rows.append((name, ok, said))

    def command_says(*argv, code=2, phrase=""):
        def check(home):
            done = cli(home, *argv)
            ok = done.returncode == code and "Traceback" not in done.stderr and phrase in (done.stderr + done.stdout)
            return ok, f"exit {done.returncode}: {sentence(done)}"
        return check

    _store_trials(trial, command_says)
    _file_trials(trial, command_says)
    return rows


def _store_trials(trial, command_says) -> None:
    """The store damaged in every way a disk or a stranger can damage it."""
    trial("store: 8 KB overwritten mid-file", lambda h: (_fill_store(h), _overwrite_middle(h / "companion.db")),
          command_says("days", phrase="is damaged"))
    trial("store: same, `checkpoints`", lambda h: (_fill_store(h), _overwrite_middle(h / "companion.db")),
          command_says("checkpoints", phrase="is damaged"))
    trial("store: same, `backup` refuses it", lambda h: (_fill_store(h), _overwrite_middle(h / "companion.db")),
          command_says("backup", phrase="damaged"))

    def recover(home):
        _fill_store(home)
        if cli(home, "backup").returncode != 0:
            return False, "the backup before the damage failed"
        _overwrite_middle(home / "companion.db")
        done = cli(home, "recover-store", "--yes")
        aside = list(home.glob("companion.db.damaged-*"))
        ok = done.returncode == 0 and len(aside) == 1 and cli(home, "days").returncode == 0
        return ok, f"exit {done.returncode}: {sentence(done)}"
    trial("store: damaged, `recover-store` from the backup", lambda h: None, recover)
    trial("store: damaged, no verified backup", lambda h: (_fill_store(h), _overwrite_middle(h / "companion.db")),
          command_says("recover-store", "--yes", phrase="no verified backup"))
    trial("store: truncated to half", lambda h: (_fill_store(h), os.truncate(h / "companion.db",
                                                                          (h / "companion.db").stat().st_size // 2)),
          command_says("days"))
    trial("store: header zeroed", lambda h: _overwrite_middle_at(h / "companion.db", 0, 100),
          command_says("days", phrase="companion.db"))
    trial("store: a stranger's SQLite file", _stranger_db, command_says("days", phrase="not a companion store"))
    trial("store: garbage appended to the WAL", lambda h: _append(h / "companion.db-wal", os.urandom(5000)),
          command_says("days", code=0))


def _file_trials(trial, command_says) -> None:
    """Checkpoints, the CURRENT pointer, temporaries, settings, tokenizer, books and typed text."""
    def damaged_current(corrupt_file):
        def corrupt(home):
            _newer_checkpoint(home)
            corrupt_file(_current_file(home))

        def check(home):
            said = _load_current_notes(home)
            done = cli(home, "checkpoints")
            ok = "lives on checkpoint 1" in said and "DAMAGED" in done.stdout and done.returncode == 0
            return ok, said[:110]
        return corrupt, check
    trial("checkpoint: current file truncated", *damaged_current(lambda p: os.truncate(p, p.stat().st_size // 2)))
    trial("checkpoint: bytes flipped in a tensor", *damaged_current(lambda p: _overwrite_middle(p, 64)))
    trial("CURRENT: garbled", lambda h: (h / "checkpoints" / "CURRENT").write_text("{not json"),
          lambda h: ("unreadable" in (s := _load_current_notes(h)), s[:110]))
    trial("CURRENT: names an unrecorded checkpoint", lambda h: (h / "checkpoints" / "CURRENT").write_text(
        json.dumps({"id": 99, "path": "checkpoints/x.safetensors"})),
          lambda h: ("not recorded" in (s := _load_current_notes(h)), s[:110]))
    trial("CURRENT: on a night never accepted", lambda h: _newer_checkpoint(h, day_night=True),
          lambda h: ("never recorded as accepted" in (s := _load_current_notes(h)) and "checkpoint 1:" in s, s[:110]))
    trial("temporary: a night's half-written checkpoint", lambda h: (h / "checkpoints" /
                                                                     ".20261130-000000-night.safetensors.x1y2.tmp"
                                                                     ).write_bytes(b"\0" * 300_000),
          lambda h: _tmp_removed(h))
    trial("settings: garbled companion.toml", lambda h: (h / "companion.toml").write_text("[companion\nname ="),
          command_says("checkpoints", phrase="companion.toml"))
    trial("settings: companion.preset = \"v9\"", lambda h: _sub(h / "companion.toml", 'preset = "seedling"',
                                                              'preset = "v9"'),
          command_says("checkpoints", phrase="companion.preset"))
    trial("tokenizer: garbled", lambda h: (h / "tokenizer.json").write_text("{"),
          command_says("sleep", phrase="tokenizer"))
    trial("books: a symlink to a private file", _symlink_book, _symlink_refused)
    trial("text: a lone surrogate in a message", lambda h: None, _surrogate_refused)


def _overwrite_middle_at(path: Path, offset: int, n: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\0" * n)


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _sub(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def _stranger_db(home: Path) -> None:
    import sqlite3

    (home / "companion.db").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'companion.db'}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(home / "companion.db")
    conn.execute("CREATE TABLE recipes (name TEXT)")
    conn.commit()
    conn.close()


def _tmp_removed(home: Path) -> tuple[bool, str]:
    listed = cli(home, "checkpoints")
    done = cli(home, "restore", "1", "--yes")  # a command that opens the companion for work
    left = [p.name for p in (home / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    ok = "leftover temporary" in listed.stdout and not left and "removed checkpoints/.2026" in done.stderr
    return ok, sentence(done) if not ok else next(line for line in done.stderr.splitlines() if "removed" in line)[:110]


def _symlink_book(home: Path) -> None:
    secret = home.parent / "secret.txt"
    secret.write_text("private\n")
    (home / "books" / "link.txt").symlink_to(secret)


def _symlink_refused(home: Path) -> tuple[bool, str]:
    from companion.night.books import BooksFolder
    from companion.home import Home
    from companion.store import Store

    h = Home.open(home)
    with Store.open(h.store_path) as store:
        BooksFolder(h, store, max_bytes=1_000_000).scan()
        book = store.books()[0]
    return book.status == "refused" and book.bytes == 0, f"{book.path}: {book.status}: {book.note}"[:110]


def _surrogate_refused(home: Path) -> tuple[bool, str]:
    from companion.day import DaySession, MessageRefused
    from companion.home import Home
    from companion.store import Store
    from companion.model.tokenizer import Tokenizer

    h = Home.open(home)
    with Store.open(h.store_path) as store:
        session = DaySession(h, store, Tokenizer.load(h.tokenizer_path), block_size=256)
        try:
            session.send("bad \udc80 text")
        except MessageRefused as exc:
            return exc.kind == "invalid", str(exc)[:110]
    return False, "accepted"


# ------------------------------------------------------------------------------------------ full disk

def disk_trials(template: Path, base: Path) -> list[tuple[str, bool, str]]:
    if os.geteuid() != 0:
        return [("full disk", True, "skipped: mounting a tmpfs needs root")]
    rows = []
    for name, run in (("a turn", _disk_turn), ("a night (no room at its start)", _disk_night_room),
                      ("a night (disk fills while it trains)", _disk_night_fills), ("a backup", _disk_backup)):
        mount = base / f"disk-{len(rows)}"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
        if done.returncode != 0:
            rows.append((name, True, "skipped: cannot mount a tmpfs"))
            continue
        try:
            home = copy_home(template, mount / "root")
            ok, said = run(home, mount)
        except Exception as exc:
            ok, said = False, f"harness error: {type(exc).__name__}: {exc}"
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        rows.append((f"full disk during {name}", ok, said))
    return rows


def _fill(disk: Path, leave: int) -> Path:
    from tests.faults.test_full_disk import fill

    return fill(disk, leave)


def _disk_turn(home: Path, disk: Path) -> tuple[bool, str]:
    from companion.store import Store, StoreError

    with Store.open(home / "companion.db") as store:
        day = store.open_day(10_000)
        kept = store.add_turn(day.id, "owner", "before", "typed")
        filler = _fill(disk, 0)
        try:
            for i in range(300):
                store.add_turn(day.id, "owner", "x" * 4000, "typed")
            return False, "the disk never filled"
        except StoreError as exc:
            said = str(exc)
        filler.unlink()
        ok = "is full" in said and store.get_turn(kept.id) is not None and store.integrity_check() == ["ok"]
    return ok, said.split(": ", 1)[-1][:110]


def _disk_night_room(home: Path, disk: Path) -> tuple[bool, str]:
    before = (home / "checkpoints" / "CURRENT").read_bytes()
    _fill(disk, 3 * 1024 * 1024)
    done = cli(home, "sleep")
    ok = done.returncode == 130 and "not enough room" in done.stdout and "Traceback" not in done.stderr
    ok = ok and (home / "checkpoints" / "CURRENT").read_bytes() == before
    return ok, f"exit {done.returncode}: " + next((line for line in done.stdout.splitlines() if "room" in line), "")[:100]


def _disk_night_fills(home: Path, disk: Path) -> tuple[bool, str]:
    import torch

    from companion.home import Home
    from companion.night.pipeline import run_night
    from companion.safety.leftovers import find_leftovers
    from companion.store import Store, StoreError
    from companion.history.weights import Weights

    torch.set_num_threads(1)
    h = Home.open(home)
    with Store.open(h.store_path) as store:
        pre = Weights(h, store).current()
        fillers = []

        def before_step(step, optimizer, lr):
            if step == 1:
                fillers.append(_fill(disk, 96 * 1024))
        try:
            report = run_night(h, store, store.days()[0].id, probe_windows=4, before_step=before_step)
            said, ok = report.reason, report.status == "failed" and "is full" in report.reason
        except StoreError as exc:
            said, ok = str(exc), "is full" in str(exc)
        for filler in fillers:
            filler.unlink()
        ok = ok and Weights(h, store).load_current().checkpoint.id == pre.id and not find_leftovers(h)
    return ok, said[:110]


def _disk_backup(home: Path, disk: Path) -> tuple[bool, str]:
    _fill(disk, 64 * 1024)
    done = cli(home, "backup")
    partial = list((home / "backups").glob(".*.partial"))
    ok = done.returncode == 2 and "is full" in done.stderr and not partial and "Traceback" not in done.stderr
    return ok, f"exit {done.returncode}: {sentence(done)}"


def print_rows(title: str, rows: list[tuple[str, bool, str]], base: Path) -> None:
    print(f"\n{title}")
    width = max(len(r[0]) for r in rows)
    for name, ok, said in rows:
        said = said.replace(str(base), "…")
        print(f"  {'ok  ' if ok else 'FAIL'}  {name:<{width}}  {said}")
    print(f"  {sum(ok for _, ok, _ in rows)} of {len(rows)} as wanted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day-kills", type=int, default=60)
    parser.add_argument("--night-kills", type=int, default=60)
    parser.add_argument("--save-kills", type=int, default=20,
                        help="kills inside the write of a night-sized checkpoint (a wide model)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--no-disk", action="store_true")
    parser.add_argument("--no-corruption", action="store_true")
    parser.add_argument("--quick-night", action="store_true",
                        help="kill the harness's night child (2-window probe) instead of `companion sleep`")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    base = Path(tempfile.mkdtemp(prefix="companion-faults-"))
    t0 = time.monotonic()
    template = make_template(base)
    print(f"load {os.getloadavg()[0]:.2f}; torch threads 1 (children: OMP_NUM_THREADS=1)")
    trials = []
    for i in range(args.day_kills):
        trials.append(run_day_trial(copy_home(template, base / f"day{i}"), i, rng, most_s=3.0))
        shutil.rmtree(base / f"day{i}", ignore_errors=True)
    if args.night_kills:
        spans = calibrate_night(template, base / "calibration", cli=not args.quick_night)
        print("night phases (s): " + ", ".join(f"{p} {s:.2f}" for p, s in spans.items()))
        print(f"{len(trials)} day kills done; {args.night_kills} night kills to go", flush=True)
        for i in range(args.night_kills):
            phase = PHASES[i % len(PHASES)]
            span = spans.get(phase, 0.1)
            # The save itself is the first fraction of a second of "saving" (the rest is the report and
            # the exit): kills there are drawn where the crash windows are.
            delay = rng.uniform(0, min(span, 0.6) if phase == "saving" else span)
            trial = run_night_trial(template, base / f"night{i}", phase, delay, cli=not args.quick_night)
            trials.append(trial)
            shutil.rmtree(base / f"night{i}", ignore_errors=True)
            for note in trial.notes:
                if "removed" not in note:
                    print(f"  night {i} ({trial.kind}): {note}")
    for i in range(args.save_kills):
        trials.append(run_save_trial(template, base / f"save{i}", rng))
        shutil.rmtree(base / f"save{i}", ignore_errors=True)
    print("\nKills (SIGKILL at a random moment; the night's phase is where the kill landed)")
    print(table(trials))
    if not args.no_disk:
        print_rows("Full disk (a 24 MB tmpfs)", disk_trials(template, base), base)
    if not args.no_corruption:
        print_rows("Corruptions (each on a fresh copy; what the owner reads)", corruption_trials(template, base), base)
    print(f"\n{time.monotonic() - t0:.0f} s in all; load {os.getloadavg()[0]:.2f} at the end")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
