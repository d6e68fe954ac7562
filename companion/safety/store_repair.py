"""A damaged store, restored from the newest verified backup, the damaged file kept aside.

The store is the owner's diary: a damaged one is never deleted or written over. It is renamed aside
(``companion.db.damaged-<time>``, with its -wal and -shm), and the newest backup whose files match
their manifest and whose store copy passes SQLite's full integrity check is copied in with SQLite's
online backup. What was written after that backup is not in it: the owner is told the backup's date,
and the damaged file stays for an expert to salvage.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from companion.safety.private import make_private
from companion.model.atomic import fsync_dir

if TYPE_CHECKING:  # pragma: no cover
    from companion.history.backup import BackupInfo
    from companion.home import Home

__all__ = ["StoreRecovery", "newest_verified_backup", "recover_store"]


@dataclass(frozen=True)
class StoreRecovery:
    backup: Path          # the backup folder the store came from
    made_at: datetime     # when that backup was made: what came later is not in the store
    damaged: Path         # where the damaged file now lies


def _sound(db: Path) -> bool:
    """The backup's store copy passes SQLite's full integrity check (the same check a backup ends with)."""
    from companion.history.backup import BackupError, _check_sqlite

    try:
        _check_sqlite(db)
    except BackupError:
        return False
    return True


def newest_verified_backup(home: "Home") -> "BackupInfo | None":
    """The newest backup whose every file matches its manifest and whose store is sound, or None
    (the configured backup folder; the home's own `backups/` when the settings cannot be read)."""
    from companion.history.backup import BackupError, list_backups, verify_backup
    from companion.settings import Settings

    try:
        found = list_backups(home)
    except Exception:  # unreadable settings must not stand between the owner and their backup
        found = list_backups(home, Settings.new(home.name, "Owner"))
    for info in reversed(found):
        try:
            verify_backup(info.folder)
        except (BackupError, OSError):
            continue
        if _sound(info.folder / "companion.db"):
            return info
    return None


def recover_store(home: "Home", now: datetime | None = None) -> StoreRecovery:
    """Set the damaged store aside and copy in the newest verified backup's (call with the lock held).
    Raises StoreError, changing nothing, when there is no verified backup to restore from."""
    from companion.store import StoreError

    info = newest_verified_backup(home)
    if info is None:
        raise StoreError(f"{home.store_path} cannot be restored: there is no verified backup of "
                         f"{home.name} (none in {home.backups_dir} passes its checks); nothing was changed")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    store = home.store_path
    aside = store.with_name(f"{store.name}.damaged-{stamp}")
    tmp = store.with_name(f".{store.name}.{os.getpid()}.recover.tmp")
    from companion.store import copy_database

    try:  # copy first: a failure here leaves the damaged file where it was, nothing changed
        copy_database(info.folder / "companion.db", tmp, read_only=True)
    except (sqlite3.Error, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot restore {store} from {info.folder}: {exc}; nothing was changed") from exc
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{store}{suffix}")
        if part.exists():
            os.replace(part, Path(f"{aside}{suffix}"))
            make_private(Path(f"{aside}{suffix}"))
    os.replace(tmp, store)
    make_private(store)
    fsync_dir(store.parent)
    return StoreRecovery(info.folder, info.made_at, aside)
