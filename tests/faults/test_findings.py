"""Each finding of the fault hunt (issue 14), held by a test that asserts on disk and on what the owner reads."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from companion.cli import main
from companion.night.pending import night_day
from companion.night.pipeline import run_night
from companion.night.report import NightError
from companion.safety.leftovers import find_leftovers
from companion.safety.start import tidy_at_start
from companion.store import Store, StoreDamaged, StoreError
from companion.history.pointer import CURRENT_FILE
from companion.history.weights import Weights
from tests.conftest import make_tiny_home, tiny_config
from tests.test_night import night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cli(capsys, home, *argv):
    """Run a command in-process: (exit code, stdout, stderr)."""
    code = main(["--home", str(home.path), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def pointer(home) -> int:
    return json.loads((home.checkpoints_dir / CURRENT_FILE).read_text())["id"]


# 1. A kill while a checkpoint is written leaves its temporary file: removed at the next start, named,
#    never counted as a checkpoint.

def test_a_leftover_temporary_is_named_not_counted_and_removed_at_the_next_start(tiny_home, capsys):
    leftover = tiny_home.checkpoints_dir / ".20261130-200000-night.safetensors.k3j4h5.tmp"
    leftover.write_bytes(b"\0" * 2_000_000)
    code, out, _ = cli(capsys, tiny_home, "checkpoints")
    assert code == 0
    assert "2.0 MB of leftover temporary files" in out and ".tmp" not in out.split("* current")[0]
    assert "checkpoints use 2.0 MB" not in out

    with tiny_home.lock(), Store.open(tiny_home.store_path) as store:
        notes = tidy_at_start(tiny_home, store)
    assert not leftover.exists() and find_leftovers(tiny_home) == []
    assert any("checkpoints/.20261130-200000-night.safetensors.k3j4h5.tmp" in n and "2.0 MB" in n for n in notes)


def test_a_kill_during_a_backup_leaves_no_partial_folder_after_the_next_start(tiny_home):
    partial = tiny_home.backups_dir / ".Scout-20261130-200000.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "checkpoints" / "x.safetensors").write_bytes(b"half")
    stray = tiny_home.path / ".companion.db.123.456.tmp"
    stray.write_bytes(b"half a backup")
    with tiny_home.lock(), Store.open(tiny_home.store_path) as store:
        notes = tidy_at_start(tiny_home, store)
    assert not partial.exists() and not stray.exists() and len(notes) == 2


# 2. The night's commit order: a checkpoint not recorded as accepted is never made current.

def crash_window_state(home, tokenizer):
    """What a stop between saving a night's weights and recording the night leaves on disk (made the
    way the old commit order did: the checkpoint saved and made current, the night still running)."""
    store = Store.open(home.store_path)
    day, _ = script_day(home, store, tokenizer)
    weights = Weights(home, store)
    pre = weights.current()
    store.start_night(day.id, pre.id)
    torch.manual_seed(1)
    orphan = weights.save(Transformer(tiny_config(vocab_size=tokenizer.vocab_size, block_size=256)), "night",
                          day_id=day.id, day_number=day.number, parent_id=pre.id, make_current=True)
    return store, day, pre, orphan


from companion.model.transformer import Transformer  # noqa: E402  (after the helper that names it, for reading order)


def test_an_unaccepted_checkpoint_under_current_is_set_back_and_the_owner_told(tiny_home, tokenizer, capsys):
    store, day, pre, orphan = crash_window_state(tiny_home, tokenizer)
    assert pointer(tiny_home) == orphan.id
    with store:
        loaded = Weights(tiny_home, store).load_current()
    assert loaded.checkpoint.id == pre.id and pointer(tiny_home) == pre.id
    assert any(f"checkpoint {orphan.id}" in n and "never recorded as accepted" in n for n in loaded.notes)
    code, out, _ = cli(capsys, tiny_home, "checkpoints")
    row = next(line for line in out.splitlines() if line[2:].split()[0] == str(orphan.id))
    assert "never accepted" in row and not row.startswith("*")


def test_the_redone_night_starts_from_the_last_accepted_weights(tiny_home, tokenizer):
    store, day, pre, orphan = crash_window_state(tiny_home, tokenizer)
    with store:
        from companion.night.pending import pending_night

        assert pending_night(store).id == day.id  # the night left running is found...
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), probe_windows=4)
    assert report.pre_checkpoint_id == pre.id  # ...and redone from the weights before it


def test_an_accepted_night_is_recorded_before_its_checkpoint_becomes_current(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        seen = []
        real_finish = store.finish_night

        def finish(night_id, status, **kw):  # what CURRENT says at the moment the night is recorded
            seen.append((status, pointer(tiny_home)))
            return real_finish(night_id, status, **kw)

        store.finish_night = finish
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home, **{"night.probe_bound": 1.0}),
                           probe_windows=4)
    assert report.status == "accepted"
    assert seen == [("accepted", pre.id)]  # recorded while CURRENT still named the pre-night weights
    assert pointer(tiny_home) == report.post_checkpoint_id


def test_a_stop_between_recording_and_moving_current_is_finished_at_the_next_load(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home, **{"night.probe_bound": 1.0}),
                           probe_windows=4)
        assert report.status == "accepted"
        Weights(tiny_home, store).set_current(store.get_checkpoint(report.pre_checkpoint_id))  # the stop
        loaded = Weights(tiny_home, store).load_current()
    assert loaded.checkpoint.id == report.post_checkpoint_id == pointer(tiny_home)
    assert any("accepted but its weights were not made current" in n for n in loaded.notes)


# 3. Room before a night, and a full disk that ends in a sentence: see test_full_disk.py (a real tmpfs).

# 4. One place turns every foreseen error of a command into a sentence and an exit code.

def damage_store(path: Path) -> None:
    """Overwrite 8 KB in the middle of the file, as the fault hunt did."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2 - 4096)
        fh.write(os.urandom(8192))


def fill_store(home, tokenizer, turns: int = 400) -> None:
    with Store.open(home.store_path) as store:
        day = store.open_day(10_000)
        for i in range(turns):
            store.add_turn(day.id, "owner", f"line {i}: " + "the lighthouse keeper counts the waves " * 6, "typed")
        store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.parametrize("command", [["days"], ["checkpoints"], ["days", "--search", "lighthouse"]])
def test_a_damaged_store_is_named_by_every_command_without_a_traceback(tiny_home, tokenizer, capsys, command):
    fill_store(tiny_home, tokenizer)
    damage_store(tiny_home.store_path)
    code, out, err = cli(capsys, tiny_home, *command)
    assert code == 2 and out == ""
    assert f"{tiny_home.store_path} is damaged" in err and "companion recover-store" in err
    assert "Traceback" not in err


def test_a_garbled_settings_file_is_said_before_any_table(tiny_home, capsys):
    tiny_home.settings_path.write_text("[companion\nname = ")
    code, out, err = cli(capsys, tiny_home, "checkpoints")
    assert code == 2 and out == ""
    assert str(tiny_home.settings_path) in err and "Traceback" not in err


def test_a_missing_checkpoint_file_ends_in_a_sentence(tiny_home, capsys):
    for path in tiny_home.checkpoints_dir.glob("*.safetensors"):
        path.unlink()
    code, _, err = cli(capsys, tiny_home, "backup")
    assert code == 2 and "missing" in err and "Traceback" not in err


def test_a_lone_surrogate_is_refused_at_the_edge_with_a_message(tiny_home, tokenizer):
    from companion.day import DaySession, MessageRefused

    with Store.open(tiny_home.store_path) as store:
        session = DaySession(tiny_home, store, tokenizer, block_size=256)
        before = len(store.turns(session.day.id))
        with pytest.raises(MessageRefused) as refused:
            session.send("bad \udc80 text")
        assert refused.value.kind == "invalid"
        assert "not valid Unicode" in str(refused.value) and "U+DC80 at position 5" in str(refused.value)
        assert len(store.turns(session.day.id)) == before  # nothing changed
        with pytest.raises(StoreError, match="not valid Unicode"):
            store.add_turn(session.day.id, "owner", "bad \udc80 text", "typed")
    assert tokenizer.encode("bad \udc80 text") == tokenizer.encode("bad \ufffd text")  # repaired, not a TypeError


# 5. A damaged store is named at open, never backed up, and restorable from the newest verified backup.

def test_a_damaged_store_is_found_at_open_and_refused_by_the_backup(tiny_home, tokenizer):
    fill_store(tiny_home, tokenizer)
    damage_store(tiny_home.store_path)
    with pytest.raises(StoreDamaged) as damaged:
        Store.open(tiny_home.store_path)
    assert damaged.value.path == tiny_home.store_path


def test_recover_store_restores_the_newest_verified_backup_and_keeps_the_damaged_file(tiny_home, tokenizer, capsys):
    fill_store(tiny_home, tokenizer)
    code, _, err = cli(capsys, tiny_home, "backup")
    assert code == 0, err
    damage_store(tiny_home.store_path)
    damaged_bytes = tiny_home.store_path.read_bytes()
    code, out, err = cli(capsys, tiny_home, "backup")  # the damage is found before any copy is made
    assert code == 2 and "fails SQLite's integrity check" in err or "is damaged" in err

    code, out, err = cli(capsys, tiny_home, "recover-store", "--yes")
    assert code == 0, err
    assert "recovered" in out and "verified" in out
    aside = list(tiny_home.path.glob("companion.db.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged_bytes and mode(aside[0]) == 0o600
    with Store.open(tiny_home.store_path) as store:
        assert store.integrity_check() == ["ok"] and len(store.turns(store.days()[-1].id)) == 400
    assert mode(tiny_home.store_path) == 0o600


def test_recover_store_without_a_verified_backup_changes_nothing(tiny_home, tokenizer, capsys):
    fill_store(tiny_home, tokenizer)
    damage_store(tiny_home.store_path)
    before = tiny_home.store_path.read_bytes()
    code, _, err = cli(capsys, tiny_home, "recover-store", "--yes")
    assert code == 2 and "no verified backup" in err
    assert tiny_home.store_path.read_bytes() == before


def test_a_damaged_checkpoint_is_marked_in_the_list(tiny_home, tokenizer, capsys):
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        birth = weights.current()
        torch.manual_seed(3)
        newer = weights.save(Transformer(tiny_config(vocab_size=tokenizer.vocab_size, block_size=256)), "nursery",
                             parent_id=birth.id)
    path = tiny_home.path / newer.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    with Store.open(tiny_home.store_path) as store:
        loaded = Weights(tiny_home, store).load_current()
    assert loaded.checkpoint.id == birth.id
    code, out, _ = cli(capsys, tiny_home, "checkpoints")
    row = next(line for line in out.splitlines() if line[2:].split()[0] == str(newer.id))
    assert "DAMAGED:" in row and str(path) not in row  # the row names the checkpoint; the mark says why


# 6. An unknown preset is refused with the key, the value and what is allowed.

def test_an_unknown_preset_is_refused(tiny_home, capsys):
    text = tiny_home.settings_path.read_text().replace('preset = "seedling"', 'preset = "v9"')
    tiny_home.settings_path.write_text(text)
    from companion.settings import SettingsError

    with pytest.raises(SettingsError) as refused:
        tiny_home.load_settings()
    message = str(refused.value)
    assert "companion.preset" in message and "'v9'" in message and "seedling" in message and "v4" in message


# 7. A book is a regular file inside the books folder: a link is refused, never followed.

def test_a_symlink_in_the_books_folder_is_refused_and_not_read(tiny_home, tmp_path):
    from companion.night.books import BooksFolder

    secret = tmp_path / "secret.txt"
    secret.write_text("the owner's private notes, outside the companion\n")
    (tiny_home.books_dir / "linked.txt").symlink_to(secret)
    (tiny_home.books_dir / "real.txt").write_text("A real book, copied in.\n")
    with Store.open(tiny_home.store_path) as store:
        BooksFolder(tiny_home, store, max_bytes=1_000_000).scan()
        books = {b.path: b for b in store.books()}
    assert books["books/real.txt"].status == "queued"
    linked = books["books/linked.txt"]
    assert linked.status == "refused" and "symbolic link" in linked.note and linked.bytes == 0


# 8. Private by default, whatever the umask.

@pytest.fixture()
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_the_home_and_everything_written_are_private_under_umask_022(tmp_path, tokenizer, umask_022, capsys):
    home = make_tiny_home(tmp_path / "companions", tokenizer)
    with home.lock(), Store.open(home.store_path) as store:
        day = store.open_day(100)
        store.add_turn(day.id, "owner", "a secret", "typed")
        assert Path(f"{home.store_path}-wal").exists()
        for path in (home.store_path, Path(f"{home.store_path}-wal"), Path(f"{home.store_path}-shm"),
                     home.tokenizer_path, home.settings_path, home.lock_path):
            assert mode(path) == 0o600, path
        from companion.history.backup import make_backup

        backup = make_backup(home, store)
    for folder in (home.path, home.checkpoints_dir, home.books_dir, home.backups_dir, backup.folder):
        assert mode(folder) == 0o700, folder
    for path in list(home.checkpoints_dir.iterdir()) + [p for p in backup.folder.rglob("*")]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    os.umask(0o022)
    code, _, err = cli(capsys, home, "book", "export", str(tmp_path / "book.jsonl"))
    assert code == 0, err
    assert mode(tmp_path / "book.jsonl") == 0o600
    assert os.umask(0o022) == 0o022  # the command gave the caller's umask back


def test_an_older_home_made_world_readable_is_made_private_at_open(tiny_home):
    for path in (tiny_home.path, tiny_home.checkpoints_dir):
        os.chmod(path, 0o755)
    for path in (tiny_home.store_path, tiny_home.tokenizer_path):
        os.chmod(path, 0o644)
    from companion.home import Home

    Home.open(tiny_home.path)
    assert mode(tiny_home.path) == mode(tiny_home.checkpoints_dir) == 0o700
    assert mode(tiny_home.store_path) == mode(tiny_home.tokenizer_path) == 0o600


# 9. `companion sleep` when a newer day is open and the last closed day had no night.

def test_sleep_names_the_day_whose_night_never_ran(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        script_day(tiny_home, store, tokenizer)
        store.open_day(192)
        with pytest.raises(NightError) as refused:
            night_day(store)
    message = str(refused.value)
    assert "(none)" not in message
    assert "day 1" in message and "no night" in message and "day 2 was opened" in message
    assert "companion sleep --day 1" in message


def test_a_version_1_store_is_upgraded_with_room_to_mark_damaged_checkpoints(tmp_path):
    import sqlite3

    from companion.store.schema import MIGRATIONS, _statements

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _statements(MIGRATIONS[0].apply):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO checkpoints (path, reason, step, created_at, checksum, size_bytes)"
                 " VALUES ('checkpoints/a.safetensors', 'birth', 0, '2026-01-01T00:00:00+00:00', 'c', 1)")
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version >= 2
        [old] = store.checkpoints()
        assert old.damaged is None
        assert store.mark_checkpoint_damaged(old.id, "checksum mismatch").damaged == "checksum mismatch"


def test_the_checkpoints_screen_row_marks_damaged_and_never_accepted_checkpoints():
    from companion.widgets.lists import CheckpointRow

    plain = CheckpointRow(id=7, reason="night", damaged="checksum mismatch", unaccepted=True).prompt().plain
    assert "damaged" in plain and "never accepted" in plain
    assert "damaged" not in CheckpointRow(id=8, reason="night").prompt().plain
