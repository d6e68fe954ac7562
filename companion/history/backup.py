"""Weekly backups: the second layer of protection, a verified copy of everything needed to go on.

A backup is a dated folder under the owner's chosen backup folder::

    <backup dir>/<name>-20240501-120000/
        manifest.json           what is here, with the sha256 and size of every file
        companion.db            the store, taken with SQLite's online backup (never a file copy of a
                                live database, which could catch it half-written)
        companion.toml          the settings
        tokenizer.json
        checkpoints/<file>      the weights the companion lives on
        checkpoints/tokenizer-<sha256>.json   their tokenizer, when a growth added tokens
        checkpoints/CURRENT     which checkpoint that is

It is assembled in a hidden ``.partial`` folder, every copied file is re-read and its checksum compared
with the source's, the store copy passes SQLite's integrity check, the manifest is written atomically,
and only then is the folder renamed to its dated name. So a dated folder with a manifest is a verified,
complete backup; anything else is not one. A folder that cannot be written (not a folder, read-only,
full) raises ``BackupError`` naming it and why; the partial folder is removed and no older backup is
touched. Older backups beyond ``backup.keep`` are removed only after a new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from companion.history.pointer import CURRENT_FILE, Pointer
from companion.home import Home
from companion.safety.private import PRIVATE_FILE, private_mkdir
from companion.safety.room import disk_full_sentence, is_disk_full
from companion.settings import Settings
from companion.store import Store, StoreError
from companion.model.atomic import atomic_write_bytes, file_sha256

__all__ = ["BackupError", "BackupInfo", "FORMAT", "MANIFEST", "make_backup", "verify_backup", "list_backups",
           "last_backup", "due", "folder_size", "backup_line"]

FORMAT = "companion-backup-1"
MANIFEST = "manifest.json"
_STAMP = "%Y%m%d-%H%M%S"


class BackupError(Exception):
    """A backup that could not be made, or that fails its checks; the message says which file."""


@dataclass(frozen=True)
class BackupInfo:
    """One complete backup, as its manifest tells it."""

    folder: Path
    made_at: datetime
    verified_at: datetime | None
    checkpoint_id: int | None
    files: dict[str, dict]        # relative path -> {"sha256": ..., "bytes": ...}

    @property
    def size_bytes(self) -> int:
        return sum(int(f.get("bytes", 0)) for f in self.files.values())


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _copy_verified(src: Path, dest: Path) -> dict:
    """Copy a file, fsync it, re-read it: its checksum must equal the source's."""
    before = file_sha256(src)
    private_mkdir(dest.parent)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), PRIVATE_FILE)
    with open(src, "rb") as fin, open(fd, "wb") as fout:  # 0600 like the original, whatever the umask
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    after = file_sha256(dest)
    if after != before:
        raise BackupError(f"{dest}: the copy does not match {src} (checksum {after[:12]} != {before[:12]})")
    return {"sha256": after, "bytes": dest.stat().st_size}


def _check_sqlite(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: the store copy cannot be read ({exc})") from exc
    if result != ["ok"]:
        raise BackupError(f"{path}: the store copy fails SQLite's integrity check: {'; '.join(result[:3])}")


def _companion_prefix(home: Home) -> str:
    return f"{home.name}-"


def make_backup(home: Home, store: Store, *, settings: Settings | None = None,
                now: datetime | None = None) -> BackupInfo:
    """Back up weights, tokenizer, settings and store now; verify; keep the last ``backup.keep``."""
    settings = settings or home.load_settings()
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    root = home.backup_dir(settings)
    try:  # a damaged store is never backed up: it would push the good backups out of `backup.keep`
        problems = store.integrity_check()
    except StoreError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise BackupError(f"{store.path} fails SQLite's integrity check ({'; '.join(problems[:3])}); no backup "
                          f"was made and the older ones are kept: restore the store with `companion recover-store`")
    current = Pointer(home, store).current()
    sources: list[tuple[str, Path]] = [("companion.toml", home.settings_path)]
    if home.tokenizer_path.is_file():
        sources.append(("tokenizer.json", home.tokenizer_path))
    if current is not None:
        weights_file = home.path / current.path
        if not weights_file.is_file():
            raise BackupError(f"the current weights file {weights_file} is missing; restore a checkpoint first")
        sources.append((Path(current.path).as_posix(), weights_file))
        from companion.history.weights import Weights  # torch: a checkpoint's header names its tokenizer
        from companion.model.checkpoint import CheckpointError

        try:
            tokenizer_file = Weights(home, store).tokenizer_path(current)
        except CheckpointError as exc:
            raise BackupError(f"{exc}; no backup was made") from None
        if tokenizer_file != home.tokenizer_path:  # a growth added tokens: its own tokenizer
            sources.append((f"{home.checkpoints_dir.name}/{tokenizer_file.name}", tokenizer_file))
    name = f"{_companion_prefix(home)}{now.strftime(_STAMP)}"
    final = root / name
    partial = root / f".{name}.partial"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise BackupError(f"cannot back up to {root}: it is not a folder")
        if final.exists():
            raise BackupError(f"a backup named {name} already exists in {root}")
        shutil.rmtree(partial, ignore_errors=True)
        private_mkdir(partial)
    except BackupError:
        raise
    except OSError as exc:
        why = disk_full_sentence(root) if is_disk_full(exc) else _why(exc)
        raise BackupError(f"cannot back up to {root}: {why}") from None
    try:
        files: dict[str, dict] = {}
        for rel, src in sources:
            files[rel] = _copy_verified(src, partial / rel)
        if current is not None:
            pointer = json.dumps({"id": current.id, "path": current.path}).encode()
            rel = f"checkpoints/{CURRENT_FILE}"
            atomic_write_bytes(partial / rel, pointer)
            files[rel] = {"sha256": hashlib.sha256(pointer).hexdigest(), "bytes": len(pointer)}
        db = partial / "companion.db"
        store.backup_to(db)
        _check_sqlite(db)
        files["companion.db"] = {"sha256": file_sha256(db), "bytes": db.stat().st_size}
        verified = datetime.now(timezone.utc)
        manifest = {
            "format": FORMAT, "companion": home.name, "made_at": now.isoformat(),
            "verified_at": verified.isoformat(),
            "checkpoint": None if current is None else {"id": current.id, "path": current.path,
                                                        "checksum": current.checksum},
            "files": files,
        }
        atomic_write_bytes(partial / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        os.replace(partial, final)
    except (OSError, StoreError, BackupError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, BackupError):
            raise
        why = _why(exc) if isinstance(exc, OSError) else str(exc)
        if is_disk_full(exc):
            why = disk_full_sentence(root)
        raise BackupError(f"cannot back up to {root}: {why}; nothing was changed") from None
    _keep_last(home, root, settings.backup.keep)
    return _read_manifest(final)


def _read_manifest(folder: Path) -> BackupInfo:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        made = datetime.fromisoformat(data["made_at"])
        verified = datetime.fromisoformat(data["verified_at"]) if data.get("verified_at") else None
        checkpoint = data.get("checkpoint") or {}
        files = data["files"]
        if not isinstance(files, dict):
            raise ValueError("files is not a table")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{folder / MANIFEST}: not a readable backup manifest ({exc})") from None
    return BackupInfo(folder, made, verified, checkpoint.get("id"), files)


def verify_backup(folder: str | os.PathLike[str]) -> BackupInfo:
    """Re-read every file of a backup against its manifest; a missing, changed or extra-damaged file
    raises ``BackupError`` naming it."""
    folder = Path(folder)
    info = _read_manifest(folder)
    problems = []
    for rel, entry in sorted(info.files.items()):
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel} is missing")
            continue
        actual = file_sha256(path)
        if actual != entry.get("sha256"):
            problems.append(f"{rel} does not match its checksum (expected {str(entry.get('sha256'))[:12]}, "
                            f"found {actual[:12]})")
    if problems:
        raise BackupError(f"backup {folder} is damaged: " + "; ".join(problems))
    return info


_NAME_RE = re.compile(r"-\d{8}-\d{6}")


def list_backups(home: Home, settings: Settings | None = None) -> list[BackupInfo]:
    """This companion's complete backups in its backup folder, oldest first (unreadable ones skipped)."""
    return _list_in(home, home.backup_dir(settings))


def last_backup(home: Home, settings: Settings | None = None) -> BackupInfo | None:
    """The newest complete backup (when it was made and verified), for the checkpoints screen."""
    found = list_backups(home, settings)
    return found[-1] if found else None


def due(home: Home, settings: Settings | None = None, now: datetime | None = None) -> bool:
    """Whether an automatic backup is due: ``backup.every_days`` since the last one (0 = by hand only)."""
    settings = settings or home.load_settings()
    if settings.backup.every_days == 0:
        return False
    last = last_backup(home, settings)
    if last is None:
        return True
    now = now or datetime.now(timezone.utc)
    return now - last.made_at >= timedelta(days=settings.backup.every_days)


def _keep_last(home: Home, root: Path, keep: int) -> None:
    for old in _list_in(home, root)[:-keep]:
        shutil.rmtree(old.folder, ignore_errors=True)


def _list_in(home: Home, root: Path) -> list[BackupInfo]:
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    found = []
    for p in entries:
        if p.is_dir() and re.fullmatch(re.escape(home.name) + _NAME_RE.pattern, p.name):
            try:
                found.append(_read_manifest(p))
            except BackupError:
                continue
    return sorted(found, key=lambda b: b.made_at)


def folder_size(folder) -> int:
    """Bytes used by the files under a folder (0 if it cannot be read)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _ago(when: datetime, now: datetime) -> str:
    days = (now - when).days
    return "today" if days <= 0 else "yesterday" if days == 1 else f"{days} days ago"


def backup_line(info: BackupInfo | None, is_due: bool, now: datetime | None = None) -> str:
    """"last backup 2024-05-01 12:00 (3 days ago), verified 12:00" or "no backup yet"."""
    now = now or datetime.now(timezone.utc)
    if info is None:
        text = "no backup yet"
    else:
        made = info.made_at.astimezone()
        verified = (f", verified {info.verified_at.astimezone():%Y-%m-%d %H:%M}" if info.verified_at
                    else ", not verified")
        text = f"last backup {made:%Y-%m-%d %H:%M} ({_ago(info.made_at, now)}){verified}"
    return text + (" · a backup is due" if is_due else "")
