"""Which checkpoint the companion lives on, without torch: the CURRENT pointer beside the checkpoints,
read, mended and moved. `companion.history.weights.Weights` adds writing and loading the files (torch);
backups, restores, retention and the screens only need this part.

The pointer is a small JSON file written atomically. It is trusted only when the store agrees: a
checkpoint saved by a night that was never recorded accepted is not lived on (the last accepted one
is), and a night recorded accepted whose pointer move was lost is rolled forward, unless the pointer
was moved there deliberately by a restore.
"""

from __future__ import annotations

import json
from pathlib import Path

from companion.home import Home
from companion.store import Checkpoint, Store, StoreError
from companion.model.atomic import atomic_write_bytes

CURRENT_FILE = "CURRENT"


class Pointer:
    """The CURRENT pointer of one home, checked against its store."""

    def __init__(self, home: Home, store: Store) -> None:
        self.home, self.store = home, store

    def path_of(self, checkpoint: Checkpoint) -> Path:
        return self.home.path / checkpoint.path

    def set_current(self, checkpoint: Checkpoint, why: str | None = None) -> None:
        """Point CURRENT at `checkpoint`. `why` ("restore") marks a deliberate move, which the start-up
        mending must never take for a night stopped before it moved the pointer (see `_current`)."""
        pointer = {"id": checkpoint.id, "path": checkpoint.path}
        if why:
            pointer["why"] = why
        atomic_write_bytes(self.home.checkpoints_dir / CURRENT_FILE, json.dumps(pointer).encode())

    def current(self) -> Checkpoint | None:
        """The checkpoint the companion lives on (the newest recorded one if the pointer is lost)."""
        return self._current()[0]

    def accepted(self, checkpoint: Checkpoint) -> bool:
        """Whether the companion may live on these weights: a night's checkpoint only once the store
        records its night as accepted (a crash between saving it and recording the night leaves one
        that never was); every other kind (birth, nursery, restore...) is whole when recorded."""
        if checkpoint.reason != "night":
            return True
        return any(n.status == "accepted" and n.post_checkpoint_id == checkpoint.id for n in self.store.nights())

    def _last_accepted(self, checkpoint: Checkpoint) -> Checkpoint | None:
        """The nearest accepted ancestor (the weights the unaccepted night started from), else the newest
        accepted checkpoint."""
        seen: set[int] = set()
        node = self.store.get_checkpoint(checkpoint.parent_id) if checkpoint.parent_id is not None else None
        while node is not None and node.id not in seen:
            if node.deleted_at is None and self.accepted(node):
                return node
            seen.add(node.id)
            node = self.store.get_checkpoint(node.parent_id) if node.parent_id is not None else None
        return next((c for c in reversed(self.store.checkpoints()) if self.accepted(c)), None)

    def _current(self) -> tuple[Checkpoint | None, str | None]:
        """The current checkpoint, and what was wrong with the CURRENT pointer if it had to be mended."""
        pointer = self.home.checkpoints_dir / CURRENT_FILE
        found: Checkpoint | None = None
        data: dict = {}
        try:
            data = json.loads(pointer.read_text())
            found = self.store.get_checkpoint(int(data["id"]))
            problem = None if found is not None else f"{pointer} names checkpoint {data['id']}, which is not recorded"
        except FileNotFoundError:
            problem = f"{pointer} is missing"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{pointer} is unreadable ({exc})"
        if found is None:
            found = next((c for c in reversed(self.store.checkpoints()) if self.accepted(c)), None)
            if found is None:
                return None, None
            return found, f"{problem}; using the newest checkpoint, {found.id} ({found.reason}, {found.created_at})"
        if not self.accepted(found):
            back = self._last_accepted(found)
            if back is not None:
                return back, (f"checkpoint {found.id} under {pointer} was saved by a night that was never recorded "
                              f"as accepted (it stopped while saving); the companion lives on the last accepted "
                              f"checkpoint, {back.id} ({back.reason})")
        forward = None if isinstance(data, dict) and data.get("why") == "restore" else self._accepted_not_current(found)
        if forward is not None:
            return forward, (f"the night of day {self._day_number(forward)} was accepted but its weights were not "
                             f"made current before the app stopped; they are now (checkpoint {forward.id})")
        return found, problem

    def _accepted_not_current(self, current: Checkpoint) -> Checkpoint | None:
        """The newest accepted night's checkpoint when a stop came between recording the night and moving
        CURRENT onto it: CURRENT still names that night's pre-night weights and nothing was saved since."""
        nights = [n for n in self.store.nights() if n.status == "accepted" and n.post_checkpoint_id is not None]
        if not nights or nights[-1].pre_checkpoint_id != current.id:
            return None
        post = self.store.get_checkpoint(nights[-1].post_checkpoint_id)
        latest = self.store.latest_checkpoint()
        if post is None or post.deleted_at is not None or latest is None or latest.id != post.id:
            return None
        return post

    def _day_number(self, checkpoint: Checkpoint) -> str:
        day = self.store.get_day(checkpoint.day_id) if checkpoint.day_id is not None else None
        return str(day.number) if day is not None else "?"

    def settle(self) -> list[str]:
        """Mend the CURRENT pointer now (at start, before a night): an unrecorded, unaccepted or lost
        pointer is set to the checkpoint `current()` names, and the owner is told why."""
        current, problem = self._current()
        if current is None or problem is None:
            return []
        self.set_current(current)
        return [problem]

    def _mark_damaged(self, checkpoint: Checkpoint, why: str) -> None:
        """Record (or clear) the damage in the store so the checkpoints list marks it; a store that
        cannot be written (a full disk) does not stop the fallback."""
        try:
            self.store.mark_checkpoint_damaged(checkpoint.id, why[:500])
        except StoreError:
            pass
