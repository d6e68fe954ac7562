"""What runs when a companion is opened for work (the app, `companion sleep`, nursery, restore):
with the lock held, the leftovers of a kill are removed, the files are made private, and the CURRENT
pointer is settled on accepted weights. Each thing done is one note for the owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from companion.home import Home
    from companion.store import Store

__all__ = ["tidy_at_start"]


def tidy_at_start(home: "Home", store: "Store", *, settle: bool = True) -> list[str]:
    """Call with the companion's lock held and its store open; returns the notes to show. The app
    passes ``settle=False`` (no torch before its first paint): its engine's `load_current` settles
    the pointer in a worker and says so the same way."""
    from companion.safety.leftovers import remove_leftovers

    notes = remove_leftovers(home)
    home.make_private()
    if settle and store.latest_checkpoint() is not None:
        from companion.history.pointer import Pointer

        notes += Pointer(home, store).settle()
    return notes
