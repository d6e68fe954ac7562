"""Is there room on disk for a night? Asked before the night starts, not found out at its end.

A night writes one checkpoint (the size of the current one) and a few rows to the store (the night's
report, the dream). It needs that much free space plus a margin on the disk of `checkpoints/` and of
the store; when both live on one disk the needs add up. Without the room the night does not begin:
its hours would be spent only to fail at the save.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = ["STORE_MARGIN", "WEIGHTS_MARGIN", "free_bytes", "room_problem", "is_disk_full", "disk_full_sentence"]

WEIGHTS_MARGIN = 0.10          # one checkpoint plus 10%
STORE_MARGIN = 8 * 1024 * 1024  # the night's rows, the WAL growing, the dream: generous for a few KB


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Bytes the current user may still write on the disk holding `folder`."""
    return shutil.disk_usage(folder).free


def _device(folder: Path) -> int | None:
    try:
        return os.stat(folder).st_dev
    except OSError:
        return None


def room_problem(checkpoints_dir: str | os.PathLike[str], store_path: str | os.PathLike[str],
                 checkpoint_bytes: int) -> str | None:
    """None when a night fits; else one sentence saying what is needed, where, and what is free."""
    from companion.history.cli import format_bytes

    weights_dir, store_dir = Path(checkpoints_dir), Path(store_path).parent
    need_weights = int(checkpoint_bytes * (1 + WEIGHTS_MARGIN)) + 1024 * 1024
    needs = [(weights_dir, need_weights, "the night's checkpoint"), (store_dir, STORE_MARGIN, "the store")]
    if _device(weights_dir) is not None and _device(weights_dir) == _device(store_dir):
        needs = [(weights_dir, need_weights + STORE_MARGIN, "the night's checkpoint and the store")]
    for folder, needed, what in needs:
        try:
            free = free_bytes(folder)
        except OSError as exc:
            return f"cannot tell how much room is left in {folder}: {exc.strerror or exc}"
        if free < needed:
            return (f"not enough room on disk for {what}: {format_bytes(needed)} needed in {folder}, "
                    f"{format_bytes(free)} free; free some space and the night runs at the next start")
    return None


def is_disk_full(exc: BaseException) -> bool:
    """An OSError for a full disk or quota, or SQLite saying so (sqlite3 hides the errno)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc).lower()
    return "database or disk is full" in text


def disk_full_sentence(path: str | os.PathLike[str] | None, exc: BaseException | None = None) -> str:
    """The sentence for a full disk: where, how much is free, and that nothing was half-written."""
    from companion.history.cli import format_bytes

    where = f" holding {path}" if path is not None else ""
    free = ""
    if path is not None:
        folder = Path(path)
        folder = folder if folder.is_dir() else folder.parent
        try:
            free = f" ({format_bytes(free_bytes(folder))} free)"
        except OSError:
            pass
    return (f"the disk{where} is full{free}: nothing was half-written and the last good files are kept; "
            f"free some space and try again")
