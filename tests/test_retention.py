"""Retention over simulated months, with a clock the test controls: the kept set is exactly the
policy's, and no set of weights the policy keeps ever loses its last copy."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from companion.history.retention import prune
from companion.store import Store, parse_time

START = datetime(2025, 1, 1, 22, 0, tzinfo=timezone.utc)  # a Wednesday


class Life:
    """A companion's checkpoints over simulated nights: a night checkpoint each evening, preceded by a
    pre-night checkpoint holding the same weights as the night before (same checksum)."""

    def __init__(self, home, clock) -> None:
        self.home, self.clock = home, clock
        self.store = Store.open(home.store_path, now=lambda: clock[0])
        self.current = self.store.checkpoints()[0]  # birth
        self.n = 0

    def save(self, reason: str, weights: bytes):
        self.n += 1
        rel = f"checkpoints/sim-{self.n:04d}-{reason}.bin"
        (self.home.path / rel).write_bytes(weights)
        return self.store.add_checkpoint(rel, reason, checksum=hashlib.sha256(weights).hexdigest(),
                                         size_bytes=len(weights), parent_id=self.current.id)

    def night(self, k: int):
        previous = (self.home.path / self.current.path).read_bytes() if k > 1 else b"birth"
        self.save("pre-night", previous)
        self.current = self.save("night", f"weights after night {k}".encode())
        return self.current


def expected_keep(store: Store, current_id: int, now: datetime) -> set[int]:
    """The policy, restated independently of the implementation."""
    keep, weekly = set(), {}
    for c in store.checkpoints():
        created = parse_time(c.created_at)
        if c.id == current_id or c.reason in ("birth", "pre-restore"):
            keep.add(c.id)
        elif now - created <= timedelta(days=30):
            keep.add(c.id)
        else:
            week = created.isocalendar()[:2]
            weekly[week] = max(weekly.get(week, 0), c.id)
    return keep | set(weekly.values())


def test_ninety_nights_keep_exactly_the_policy_and_never_an_only_copy(tiny_home):
    clock = [START]
    life = Life(tiny_home, clock)
    protected_checksums: dict[int, str] = {}
    with life.store as store:
        for k in range(1, 91):
            clock[0] = START + timedelta(days=k - 1)
            life.night(k)
            if k == 40:  # the owner restored once: its undo point is kept forever
                life.current = life.save("pre-restore", b"weights after night 40")
            expected = expected_keep(store, life.current.id, clock[0])
            decision = prune(tiny_home, store, now=clock[0], current_id=life.current.id)
            live = {c.id for c in store.checkpoints()}
            assert live == expected, f"night {k}"
            assert set(decision.keep) == expected
            for c in store.checkpoints():
                assert (tiny_home.path / c.path).is_file()
            for c in store.checkpoints(include_deleted=True):
                if c.deleted_at is not None:
                    assert not (tiny_home.path / c.path).exists()
            protected_checksums.update({c.id: c.checksum for c in store.checkpoints() if c.id in expected})
            live_checksums = {c.checksum for c in store.checkpoints()}
            assert {protected_checksums[i] for i in expected} <= live_checksums

        # After 90 nights: the last 30 days whole, then one per ISO week, birth and the pre-restore.
        nights = [c for c in store.checkpoints() if c.reason == "night"]
        recent = [c for c in nights if clock[0] - parse_time(c.created_at) <= timedelta(days=30)]
        assert len(recent) == 31
        old_weeks = [parse_time(c.created_at).isocalendar()[:2] for c in store.checkpoints()
                     if c.reason in ("night", "pre-night") and c not in recent
                     and clock[0] - parse_time(c.created_at) > timedelta(days=30)]
        assert len(old_weeks) == len(set(old_weeks))  # exactly one per week
        assert {c.reason for c in store.checkpoints()} >= {"birth", "pre-restore", "night"}
        assert len(store.checkpoints(include_deleted=True)) == 1 + 2 * 90 + 1


def test_a_kept_record_whose_file_vanished_keeps_its_duplicate(tiny_home):
    clock = [START]
    life = Life(tiny_home, clock)
    with life.store as store:
        for k in range(1, 6):  # nights on Wed 1 .. Sun 5 January (ISO week 1)
            clock[0] = START + timedelta(days=k - 1)
            life.night(k)
        sunday = life.current
        clock[0] = START + timedelta(days=5)
        life.night(6)  # Monday: its pre-night holds Sunday's weights
        (tiny_home.path / sunday.path).unlink()  # deleted behind the app's back
        clock[0] = START + timedelta(days=60)
        life.night(7)
        decision = prune(tiny_home, store, now=clock[0], current_id=life.current.id)
        survivors = {c.checksum for c in store.checkpoints() if (tiny_home.path / c.path).is_file()}
        assert sunday.checksum in survivors  # the only remaining copy of week 1's weights stayed
        assert sunday.id in {c.id for c in decision.missing}
        assert store.get_checkpoint(sunday.id).deleted_at is None  # still shown as missing, not pruned


def test_the_pre_night_checkpoint_of_a_running_night_is_kept(tiny_home):
    clock = [START]
    life = Life(tiny_home, clock)
    with life.store as store:
        first = life.night(1)
        clock[0] = START + timedelta(days=1)
        pre = life.save("pre-night", b"weights after night 1 copy")
        clock[0] = START + timedelta(days=2)
        day = store.open_day(100)
        store.close_day(day.id, "full")
        store.start_night(day.id, pre_checkpoint_id=pre.id)
        life.night(2)
        clock[0] = START + timedelta(days=90)
        prune(tiny_home, store, now=clock[0], current_id=life.current.id)
        assert store.get_checkpoint(pre.id).deleted_at is None
        assert store.get_checkpoint(first.id).deleted_at is not None
