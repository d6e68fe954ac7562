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
from companion.store import Checkpoint, Store
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
        meta = CheckpointMeta(model.config, reason=reason, step=step, day=day_number,
                              parent=parent.path if parent else None, probe=probe, extra=dict(extra or {}))
        save_checkpoint(folder / name, model, meta, dtype=dtype)
        record = self.store.add_checkpoint(
            Path(folder.name) / name, reason, checksum=meta.checksum, size_bytes=(folder / name).stat().st_size,
            step=step, day_id=day_id, parent_id=parent_id, probe_ppl=probe.get("ppl"),
        )
        if make_current:
            self.set_current(record)
        return record

    def set_current(self, checkpoint: Checkpoint) -> None:
        data = json.dumps({"id": checkpoint.id, "path": checkpoint.path}).encode()
        atomic_write_bytes(self.home.checkpoints_dir / CURRENT_FILE, data)

    def current(self) -> Checkpoint | None:
        """The checkpoint the companion lives on (the newest recorded one if the pointer is lost)."""
        return self._current()[0]

    def _current(self) -> tuple[Checkpoint | None, str | None]:
        """The current checkpoint, and what was wrong with the CURRENT pointer if it had to be guessed."""
        pointer = self.home.checkpoints_dir / CURRENT_FILE
        try:
            data = json.loads(pointer.read_text())
            found = self.store.get_checkpoint(int(data["id"]))
            if found is not None:
                return found, None
            problem = f"{pointer} names checkpoint {data['id']}, which is not recorded"
        except FileNotFoundError:
            problem = f"{pointer} is missing"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{pointer} is unreadable ({exc})"
        newest = self.store.latest_checkpoint()
        return newest, (problem if newest is not None else None)

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
            notes.append(f"{problem}; using the newest checkpoint, {current.id} ({current.reason}, {current.created_at})")
        candidates = [current] + [c for c in reversed(self.store.checkpoints()) if c.id < current.id]
        for checkpoint in candidates:
            try:
                loaded = self.load(checkpoint, device)
            except CheckpointError as exc:
                notes.append(str(exc))
                continue
            if checkpoint.id != current.id:
                notes.append(f"fell back to checkpoint {checkpoint.id} ({checkpoint.reason}, {checkpoint.created_at})")
                self.set_current(checkpoint)
            elif problem is not None:
                self.set_current(checkpoint)  # said once; the pointer is whole again
            loaded.notes = notes
            return loaded
        raise CheckpointError("no checkpoint loads: " + "; ".join(notes))
