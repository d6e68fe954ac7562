"""The GGUF export of the weights the engine runs, cached in the companion's home for llama.cpp.

One file at a time, in `<home>/llama.cpp/` (0700; the file 0600, written whole or not at all by the
exporter), named by the checkpoint's id and the checksum of its weights: a file made from other weights
can never be taken for the current ones, and the old one is removed once the new one is written.
Backups never copy this folder (it is made again from the checkpoint on demand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from companion.home import Home
from companion.safety.private import private_mkdir
from companion.store import Checkpoint

__all__ = ["CACHE_DIR", "DTYPE", "cache_name", "cached_gguf"]

CACHE_DIR = "llama.cpp"
DTYPE = "f16"  # measured 4.3x our fp32 loop on the seedling (README "Speed"); q8_0 drifts further
FORMAT = 1  # bump when the export changes, so files written by an older exporter are made again


def cache_name(checkpoint: Checkpoint, checksum: str) -> str:
    return f"checkpoint-{checkpoint.id}-{checksum[:16]}-{DTYPE}-v{FORMAT}.gguf"


def _checksum(home: Home, checkpoint: Checkpoint) -> str:
    if checkpoint.checksum:
        return checkpoint.checksum
    from companion.model.atomic import file_sha256

    return file_sha256(home.path / checkpoint.path)


def cached_gguf(home: Home, checkpoint: Checkpoint, model: Any, tokenizer: Any, name: str = "companion") -> Path:
    """The GGUF file of `checkpoint` (whose loaded weights are `model`, read with `tokenizer`), exported
    now unless the cache holds it already; any other file in the cache is removed. Raises the exporter's
    `InteropError` when GGUF cannot carry these weights (e.g. their tokenizer)."""
    from companion.model.interop.gguf import export_gguf

    folder = private_mkdir(home.path / CACHE_DIR)
    path = folder / cache_name(checkpoint, _checksum(home, checkpoint))
    if not path.is_file():
        export_gguf(model.state_dict(), model.config, tokenizer, path, dtype=DTYPE, name=name,
                    eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
    for other in folder.iterdir():  # stale exports, and what a kill left half-written
        if other != path and other.is_file() and (other.suffix == ".gguf" or other.name.endswith(".partial")):
            other.unlink(missing_ok=True)
    return path
