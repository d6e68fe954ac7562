"""One sentence and one exit code for any error a command can end in (design invariant 6).

`companion.cli.main` is the one place that calls this, around every subcommand, so a new subcommand
gets it for free. Error classes of modules that import torch are recognised only when their module
is loaded already (if it is not, nothing could have raised them), so this stays free of torch.
"""

from __future__ import annotations

import sys

__all__ = ["EXIT_BAD_INPUT", "EXIT_LOCKED", "EXIT_FAILED", "describe"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3

# (module, class): errors whose message is already a sentence for the owner.
_KNOWN = (
    ("companion.home", "HomeError"),
    ("companion.store", "StoreError"),
    ("companion.settings", "SettingsError"),
    ("companion.model.checkpoint", "CheckpointError"),
    ("companion.model.tokenizer", "TokenizerError"),
    ("companion.model.config", "ConfigError"),
    ("companion.night.pipeline", "NightError"),
    ("companion.history.backup", "BackupError"),
    ("companion.history.restore", "RestoreError"),
    ("companion.history.personality", "BookError"),
    ("companion.birth.create", "BirthError"),
    ("companion.day", "DayError"),
)


def _known_classes() -> list[type[BaseException]]:
    found = []
    for module, name in _KNOWN:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return found


def describe(exc: BaseException) -> tuple[str, int] | None:
    """The owner's sentence and the exit code for `exc`, or None for an error nobody foresaw (a bug:
    the caller lets its traceback show, because hiding a bug helps no one)."""
    from companion.home import LockedError
    from companion.safety.room import disk_full_sentence, is_disk_full

    if isinstance(exc, LockedError):
        return str(exc), EXIT_LOCKED
    if isinstance(exc, OSError):
        where = exc.filename
        if is_disk_full(exc):
            return disk_full_sentence(where), EXIT_FAILED
        what = f"{where}: " if where else ""
        return f"{what}{exc.strerror or exc}", EXIT_FAILED
    for cls in _known_classes():
        if isinstance(exc, cls):
            text = str(exc) or type(exc).__name__
            if is_disk_full(exc) and "disk" not in text:
                text += f" ({disk_full_sentence(None)})"
            return text, EXIT_BAD_INPUT
    if isinstance(exc, UnicodeError):  # text that is not valid Unicode reaching a writer
        return f"text that is not valid Unicode cannot be written ({exc.reason})", EXIT_BAD_INPUT
    return None
