"""Weekly backups: complete, verified, consistent while the store is written, damage detected, and a
folder that cannot be written leaves everything as it was."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from companion.history.backup import BackupError, due, last_backup, list_backups, make_backup, verify_backup
from companion.history.cli import cmd_backup
from companion.day.scripted import Exchange
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import load_checkpoint
from tests.test_history import live_day

EXCHANGE = [Exchange("Good evening", ("Evening!", "Hi."), pick=0)]


def test_a_backup_holds_everything_verified_and_loads(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        live_day(tiny_home, store, EXCHANGE)
        info = make_backup(tiny_home, store)
        current = Weights(tiny_home, store).current()
    assert info.folder.parent == tiny_home.backups_dir and info.folder.name.startswith("Scout-")
    assert set(info.files) == {"companion.toml", "tokenizer.json", current.path, "checkpoints/CURRENT", "companion.db"}
    assert info.verified_at is not None and info.checkpoint_id == current.id
    assert verify_backup(info.folder).files == info.files
    model, meta = load_checkpoint(info.folder / current.path)
    assert meta.checksum == current.checksum
    with Store.open(info.folder / "companion.db") as copy:
        assert copy.integrity_check() == ["ok"] and len(copy.turns(copy.days()[0].id)) == 5  # indicator, good night
    assert not [p for p in tiny_home.backups_dir.iterdir() if p.name.startswith(".")]  # no partial left


def test_a_backup_taken_while_the_store_is_written_is_consistent(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        day = store.open_day(10_000)
        stop = threading.Event()
        written = []

        def writer() -> None:
            while not stop.is_set():
                prompt = store.add_turn(day.id, "owner", f"line {len(written)}", "typed", tokens=3)
                [cand] = store.add_candidates(day.id, prompt.id, [f"reply {len(written)}"])
                store.record_reply(day.id, prompt.id, "pick", candidate_id=cand.id, tokens=3)
                written.append(prompt.id)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            infos = [make_backup(tiny_home, store, now=datetime.now(timezone.utc) + timedelta(seconds=i))
                     for i in range(3)]
        finally:
            stop.set()
            thread.join()
    assert len(written) > 0
    for info in infos:
        verify_backup(info.folder)
        with Store.open(info.folder / "companion.db") as copy:
            assert copy.integrity_check() == ["ok"]
            turns = copy.turns(day.id)
            # a moment of the store: every reply has its choice (one transaction), every candidate a
            # reply points at is there, and nothing was written after a gap
            replies = [t for t in turns if t.source == "chosen"]
            choices = copy.choices(day.id)
            assert [c.turn_id for c in choices] == [t.id for t in replies]
            candidates = {c.id for c in copy.candidates(day.id)}
            assert all(t.candidate_id in candidates for t in replies)
            assert [t.seq for t in turns] == list(range(len(turns)))


def test_a_corrupted_backup_is_detected_by_its_checksum(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        info = make_backup(tiny_home, store)
        weights_rel = Weights(tiny_home, store).current().path
    path = info.folder / weights_rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BackupError, match=f"{weights_rel} does not match its checksum"):
        verify_backup(info.folder)
    (info.folder / "tokenizer.json").unlink()
    with pytest.raises(BackupError, match="tokenizer.json is missing"):
        verify_backup(info.folder)


def test_a_folder_that_cannot_be_written_is_reported_and_nothing_changes(tiny_home):
    blocker = tiny_home.path.parent / "not-a-folder"
    blocker.write_text("a regular file")
    with Store.open(tiny_home.store_path) as store:
        old = make_backup(tiny_home, store)
        settings = tiny_home.load_settings().with_value("backup.folder", str(blocker / "backups"))
        tiny_home.save_settings(settings)
        before = sorted(p.name for p in tiny_home.path.rglob("*"))
        with pytest.raises(BackupError, match="cannot back up to .*not-a-folder"):
            make_backup(tiny_home, store)
        assert sorted(p.name for p in tiny_home.path.rglob("*")) == before
        assert blocker.read_text() == "a regular file"
        assert last_backup(tiny_home) is None  # the chosen folder holds none
        assert verify_backup(old.folder)

    class Args:
        home, name = str(tiny_home.path), None

    assert cmd_backup(Args) == 2


def test_only_the_last_n_are_kept_and_due_follows_the_clock(tiny_home):
    settings = tiny_home.load_settings().with_value("backup.keep", 2)
    tiny_home.save_settings(settings)
    t0 = datetime(2025, 3, 1, 12, tzinfo=timezone.utc)
    assert due(tiny_home, settings, t0)
    with Store.open(tiny_home.store_path) as store:
        for i in range(4):
            make_backup(tiny_home, store, now=t0 + timedelta(days=7 * i))
    kept = list_backups(tiny_home)
    assert [b.made_at for b in kept] == [t0 + timedelta(days=14), t0 + timedelta(days=21)]
    assert last_backup(tiny_home).made_at == t0 + timedelta(days=21)
    assert not due(tiny_home, settings, t0 + timedelta(days=27))
    assert due(tiny_home, settings, t0 + timedelta(days=28))
    assert not due(tiny_home, settings.with_value("backup.every_days", 0), t0 + timedelta(days=400))
