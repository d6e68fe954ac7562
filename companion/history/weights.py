"""The companion's weights on disk: every checkpoint saved, recorded in the store, and which one is current.

Checkpoint files live in `checkpoints/`; the store records each one's story; the file `CURRENT`
(written atomically) names the checkpoint the companion lives on. `Pointer` (torch-free) reads and moves that pointer. Loading the current weights falls
back to the newest older checkpoint that loads cleanly when the current file is damaged or missing,
and says so: the last good checkpoint always loads.

Each checkpoint reads text with one tokenizer. A home begins with one, `tokenizer.json`, which every
checkpoint uses unless its header names another (`x.tokenizer`): a growth that adds tokens writes its
new tokenizer beside the weights under a name made of its content's hash (`tokenizer-<sha256>.json`,
never overwritten, never changed), before the checkpoint that names it, which is written before
`CURRENT` moves. So the tokenizer always follows the weights: a restore across the growth loads the
right one with no extra step, and a kill at any moment leaves at most an unused tokenizer file, never
one that disagrees with `CURRENT`. A checkpoint saved from another (a night, a pre-restore) inherits its
parent's tokenizer; `tokenizer.json` is never rewritten by a growth, so older checkpoints keep theirs.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from companion.history.pointer import Pointer
from companion.model.atomic import atomic_write_bytes
from companion.store import Checkpoint
from companion.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, save_checkpoint
from companion.model.transformer import Transformer

if TYPE_CHECKING:  # pragma: no cover
    from companion.model.tokenizer import Tokenizer

TOKENIZER_KEY = "tokenizer"  # the header's `x.tokenizer`: a file in checkpoints/ named by its content
_TOKENIZER_NAME = re.compile(r"^tokenizer-([0-9a-f]{64})\.json$")



@dataclass
class Loaded:
    model: Transformer
    meta: CheckpointMeta
    checkpoint: Checkpoint
    notes: list[str] = field(default_factory=list)  # fallbacks taken, said to the owner
    tokenizer_path: Path | None = None  # the tokenizer these weights read with (see the module's docstring)

    def tokenizer(self) -> "Tokenizer":
        """The tokenizer these weights were saved with (`TokenizerError` names a damaged file)."""
        from companion.model.tokenizer import Tokenizer

        return Tokenizer.load(self.tokenizer_path)


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
        tokenizer: str | None = None,
    ) -> Checkpoint:
        """Write a checkpoint file (atomically), record it, and by default make it current. `extra` is
        more of its story, kept in the file's header (a growth keeps its before and after config there).
        `tokenizer`: the name `keep_tokenizer` gave (a growth that added tokens); by default the parent's."""
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
        extra = dict(extra or {})
        tokenizer = tokenizer or (self._tokenizer_name(parent) if parent is not None else None)
        if tokenizer:
            extra[TOKENIZER_KEY] = tokenizer
        meta = CheckpointMeta(model.config, reason=reason, step=step, day=day_number,
                              parent=parent.path if parent else None, probe=probe, extra=extra)
        save_checkpoint(folder / name, model, meta, dtype=dtype)
        record = self.store.add_checkpoint(
            Path(folder.name) / name, reason, checksum=meta.checksum, size_bytes=(folder / name).stat().st_size,
            step=step, day_id=day_id, parent_id=parent_id, probe_ppl=probe.get("ppl"),
            probe_set=probe.get("set"),
        )
        if make_current:
            self.set_current(record)
        return record

    # -- the tokenizer that goes with each checkpoint ---------------------------------------------------

    def keep_tokenizer(self, tokenizer: "Tokenizer") -> str:
        """Write `tokenizer` beside the weights under its content's hash (atomically; an identical file
        already there is kept) and return the name a checkpoint's header gives it."""
        data = tokenizer.raw.to_str(pretty=False).encode("utf-8")
        name = f"tokenizer-{hashlib.sha256(data).hexdigest()}.json"
        path = self.home.checkpoints_dir / name
        if not (path.is_file() and _sha256(path) == name[10:-5]):
            atomic_write_bytes(path, data)
        return name

    def _tokenizer_name(self, checkpoint: Checkpoint) -> str | None:
        """The tokenizer a checkpoint's header names (None: the home's `tokenizer.json`), read from the
        header only; an unreadable header names none (its load will say what is wrong)."""
        from companion.model.checkpoint import read_meta

        try:
            return read_meta(self.path_of(checkpoint)).extra.get(TOKENIZER_KEY) or None
        except (CheckpointError, OSError):
            return None

    def _tokenizer_file(self, name: str | None, source: Path) -> Path:
        """The file a header's tokenizer name means, checked: one of ours, present, and whole (its content
        still hashes to its name). `CheckpointError` names the checkpoint and the tokenizer file."""
        if not name:
            return self.home.tokenizer_path
        match = _TOKENIZER_NAME.match(name)
        if match is None:
            raise CheckpointError(f"{source}: names a tokenizer {name!r} that is not one of the app's")
        path = self.home.checkpoints_dir / name
        if not path.is_file():
            raise CheckpointError(f"{source}: its tokenizer {path} is missing")
        if _sha256(path) != match.group(1):
            raise CheckpointError(f"{source}: its tokenizer {path} was altered (it no longer matches its name)")
        return path

    def tokenizer_path(self, checkpoint: Checkpoint) -> Path:
        """The tokenizer file `checkpoint` reads with (the home's `tokenizer.json` unless it names another)."""
        return self._tokenizer_file(self._tokenizer_name(checkpoint), self.path_of(checkpoint))

    def tokenizer(self, checkpoint: Checkpoint | None = None) -> "Tokenizer":
        """The tokenizer of `checkpoint` (by default the current one's)."""
        from companion.model.tokenizer import Tokenizer

        checkpoint = checkpoint if checkpoint is not None else self.current()
        return Tokenizer.load(self.tokenizer_path(checkpoint) if checkpoint is not None else self.home.tokenizer_path)

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
        """The weights of `checkpoint` and the path of their tokenizer; a named tokenizer that is missing
        or altered is a `CheckpointError`, so `load_current` falls back as for damaged weights."""
        path = self.path_of(checkpoint)
        model, meta = load_checkpoint(path, device=device)
        tokenizer = self._tokenizer_file(meta.extra.get(TOKENIZER_KEY), path)
        return Loaded(model.eval(), meta, checkpoint, tokenizer_path=tokenizer)

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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
