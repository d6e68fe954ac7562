"""The books folder: texts the owner drops in ``books/`` for the companion to read at night.

Files are noticed at start (``BooksFolder.scan``) and while the app runs (``BooksFolder.start`` watches
the folder with ``watchfiles`` in a daemon thread; ``stop`` ends it). Each file is checked: it must be
readable, UTF-8 text without NUL bytes, not empty, and within ``books.max_bytes``. A good file is queued
once per content (the store deduplicates on path and sha256, so the watcher reporting it several times
queues it once); a file that changes is queued again with its new content and its older queued version
is set aside. A refused file is recorded with a note for the books screen and left exactly where it is,
untouched: this module never writes, moves or deletes anything in the books folder.

Paths are stored relative to the companion's home (``books/novel.txt``), like checkpoints, so the home
can move; ``book_file(home, book)`` gives the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from companion.home import Home
from companion.store import Book, Store, StoreError

__all__ = ["FileCheck", "check_file", "BooksFolder", "book_file", "count_tokens", "IGNORED_SUFFIXES"]

#: Editors' and browsers' temporary files: not books, never listed.
IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".swp", ".swx", "~")


@dataclass(frozen=True)
class FileCheck:
    """What checking one file found. ``note`` is None when the file is a good book."""

    path: Path
    sha256: str
    bytes: int
    note: str | None
    text: str | None = None


def _ignored(path: Path, folder: Path) -> bool:
    rel = path.relative_to(folder)
    return any(part.startswith(".") for part in rel.parts) or path.name.endswith(IGNORED_SUFFIXES)


SYMLINK_NOTE = ("a symbolic link, not followed: a book must be a regular file inside the books folder "
                "(copy the file in instead)")


def _inside(path: Path, folder: Path) -> bool:
    """Whether the file really lies inside the folder (no linked folder on the way)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_file(path: str | os.PathLike[str], max_bytes: int) -> FileCheck:
    """Check one file without changing it. Unreadable files get a stand-in checksum from their size
    and time, so that a repeated report is still recognised as the same file."""
    path = Path(path)
    if path.is_symlink():  # never followed: a link may point at any private file of the machine
        key = f"symlink:{path}:{os.readlink(path) if hasattr(os, 'readlink') else ''}"
        return FileCheck(path, hashlib.sha256(key.encode()).hexdigest(), 0, SYMLINK_NOTE)
    try:
        st = path.stat()
        size = st.st_size
        if size > max_bytes:
            key = f"too-large:{size}:{st.st_mtime_ns}"
            return FileCheck(path, hashlib.sha256(key.encode()).hexdigest(), size,
                             f"too large: {size:,} bytes; the limit is {max_bytes:,} (books.max_bytes)")
        data = path.read_bytes()
    except OSError as exc:
        key = f"unreadable:{path}:{exc.errno}"
        return FileCheck(path, hashlib.sha256(key.encode()).hexdigest(), 0,
                         f"unreadable: {exc.strerror or exc}")
    digest = hashlib.sha256(data).hexdigest()
    if not data.strip():
        return FileCheck(path, digest, len(data), "empty: nothing to read")
    if b"\x00" in data:
        return FileCheck(path, digest, len(data), "not text: it holds binary data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FileCheck(path, digest, len(data), f"not UTF-8 text (byte {exc.start} cannot be read)")
    return FileCheck(path, digest, len(data), None, text)


def book_file(home: Home, book: Book) -> Path:
    """The file a book record points at."""
    return home.path / book.path


_token_cache: dict[str, int] = {}
_token_lock = threading.Lock()


def count_tokens(home: Home, book: Book) -> int | None:
    """The book's length in the companion's tokens (cached per content), or None when there is no
    tokenizer yet or the file no longer matches the record."""
    if book.tokens is not None:
        return book.tokens
    with _token_lock:
        if book.sha256 in _token_cache:
            return _token_cache[book.sha256]
    if not home.tokenizer_path.is_file():
        return None
    from companion.model.tokenizer import Tokenizer, TokenizerError

    try:
        data = book_file(home, book).read_bytes()
        if hashlib.sha256(data).hexdigest() != book.sha256:
            return None
        tokens = len(Tokenizer.load(home.tokenizer_path).encode(data.decode("utf-8")))
    except (OSError, UnicodeDecodeError, TokenizerError):
        return None
    with _token_lock:
        _token_cache[book.sha256] = tokens
    return tokens


class BooksFolder:
    """Keeps the store's book records in step with the books folder. Thread-safe: the watcher thread
    and the UI may both call ``add``. ``on_change`` (called from the watcher thread) gets the records
    that changed; the app forwards it with ``call_from_thread``."""

    def __init__(self, home: Home, store: Store, *, max_bytes: int | None = None,
                 on_change: Callable[[list[Book]], None] | None = None) -> None:
        self.home, self.store = home, store
        self.folder = home.books_dir
        self.max_bytes = max_bytes if max_bytes is not None else home.load_settings().books.max_bytes
        self.on_change = on_change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.home.path).as_posix()

    def add(self, path: str | os.PathLike[str]) -> Book | None:
        """Check one file and record it (queued or refused). Returns its record, or None for files
        that are not books at all (hidden, temporary, folders, gone)."""
        path = Path(path).absolute()
        try:
            if _ignored(path, self.folder) or not (path.is_file() or path.is_symlink()):
                return None
        except ValueError:  # outside the books folder
            return None
        if not path.is_symlink() and not _inside(path, self.folder):
            return None  # reached through a linked folder: not inside the books folder
        check = check_file(path, self.max_bytes)
        rel = self._rel(path)
        with self._lock:
            before = {(b.path, b.sha256) for b in self.store.books()}
            book = self.store.queue_book(rel, check.sha256, check.bytes)
            if (rel, check.sha256) in before:
                return book  # seen before: whatever it became, it stays
            if check.note is not None:
                return self.store.refuse_book(book.id, check.note)
            for older in self.store.books("queued"):  # the file changed: its old content is not read
                if older.path == rel and older.id != book.id:
                    self.store.refuse_book(older.id, "replaced: the file changed; its new content is queued")
            return book

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.rglob("*")
                          if (p.is_file() or p.is_symlink()) and not _ignored(p, self.folder))
        except OSError:
            return []

    def scan(self) -> list[Book]:
        """Check every file in the folder (at start). Queued books whose file is gone are set aside."""
        self.folder.mkdir(parents=True, exist_ok=True)
        records = [b for b in (self.add(p) for p in self._files()) if b is not None]
        with self._lock:
            for book in self.store.books("queued"):
                if not book_file(self.home, book).is_file():
                    try:
                        self.store.refuse_book(book.id, "gone: the file was removed from the books folder")
                    except StoreError:
                        pass
        return records

    # -- watching -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Scan, then watch the folder in a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.scan()
        self._thread = threading.Thread(target=self._watch, name="books-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _watch(self) -> None:
        from watchfiles import Change, watch

        try:
            for changes in watch(self.folder, stop_event=self._stop, debounce=400, step=50,
                                 rust_timeout=500, yield_on_timeout=False, raise_interrupt=False):
                paths = sorted({Path(p) for change, p in changes if change != Change.deleted})
                self.report(paths)
        except Exception:  # the folder vanished, or the watcher failed: the next start scans again
            return

    def report(self, paths: list[Path]) -> list[Book]:
        """What the watcher calls with the paths it saw change (also callable directly)."""
        changed = [b for b in (self.add(p) for p in paths) if b is not None]
        if changed and self.on_change is not None:
            self.on_change(changed)
        return changed
