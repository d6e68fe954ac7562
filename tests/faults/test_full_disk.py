"""A full disk, for real: a small tmpfs (mounting one needs root; elsewhere these are skipped and the
long run in bench/faults.py simulates ENOSPC instead). Every path ends in a sentence and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from companion.cli import main
from companion.home import Home
from companion.night.pending import pending_night
from companion.night.pipeline import run_night
from companion.safety.leftovers import find_leftovers
from companion.store import Store, StoreError
from companion.history.pointer import CURRENT_FILE
from companion.history.weights import Weights
from tests.test_night import night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def small_disk(tmp_path):
    """A 24 MB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk so that about `leave` bytes stay free; returns the filler (delete it to free)."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as fh:
        remaining = max(0, free - leave)
        chunk = b"\0" * (1 << 20)
        try:
            while remaining > 0:
                remaining -= fh.write(chunk[: min(len(chunk), remaining)])
        except OSError:
            pass
    return filler


def home_on(disk: Path, tiny_home) -> Home:
    shutil.copytree(tiny_home.path, disk / "Scout", symlinks=True)
    return Home.open(disk / "Scout")


def current_id(home) -> int:
    return json.loads((home.checkpoints_dir / CURRENT_FILE).read_text())["id"]


def test_a_night_without_room_does_not_begin_and_says_why(small_disk, tiny_home, tokenizer):
    home = home_on(small_disk, tiny_home)
    with Store.open(home.store_path) as store:
        day, _ = script_day(home, store, tokenizer)
        before = current_id(home)
        fill(small_disk, 3 * 1024 * 1024)
        report = run_night(home, store, day.id, night_settings(home), probe_windows=4)
        assert report.status == "interrupted" and report.steps == 0
        assert "not enough room on disk" in report.reason and "free some space" in report.reason
        assert current_id(home) == before
        assert pending_night(store).id == day.id  # it runs at the next start, once there is room


def test_sleep_on_a_full_disk_ends_in_the_morning_report_not_a_traceback(small_disk, tiny_home, tokenizer, capsys):
    home = home_on(small_disk, tiny_home)
    with Store.open(home.store_path) as store:
        script_day(home, store, tokenizer)
    fill(small_disk, 3 * 1024 * 1024)
    code = main(["--home", str(home.path), "sleep"])
    out = capsys.readouterr()
    assert code == 130  # interrupted: it resumes at the next start
    assert "not enough room on disk" in out.out and "Traceback" not in out.err


def test_a_disk_that_fills_during_the_night_fails_it_in_a_sentence_and_keeps_the_weights(small_disk, tiny_home, tokenizer):
    home = home_on(small_disk, tiny_home)
    with Store.open(home.store_path) as store:
        day, _ = script_day(home, store, tokenizer)
        pre = Weights(home, store).current()
        fillers = []

        def before_step(step, optimizer, lr):
            if step == 1:
                fillers.append(fill(small_disk, 96 * 1024))  # room for the store's rows, not for weights

        try:
            report = run_night(home, store, day.id, night_settings(home, **{"night.probe_bound": 1.0}),
                               probe_windows=4, before_step=before_step)
        except StoreError as exc:  # the store itself could not record the night: still a sentence
            assert "is full" in str(exc)
        else:
            assert report.status == "failed" and "is full" in report.reason and "nothing was half-written" in report.reason
        assert current_id(home) == pre.id
        assert find_leftovers(home) == []  # the atomic writer removed its temporary
        for filler in fillers:
            filler.unlink()
        assert Weights(home, store).load_current().checkpoint.id == pre.id


def test_a_turn_on_a_full_disk_is_refused_in_a_sentence_and_loses_nothing(small_disk, tiny_home):
    home = home_on(small_disk, tiny_home)
    with Store.open(home.store_path) as store:
        day = store.open_day(10_000)
        kept = store.add_turn(day.id, "owner", "written before the disk filled", "typed")
        store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = fill(small_disk, 0)
        with pytest.raises(StoreError) as full:
            for i in range(200):  # the WAL may still have a page or two of room
                store.add_turn(day.id, "owner", f"turn {i} " + "x" * 4000, "typed")
        assert "is full" in str(full.value) and "free some space" in str(full.value)
        filler.unlink()
        assert store.get_turn(kept.id).text == "written before the disk filled"
        store.add_turn(day.id, "owner", "written after room was made", "typed")
        assert store.integrity_check() == ["ok"]


def test_a_backup_on_a_full_disk_ends_in_a_sentence_and_leaves_no_partial(small_disk, tiny_home, capsys):
    settings = tiny_home.load_settings().with_value("backup.folder", str(small_disk / "backups"))
    tiny_home.save_settings(settings)
    fill(small_disk, 64 * 1024)
    code = main(["--home", str(tiny_home.path), "backup"])
    err = capsys.readouterr().err
    assert code == 2 and "is full" in err and "Traceback" not in err
    assert not any((small_disk / "backups").glob(".*.partial")) if (small_disk / "backups").exists() else True


def test_a_store_that_cannot_open_on_a_full_disk_says_the_disk_is_full(small_disk, tiny_home, capsys):
    home = home_on(small_disk, tiny_home)
    with Store.open(home.store_path) as store:  # a clean close: no -wal or -shm left for the next open
        store.open_day(100)
    for suffix in ("-wal", "-shm"):
        Path(f"{home.store_path}{suffix}").unlink(missing_ok=True)
    fill(small_disk, 0)
    code = main(["--home", str(home.path), "days"])
    err = capsys.readouterr().err
    assert code in (1, 2) and "is full" in err and "Traceback" not in err, err
