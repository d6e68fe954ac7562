"""Private by default: the owner's diary and weights are nobody else's business (design invariant 5).

Folders are 0700 and files 0600 whatever the process umask, because a umask of 022 is the common
default and would leave the store, its WAL and the tokenizer readable by every user of the machine.
Every writer of the app's files either creates them with these modes or calls `make_private` after.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Make everything this process creates from now on private; returns the umask it replaced.
    The entry points (the CLI and the app) call it first, as a backstop behind the explicit modes."""
    return os.umask(PRIVATE_UMASK)


def make_private(path: str | os.PathLike[str]) -> None:
    """chmod a folder to 0700 or a regular file to 0600; a symlink or a missing path is left alone."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        wanted = PRIVATE_DIR
    elif stat.S_ISREG(st.st_mode):
        wanted = PRIVATE_FILE
    else:
        return
    if stat.S_IMODE(st.st_mode) != wanted:
        try:
            os.chmod(path, wanted)
        except OSError:
            pass  # a file owned by someone else, a read-only mount: nothing we may change


def make_tree_private(folder: str | os.PathLike[str]) -> None:
    """`make_private` on a folder and everything under it (links are not followed)."""
    folder = Path(folder)
    make_private(folder)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            make_private(os.path.join(dirpath, name))


def private_mkdir(folder: str | os.PathLike[str]) -> Path:
    """Make a folder (and its missing parents) 0700, whatever the umask; an existing one is made 0700."""
    folder = Path(folder)
    folder.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    make_private(folder)
    return folder


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Create an empty file 0600 if it does not exist yet (SQLite then gives its -wal and -shm the same
    mode), and make an existing one 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    except OSError:
        return  # the caller's own open reports the problem with its own words
    os.close(fd)
    make_private(path)
