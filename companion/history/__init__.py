"""A companion's past: its checkpoints (`weights` writes and loads them, `pointer` says which one is
current without torch), backups, restores, what is kept (`retention`), and the personality book
(`personality`) that every reply the owner let into a day can be taught again from."""
