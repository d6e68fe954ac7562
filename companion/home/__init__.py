"""A companion's home: its folder (`folders`), its name (`names`), the lock that keeps one app per
companion (`lock`) and the errors (`errors`). This package is on the UI's start-up path: it never
imports torch or textual. Everything public is importable from `companion.home`."""

from companion.home.errors import HomeError, LockedError
from companion.home.folders import (APP_NAME, ENV_CONFIG, ENV_HOME, SEEDLING_DIR, Home, config_dir, ensure_writable,
                                    is_born, is_home, list_companions, list_unborn, resolve_root, themes_dir,
                                    unborn_path)
from companion.home.lock import HomeLock, LockInfo
from companion.home.names import MAX_NAME_LENGTH, validate_name

__all__ = [
    "APP_NAME", "ENV_HOME", "ENV_CONFIG", "MAX_NAME_LENGTH", "SEEDLING_DIR", "HomeError", "LockedError", "Home",
    "HomeLock", "LockInfo", "resolve_root", "config_dir", "themes_dir", "validate_name", "list_companions",
    "list_unborn", "unborn_path", "is_born", "is_home", "ensure_writable",
]
