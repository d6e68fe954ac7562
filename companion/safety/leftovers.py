"""Temporary files that a kill left behind, found and removed when a companion is opened.

Every file worth keeping is written to a hidden temporary beside its target and renamed into place
(`model.atomic.atomic_write_bytes`, `Store.backup_to`), and a backup is assembled in a hidden
``.partial`` folder. A kill between the two steps leaves the temporary behind: never a checkpoint,
never counted as one, just bytes (a night's is as large as the weights). They are removed only by a
process that holds the companion's lock, so no one is still writing them, and each is named.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from companion.home import Home

__all__ = ["is_temporary", "find_leftovers", "remove_leftovers", "checkpoint_bytes"]

# `.name.XXXXXXXX.tmp` (mkstemp), `.name.PID.TID.tmp` and its SQLite companions, `.write-test-*.tmp`.
_TMP = re.compile(r"^\..+\.tmp(-journal|-wal|-shm)?$")
_PARTIAL = re.compile(r"^\..+\.partial$")


def is_temporary(name: str) -> bool:
    """Whether a file name is one of the app's own temporaries (never a checkpoint, never a book)."""
    return bool(_TMP.match(name))


def _folders(home: "Home") -> list[Path]:
    folders = [home.path, home.checkpoints_dir, home.backups_dir]
    try:
        other = home.backup_dir()
    except Exception:  # unreadable settings: the default folder is still searched
        other = None
    if other is not None and other not in folders:
        folders.append(other)
    return folders


def find_leftovers(home: "Home") -> list[Path]:
    """The app's temporary files and partial backup folders in the home, its checkpoints and backups."""
    found: list[Path] = []
    for folder in _folders(home):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and is_temporary(entry.name):
                found.append(Path(entry.path))
            elif stat.S_ISDIR(mode) and _PARTIAL.match(entry.name) and folder != home.path:
                found.append(Path(entry.path))
    return sorted(found)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return path.stat().st_size


def remove_leftovers(home: "Home") -> list[str]:
    """Remove the leftovers (call with the companion's lock held); one note per file removed."""
    from companion.history.cli import format_bytes

    notes = []
    for path in find_leftovers(home):
        try:
            size = _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            notes.append(f"a leftover temporary file {path} could not be removed: {exc.strerror or exc}")
            continue
        try:
            where = path.relative_to(home.path)
        except ValueError:
            where = path
        notes.append(f"removed {where} ({format_bytes(size)}), a temporary file left by an interrupted save")
    return notes


def checkpoint_bytes(folder: str | os.PathLike[str]) -> tuple[int, int]:
    """Bytes of the checkpoints folder: (weights and pointer, leftover temporaries). A temporary is
    never counted as a checkpoint; the lists say it apart until the next start removes it."""
    kept = leftover = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if is_temporary(entry.name):
            leftover += st.st_size
        else:
            kept += st.st_size
    return kept, leftover
