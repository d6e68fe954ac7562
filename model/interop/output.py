"""Export targets written whole or not at all: a file or folder appears under its final name only
once everything in it is written and fsynced. A failure (a full disk) leaves nothing behind but what
was there before. Files are 0600 and folders 0700: the weights are the owner's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from companion.model.atomic import fsync_dir
from companion.model.interop.errors import InteropError


def check_target(path: Path, overwrite: bool, folder: bool) -> None:
    """Refuse an existing target unless `overwrite`, and a target of the other kind (file vs folder)."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InteropError(f"{path} already exists; give --overwrite to replace it")
        if folder and not path.is_dir():
            raise InteropError(f"{path} exists and is not a folder; not replacing it with one")
        if not folder and not path.is_file():
            raise InteropError(f"{path} exists and is not a file; not replacing it with one")
    if not path.parent.is_dir():
        raise InteropError(f"{path.parent} is not a folder; cannot export into it")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def staged_file(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary 0600 file beside `path` to write; renamed over `path` when the block succeeds."""
    path = Path(path)
    check_target(path, overwrite, folder=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o600)
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def staged_folder(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary 0700 folder beside `path` to fill; it takes `path`'s name when the block succeeds
    (an old folder there is moved aside first and removed only after the new one is in place)."""
    path = Path(path)
    check_target(path, overwrite, folder=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    old: Path | None = None
    try:
        yield tmp
        for child in tmp.iterdir():
            os.chmod(child, 0o600)
            _fsync_file(child)
        fsync_dir(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if old is not None and not path.exists():  # put the old export back where it was
            os.replace(old / path.name, path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
