"""Settings to and from ``companion.toml``: read with `tomllib`, written with `tomli_w` atomically (a
temporary file in the same folder, fsynced, then renamed over the old one, so a crash leaves the old
file whole). Keys missing from a file take their defaults, so files written by older versions keep
working. Also the list of every setting with its help (`describe_settings`)."""


from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tomli_w

from companion.model.atomic import atomic_write_bytes

from companion.settings.specs import SettingsError
from companion.settings.schema import Settings, _SECTION_ORDER, _build, _fields, _validate_tree


# --------------------------------------------------------------------------- describing


@dataclass(frozen=True)
class SettingInfo:
    """One key, for the settings screen: its dotted key, default (``None`` when
    required or unset), what is allowed and a one-line help."""

    key: str
    default: Any
    allowed: str
    help: str


def describe_settings() -> list[SettingInfo]:
    """Every settable key, in file order."""
    out: list[SettingInfo] = []

    def walk(cls: type, prefix: str, defaults: Any) -> None:
        for f in dataclasses.fields(cls):
            dotted = prefix + f.name
            if defaults is not None:
                default = getattr(defaults, f.name, None)
            elif f.default is not dataclasses.MISSING:
                default = f.default
            else:
                default = None
            if "section" in f.metadata:
                walk(f.metadata["section"], dotted + ".", default)
                continue
            out.append(SettingInfo(dotted, default, f.metadata["spec"].allowed, f.metadata["help"]))

    sample = Settings.new("x", "x", born="2000-01-01T00:00:00")
    for name in _SECTION_ORDER:
        f = _fields(Settings)[name]
        defaults = None if name == "companion" else getattr(sample, name)
        walk(f.metadata["section"], name + ".", defaults)
    return out


# --------------------------------------------------------------------------- files


def settings_to_toml(settings: Settings) -> str:
    """The TOML text of ``settings`` (exactly what :func:`save_settings` writes)."""
    return tomli_w.dumps(settings.to_dict())


def settings_from_toml(text: str, path: str | os.PathLike[str] | None = None) -> Settings:
    """Parse and validate TOML text; errors name ``path`` when given."""
    p = Path(path) if path is not None else None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        where = f"{p}: " if p is not None else ""
        raise SettingsError(f"{where}not valid TOML: {e}", path=p) from None
    return _build(table, p)


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate a ``companion.toml``.  Missing keys take their defaults; a
    missing or unreadable file, a TOML syntax error, an unknown key or a bad value
    raises :class:`SettingsError` naming the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{p}: no settings file there", path=p) from None
    except OSError as e:
        raise SettingsError(f"{p}: cannot read the settings file: {e.strerror or e}", path=p) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SettingsError(
            f"{p}: not valid TOML: not UTF-8 text (byte {e.start})", path=p
        ) from None
    return settings_from_toml(text, p)


def save_settings(
    path: str | os.PathLike[str], settings: Settings, *, exclusive: bool = False
) -> None:
    """Write ``settings`` to ``path`` atomically (temporary file in the same folder,
    fsync, rename).  A crash leaves either the old file or the new one, whole.

    With ``exclusive=True`` an existing file is never replaced: :class:`FileExistsError`
    is raised instead (used when a companion is created).
    """
    p = Path(path)
    if not isinstance(settings, Settings):
        raise TypeError(f"save_settings needs a Settings, not {type(settings).__name__}")
    _validate_tree(settings, "", p)
    atomic_write_bytes(p, settings_to_toml(settings).encode("utf-8"), exclusive=exclusive)


def update_settings_file(path: str | os.PathLike[str], key: str, value: Any) -> Settings:
    """Load ``path``, change one dotted key (see :meth:`Settings.with_value`), save it
    atomically and return the new settings.  A refused value leaves the file untouched."""
    p = Path(path)
    current = load_settings(p)
    try:
        new = current.with_value(key, value)
    except SettingsError as e:
        raise SettingsError(
            f"{p}: {e}", path=p, key=e.key, value=e.value, allowed=e.allowed
        ) from None
    if new != current:
        save_settings(p, new)
    return new


def iter_settings(settings: Settings) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every key, in file order (unset optional keys give None)."""
    for info in describe_settings():
        yield info.key, settings.get(info.key)
