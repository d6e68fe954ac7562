"""Crash-safe file writes (no torch here: settings on the UI's start-up path use this too).

A write goes to a temporary file beside the target, is fsynced, renamed over the target, and the
folder is fsynced, so a crash or a full disk leaves either the old file or the new one, never half.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable. Not every platform can fsync a folder (Windows cannot open
    one); the rename is still atomic there, so that is no error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False) -> None:
    """The one writer of every file whose loss would hurt: weights, tokenizer, settings, pointers.

    With `exclusive`, an existing file is never replaced: `FileExistsError` is raised instead (the
    hard link that publishes the file fails atomically if the name is taken).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a whole file's bytes, read in chunks (backups are verified with this after copying)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
