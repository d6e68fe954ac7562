"""The lock that keeps one app per companion: a kernel lock on ``<home>/lock`` (fcntl on POSIX,
msvcrt on Windows), with who holds it written inside for the message a second app shows. The kernel
drops the lock when its process dies, so a kill never leaves a companion locked."""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from companion.home.errors import HomeError, LockedError
from companion.safety.private import make_private

@dataclass(frozen=True)
class LockInfo:
    """What a lock file records about its holder."""

    pid: int | None
    host: str
    since: str  # ISO 8601 date-time

    @classmethod
    def mine(cls) -> "LockInfo":
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            since=_dt.datetime.now().astimezone().replace(microsecond=0).isoformat(),
        )

    @classmethod
    def parse(cls, data: bytes) -> "LockInfo | None":
        """The info in a lock file's bytes, or None when empty or unreadable."""
        if not data.strip():
            return None
        try:
            d = json.loads(data.decode("utf-8"))
            pid = d.get("pid")
            return cls(
                pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                host=str(d.get("host", "")),
                since=str(d.get("since", "")),
            )
        except (ValueError, AttributeError, UnicodeDecodeError):
            return cls(pid=None, host="", since="")

    def to_bytes(self) -> bytes:
        return (json.dumps({"pid": self.pid, "host": self.host, "since": self.since}) + "\n").encode()

    @property
    def since_text(self) -> str:
        """``since`` as local wall-clock time, e.g. ``2024-05-01 08:30:00``."""
        try:
            when = _dt.datetime.fromisoformat(self.since)
        except ValueError:
            return self.since or "an unknown time"
        if when.tzinfo is not None:
            when = when.astimezone()
        return when.strftime("%Y-%m-%d %H:%M:%S")

    def describe(self) -> str:
        """``pid N, since T`` (with the host when it is not this machine)."""
        pid = f"pid {self.pid}" if self.pid is not None else "pid unknown"
        if self.host and self.host != socket.gethostname():
            pid += f" on host {self.host}"
        return f"{pid}, since {self.since_text}"

    def process_exists(self) -> bool | None:
        """Whether the recorded process still exists (None when that cannot be told:
        no pid, another host, or no way to ask on this system)."""
        if self.pid is None or (self.host and self.host != socket.gethostname()):
            return None
        return _pid_exists(self.pid)


def _pid_exists(pid: int) -> bool | None:
    if pid <= 0:
        return False
    if os.name != "posix":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


if os.name == "nt":  # pragma: no cover - best effort, not tested here
    import msvcrt

    _WIN_LOCK_OFFSET = 1 << 20  # lock a byte past the info, so others can still read it

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass


def _read_fd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
        if sum(map(len, chunks)) > 65536:
            break
    return b"".join(chunks)


class HomeLock:
    """The lock that keeps a companion open in one process at a time.

    It is an exclusive ``fcntl.flock`` (``LOCK_EX | LOCK_NB``) on the home's ``lock``
    file (``msvcrt.locking`` on Windows, best effort).  The file also records the
    holder's pid, host name and start time, for messages only: the lock itself belongs
    to the kernel, which drops it the moment the holding process dies, however it dies
    (crash, ``kill -9``, power loss).  So a crashed app never leaves the companion
    locked; the next open takes the lock at once.  When it finds the previous holder's
    record still in the file (a clean release empties it), it says so:
    :attr:`recovered_stale` is true and :attr:`note` reads "recovered a stale lock ...".

    The lock file is never deleted (deleting a flock'd file lets two processes hold
    locks on two different files); its descriptor is close-on-exec, so child programs
    do not inherit the lock (a ``fork`` without ``exec`` would share it).
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.parent.name
        self._fd: int | None = None
        #: True when the lock was taken over from a process that died holding it.
        self.recovered_stale = False
        #: What the stale lock file said about its holder, when recovered.
        self.stale: LockInfo | None = None
        #: A line for the owner ("recovered a stale lock ..."), or None.
        self.note: str | None = None
        #: Our own record, once acquired.
        self.info: LockInfo | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "HomeLock":
        if self._fd is not None:
            return self
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            raise HomeError(
                f"cannot open the lock file {self.path} of companion {self.name}: "
                f"{e.strerror or e}"
            ) from None
        make_private(self.path)  # private whatever the umask (and if an older version made it 0644)
        try:
            got = _try_lock(fd)
        except OSError as e:
            os.close(fd)
            raise HomeError(f"cannot lock {self.path}: {e.strerror or e}") from None
        if not got:
            holder = self._read_holder(fd)
            os.close(fd)
            if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
                where = "already open in this same process"
            else:
                where = "already open in another process"
            who = holder.describe() if holder is not None else "pid unknown, since an unknown time"
            raise LockedError(f"companion {self.name} is {where} ({who})", holder)
        try:
            previous = LockInfo.parse(_read_fd(fd))
            mine = LockInfo.mine()
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, mine.to_bytes())
            os.fsync(fd)
        except OSError as e:
            _unlock(fd)
            os.close(fd)
            raise HomeError(f"cannot write the lock file {self.path}: {e.strerror or e}") from None
        self._fd = fd
        self.info = mine
        if previous is not None:
            self.recovered_stale = True
            self.stale = previous
            gone = previous.process_exists()
            state = (
                "which is gone"
                if gone is False
                else "which no longer holds it"
            )
            self.note = (
                f"recovered a stale lock: companion {self.name} was left open by "
                f"{previous.describe()}, {state}"
            )
        return self

    @staticmethod
    def _read_holder(fd: int) -> LockInfo | None:
        # The holder writes its record just after taking the lock; give it a moment.
        info = None
        for _ in range(20):
            try:
                info = LockInfo.parse(_read_fd(fd))
            except OSError:
                info = None
            if info is not None and info.pid is not None:
                return info
            time.sleep(0.025)
        return info

    def release(self) -> None:
        """Empty the record and let go.  Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        _unlock(fd)
        os.close(fd)

    def __enter__(self) -> "HomeLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"HomeLock({str(self.path)!r}, held={self.held})"
