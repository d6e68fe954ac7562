"""The companion's weights on disk: every checkpoint saved, recorded in the store, and which one is current.

Checkpoint files live in `checkpoints/`; the store records each one's story; the file `CURRENT`
(written atomically) names the checkpoint the companion lives on. `Pointer` (torch-free) reads and moves that pointer. Loading the current weights falls
back to the newest older checkpoint that loads cleanly when the current file is damaged or missing,
and says so: the last good checkpoint always loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from companion.history.pointer import Pointer
from companion.store import Checkpoint
from companion.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from companion.model.transformer import Transformer



@dataclass
class Loaded:
    model: Transformer
    meta: CheckpointMeta
    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)  # fallbacks taken, said to the owner


class Weights(Pointer):
    """The companion's checkpoints: the pointer (`Pointer`) plus writing and loading the weights."""

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
        from companion.model.checkpoint import tensors_checksum

        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        checksum = tensors_checksum(tensors)
        for checkpoint in reversed(self.store.checkpoints()):
            if checkpoint.checksum == checksum and self.path_of(checkpoint).is_file():
                return checkpoint
        return None

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
