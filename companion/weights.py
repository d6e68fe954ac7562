"""The companion's weights on disk: every checkpoint saved, recorded in the store, and which one is current.

Checkpoint files live in `checkpoints/`; the store records each one's story; the file `CURRENT`
(written atomically) names the checkpoint the companion lives on. Loading the current weights falls
back to the newest older checkpoint that loads cleanly when the current file is damaged or missing,
and says so: the last good checkpoint always loads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from companion.home import Home
from companion.store import Checkpoint, Store, StoreError
from model.atomic import atomic_write_bytes
from model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from model.transformer import Transformer

CURRENT_FILE = "CURRENT"


@dataclass
class Loaded:
    model: Transformer
    meta: CheckpointMeta
    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)  # fallbacks taken, said to the owner


class Weights:
    def __init__(self, home: Home, store: Store) -> None:
        self.home, self.store = home, store

    def path_of(self, checkpoint: Checkpoint) -> Path:
        return self.home.path / checkpoint.path

    def save(
        self,
        model: Transformer,
        reason: str,
        *,
        step: int = 0,
        day_id: int | None = None,
        day_number: int | None = None,
        parent_id: int | None = None,
        probe_ppl: float | None = None,
        probe_set: str | None = None,
        make_current: bool = True,
        dtype: torch.dtype | None = None,
        extra: dict[str, str] | None = None,
    ) -> Checkpoint:
        """Write a checkpoint file (atomically), record it, and by default make it current. `extra` is
        more of its story, kept in the file's header (a growth keeps its before and after config there)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        folder = self.home.checkpoints_dir
        folder.mkdir(parents=True, exist_ok=True)
        name, n = f"{stamp}-{reason}.safetensors", 1
        while (folder / name).exists():
            n += 1
            name = f"{stamp}-{reason}-{n}.safetensors"
        parent = self.store.get_checkpoint(parent_id) if parent_id is not None else None
        probe = {"ppl": probe_ppl} if probe_ppl is not None and math.isfinite(probe_ppl) else {}
        if probe and probe_set:
            probe["set"] = probe_set
        meta = CheckpointMeta(model.config, reason=reason, step=step, day=day_number,
                              parent=parent.path if parent else None, probe=probe, extra=dict(extra or {}))
        save_checkpoint(folder / name, model, meta, dtype=dtype)
        record = self.store.add_checkpoint(
            Path(folder.name) / name, reason, checksum=meta.checksum, size_bytes=(folder / name).stat().st_size,
            step=step, day_id=day_id, parent_id=parent_id, probe_ppl=probe.get("ppl"),
            probe_set=probe.get("set"),
        )
        if make_current:
            self.set_current(record)
        return record

    def identical(self, model: Transformer) -> Checkpoint | None:
        """A live checkpoint whose file holds exactly these weights (same checksum as `save` would
        write), so a second copy need not be written; None if there is none."""
        from model.checkpoint import tensors_checksum

        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        checksum = tensors_checksum(tensors)
        for checkpoint in reversed(self.store.checkpoints()):
            if checkpoint.checksum == checksum and self.path_of(checkpoint).is_file():
                return checkpoint
        return None

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

    def load(self, checkpoint: Checkpoint, device: str | torch.device = "cpu") -> Loaded:
        model, meta = load_checkpoint(self.path_of(checkpoint), device=device)
        return Loaded(model.eval(), meta, checkpoint)

    def load_current(self, device: str | torch.device = "cpu") -> Loaded:
        """The current weights, or the newest older checkpoint that loads, with a note saying why."""
        current, problem = self._current()
        if current is None:
            raise CheckpointError(f"{self.home.checkpoints_dir}: no checkpoint yet (the companion is not born)")
        notes: list[str] = []
        if problem is not None:
            notes.append(problem)
        candidates = [current] + [c for c in reversed(self.store.checkpoints()) if c.id < current.id and self.accepted(c)]
        for checkpoint in candidates:
            try:
                loaded = self.load(checkpoint, device)
            except CheckpointError as exc:
                notes.append(str(exc))
                self._mark_damaged(checkpoint, str(exc).replace(f"{self.path_of(checkpoint)}: ", ""))
                continue
            if checkpoint.damaged:
                self._mark_damaged(checkpoint, "")
            if checkpoint.id != current.id:
                notes.append(f"fell back to checkpoint {checkpoint.id} ({checkpoint.reason}, {checkpoint.created_at})")
                self.set_current(checkpoint)
            elif problem is not None:
                self.set_current(checkpoint)  # said once; the pointer is whole again
            loaded.notes = notes
            return loaded
        raise CheckpointError("no checkpoint loads: " + "; ".join(notes))
