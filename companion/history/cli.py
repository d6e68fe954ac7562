"""The command-line side of history and protection: `companion days`, `checkpoints`, `restore`,
`backup` and `book export`. Each returns an exit code; a refusal is one clear line on stderr and exit 2.
Text the owner or the model wrote is printed with its control characters made visible.
"""

from __future__ import annotations

import sys

from companion.home import Home, resolve_root
from companion.progress import NOT_CONFIRMED, ask_yes, plural

__all__ = ["cmd_days", "cmd_checkpoints", "cmd_restore", "cmd_backup", "cmd_book_export", "cmd_recover_store"]

_CONTROL = {i: f"^{chr(i + 64)}" for i in range(32) if i not in (9, 10)} | {127: "^?"}


def _plain(text: str, limit: int | None = None) -> str:
    """One line of text, safe for a terminal."""
    line = text.replace("\n", " ").replace("\t", " ").translate(_CONTROL)
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def night_words(status: str | None) -> str:
    return {"accepted": "accepted", "rolled_back": "rolled back", "nothing": "nothing to learn",
            "running": "night running"}.get(status or "", status or "")


def format_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _fail(command: str, message: object) -> int:
    print(f"companion {command}: {message}", file=sys.stderr)
    return 2


def _open(args):
    from companion.store import Store

    home = Home.open(resolve_root(args.home), args.name)
    return home, Store.open(home.store_path)


def cmd_days(args) -> int:
    from companion.store import StoreError

    home, store = _open(args)
    with store:
        if getattr(args, "search", None):
            try:
                hits = store.search(args.search, limit=50)
            except StoreError as exc:
                return _fail("days", exc)
            if not hits:
                print(f"nothing found for {_plain(args.search)!r}")
            for h in hits:
                print(f"day {h.day_number:>4}  {h.kind:<9}  {_plain(h.snippet, 100)}")
            return 0
        days = store.list_days()
        if not days:
            print(f"{home.name} has not lived a day yet")
            return 0
        print(f"{'day':>5}  {'date':<10}  {'turns':>5}  {'tokens':>7}  {'full':>4}  {'rated':>5}  {'fixed':>5}  night")
        for d in days:
            full = f"{min(1.0, d.tokens / d.budget_tokens):.0%}" if d.budget_tokens else "—"
            night = "open" if d.closed_at is None else night_words(d.night_status) if d.night_status else "no night yet"
            if not d.in_weights:
                night += " (not in the weights)"
            print(f"{d.number:>5}  {d.opened_at[:10]:<10}  {d.turns:>5}  {d.tokens:>7,}  {full:>4}  {d.ratings:>5}  "
                  f"{d.corrections:>5}  {night}")
    return 0


def cmd_checkpoints(args) -> int:
    from companion.history.backup import backup_line, due, last_backup
    from companion.growth.plan import checkpoint_size
    from companion.safety.leftovers import checkpoint_bytes
    from companion.history.weights import Weights

    home, store = _open(args)
    with store:
        settings = home.load_settings()  # first: a garbled file is said before any table is printed
        weights = Weights(home, store)
        current = weights.current()
        numbers = {d.id: d.number for d in store.days()}
        print(f"{'':1} {'id':>4}  {'reason':<12}  {'day':>4}  {'created':<16}  {'step':>8}  {'ppl':>7}  {'size':>8}  {'model':<14}")
        for c in store.checkpoints():
            path = home.path / c.path
            mark = "*" if current is not None and current.id == c.id else " "
            ppl = f"{c.probe_ppl:.2f}" if c.probe_ppl is not None else "—"
            day = numbers.get(c.day_id, "—") if c.day_id else "—"
            size = format_bytes(path.stat().st_size) if path.is_file() else "MISSING"
            shape = checkpoint_size(path)[0] if path.is_file() else ""
            state = ""
            if c.damaged and path.is_file():
                state += f"  DAMAGED: {_plain(c.damaged, 80)}"
            if not weights.accepted(c):
                state += "  never accepted (a night stopped while saving it)"
            print(f"{mark} {c.id:>4}  {_plain(c.reason, 12):<12}  {day:>4}  {c.created_at[:16].replace('T', ' '):<16}  "
                  f"{c.step:>8,}  {ppl:>7}  {size:>8}  {shape:<14}{state}")
        used, leftover = checkpoint_bytes(home.checkpoints_dir)
        extra = (f" (and {format_bytes(leftover)} of leftover temporary files, removed at the next start)"
                 if leftover else "")
        print(f"* current · checkpoints use {format_bytes(used)} on disk{extra}")
        print(backup_line(last_backup(home, settings), due(home, settings)))
    return 0


def cmd_restore(args) -> int:
    from companion.history.restore import RestoreError, describe_plan, plan_restore, restore

    home = Home.open(resolve_root(args.home), args.name)
    from companion.store import Store

    with home.lock(), Store.open(home.store_path) as store:
        from companion.safety.start import tidy_at_start

        for note in tidy_at_start(home, store):
            print(f"note: {note}", file=sys.stderr)
        try:
            plan = plan_restore(home, store, args.checkpoint_id)
        except RestoreError as exc:
            return _fail("restore", exc)
        print(describe_plan(plan))
        answer = ask_yes("Restore?", args.yes)
        if answer is None:
            return _fail("restore", NOT_CONFIRMED)
        if not answer:
            print("nothing changed")
            return 1
        try:
            result = restore(home, store, args.checkpoint_id)
        except RestoreError as exc:
            return _fail("restore", exc)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    lessons = f" ({result.lessons_marked} lesson(s) on them)" if result.lessons_marked else ""
    print(f"restored checkpoint {result.restored.id}; {result.days_marked} day(s) marked as not in the weights{lessons}")
    if result.saved is not None:
        print(f"the previous weights are checkpoint {result.saved.id}: `companion restore {result.saved.id}` undoes this")
    return 0


def cmd_backup(args) -> int:
    from companion.history.backup import BackupError, make_backup

    home, store = _open(args)
    with store:
        try:
            info = make_backup(home, store)
        except BackupError as exc:
            return _fail("backup", exc)
    print(f"backed up {plural(len(info.files), 'file')} ({format_bytes(info.size_bytes)}) to {info.folder}; verified")
    return 0


def cmd_book_export(args) -> int:
    from companion.history.personality import BookError, export_book

    home, store = _open(args)
    with store:
        try:
            result = export_book(store, args.path, overwrite=args.overwrite)
        except BookError as exc:
            return _fail("book export", exc)
    print(f"wrote {plural(result.entries, 'reply')} from {plural(result.days, 'day')} "
          f"({plural(result.corrections, 'correction')}) to {result.path}, and the transcripts to {result.text_path}")
    return 0


def cmd_recover_store(args) -> int:
    """`companion recover-store`: a damaged store set aside and restored from the newest verified backup."""
    from companion.safety.store_repair import newest_verified_backup, recover_store
    from companion.store import Store, StoreDamaged

    home = Home.open(resolve_root(args.home), args.name)
    with home.lock():
        try:
            with Store.open(home.store_path) as store:
                problems = store.integrity_check()
        except StoreDamaged as exc:
            problems = exc.problems
        if problems == ["ok"]:
            print(f"{home.store_path} passes SQLite's integrity check: nothing to recover")
            return 0
        info = newest_verified_backup(home)
        if info is None:
            return _fail("recover-store", f"{home.store_path} is damaged ({'; '.join(problems[:2])}) and there is "
                                          f"no verified backup to restore it from; nothing was changed")
        print(f"{home.store_path} is damaged: {'; '.join(problems[:3])}\n"
              f"It will be set aside (kept, not deleted) and replaced by the store of the backup {info.folder.name}, "
              f"made {info.made_at.astimezone():%Y-%m-%d %H:%M}: what was written after that is not in it.")
        answer = ask_yes("Recover?", args.yes)
        if answer is None:
            return _fail("recover-store", NOT_CONFIRMED)
        if not answer:
            print("nothing changed")
            return 1
        result = recover_store(home)
        with Store.open(home.store_path) as store:
            sound = store.integrity_check() == ["ok"]
    print(f"recovered {home.store_path} from {result.backup} ({'verified' if sound else 'NOT verified'}); "
          f"the damaged file is kept as {result.damaged}")
    return 0 if sound else 1
