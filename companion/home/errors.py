"""The errors of a companion's home: it cannot be used as asked, or another app holds it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from companion.home.lock import LockInfo


class HomeError(Exception):
    """A companion's home (or the root of homes) cannot be used as asked."""


class LockedError(HomeError):
    """The companion is already open in another process."""

    def __init__(self, message: str, holder: "LockInfo | None" = None) -> None:
        super().__init__(message)
        self.holder = holder
