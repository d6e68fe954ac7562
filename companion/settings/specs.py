"""How a setting is checked: one spec per kind of value (an int in a range, a template, key bindings ...),
and `SettingsError`, which names the file, the dotted key, the value given and what is allowed. The
schema (`companion.settings.schema`) declares each setting with one of these."""


from __future__ import annotations

import datetime as _dt
import math
import os
import re
import string
import unicodedata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping



from companion.home.names import HomeError, validate_name



#: Placeholders a day template may use.
TEMPLATE_FIELDS = ("companion", "owner")


# --------------------------------------------------------------------------- errors


class SettingsError(ValueError):
    """A settings file or value was refused.

    The message names the file (when there is one), the dotted key, the value given
    and what is allowed.  The parts are also kept as attributes for the UI.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        key: str | None = None,
        value: Any = None,
        allowed: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.key = key
        self.value = value
        self.allowed = allowed


class _Bad(Exception):
    """Internal: a value is not allowed.  ``allowed`` describes what is."""

    def __init__(
        self, allowed: str, why: str | None = None, *, subkey: str | None = None,
        subvalue: Any = None,
    ) -> None:
        super().__init__(allowed)
        self.allowed = allowed
        self.why = why
        self.subkey = subkey  # the key inside a table value that was refused
        self.subvalue = subvalue


def _show(value: Any, limit: int = 200) -> str:
    """A value as the owner would recognise it (TOML-ish, control characters escaped)."""
    text = _show_full(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_full(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show_full(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_show_full(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _error(key: str, value: Any, bad: _Bad, path: Path | None) -> SettingsError:
    where = f"{path}: " if path is not None else ""
    why = f" ({bad.why})" if bad.why else ""
    if bad.subkey is not None:
        key, value = f"{key}.{bad.subkey}", bad.subvalue
    return SettingsError(
        f"{where}{key} = {_show(value)} is not allowed{why}; expected {bad.allowed}",
        path=path,
        key=key,
        value=value,
        allowed=bad.allowed,
    )


# --------------------------------------------------------------------------- value specs


def _has_control(s: str) -> bool:
    return any(unicodedata.category(c).startswith("C") for c in s)


def _num(x: float | int) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


class _Spec:
    """How one key is checked.  ``check`` takes a TOML value (or a Python value given to
    ``with_value``) and returns it normalised, or raises :class:`_Bad`; ``parse`` takes
    the text typed on the settings screen."""

    allowed = "a value"

    def check(self, v: Any) -> Any:  # pragma: no cover - overridden
        return v

    def parse(self, text: str) -> Any:
        return self.check(text)

    def to_toml(self, v: Any) -> Any:
        return v


class _Int(_Spec):
    def __init__(self, lo: int, hi: int, allowed: str | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.allowed = allowed or f"a whole number from {lo:_} to {hi:_}".replace("_", ",")

    def check(self, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(self.allowed)
        if not self.lo <= v <= self.hi:
            raise _Bad(self.allowed)
        return v

    def parse(self, text: str) -> int:
        try:
            return self.check(int(text.strip().replace(",", "")))
        except ValueError:
            raise _Bad(self.allowed) from None


class _OptInt(_Int):
    """A whole number or nothing (absent from the file)."""

    def __init__(self, lo: int, hi: int, allowed: str) -> None:
        super().__init__(lo, hi, allowed)

    def check(self, v: Any) -> int | None:
        if v is None:
            return None
        return super().check(v)

    def parse(self, text: str) -> int | None:
        if text.strip().lower() in ("", "none", "off", "random"):
            return None
        return super().parse(text)


class _Float(_Spec):
    def __init__(
        self, lo: float, hi: float, *, lo_open: bool = False, allowed: str | None = None
    ) -> None:
        self.lo, self.hi, self.lo_open = float(lo), float(hi), lo_open
        if allowed:
            self.allowed = allowed
        elif lo_open:
            self.allowed = f"a number greater than {_num(self.lo)} and at most {_num(self.hi)}"
        else:
            self.allowed = f"a number from {_num(self.lo)} to {_num(self.hi)}"

    def check(self, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Bad(self.allowed)
        v = float(v)
        if not math.isfinite(v):
            raise _Bad(self.allowed)
        low_ok = v > self.lo if self.lo_open else v >= self.lo
        if not (low_ok and v <= self.hi):
            raise _Bad(self.allowed)
        return v

    def parse(self, text: str) -> float:
        try:
            return self.check(float(text.strip()))
        except ValueError:
            raise _Bad(self.allowed) from None


class _Bool(_Spec):
    allowed = "true or false"
    _TRUE = ("true", "yes", "on", "1")
    _FALSE = ("false", "no", "off", "0")

    def check(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise _Bad(self.allowed)
        return v

    def parse(self, text: str) -> bool:
        t = text.strip().lower()
        if t in self._TRUE:
            return True
        if t in self._FALSE:
            return False
        raise _Bad(self.allowed)


class _Text(_Spec):
    def __init__(
        self,
        allowed: str,
        *,
        nonempty: bool = False,
        max_len: int = 200,
        pattern: str | None = None,
        extra: Any = None,
    ) -> None:
        self.allowed = allowed
        self.nonempty, self.max_len = nonempty, max_len
        self.pattern = re.compile(pattern) if pattern else None
        self.extra = extra  # callable(str) -> str, may raise _Bad

    def check(self, v: Any) -> str:
        if not isinstance(v, str):
            raise _Bad(self.allowed)
        if self.nonempty and not v.strip():
            raise _Bad(self.allowed, "it is empty")
        if len(v) > self.max_len:
            raise _Bad(self.allowed, f"longer than {self.max_len} characters")
        if _has_control(v):
            raise _Bad(self.allowed, "it contains a control character")
        if self.pattern is not None and v and not self.pattern.fullmatch(v):
            raise _Bad(self.allowed)
        if self.extra is not None:
            v = self.extra(v, self.allowed)
        return v


#: The preset a companion born from an open base model names (its size is the base's, not a preset's).
IMPORTED_PRESET = "base"


def _preset_names() -> list[str]:
    from companion.model.config import PRESETS  # plain dataclasses: no torch on the UI's start-up path

    return list(PRESETS)


def _known_preset(value: str, allowed: str) -> str:
    """A preset the model code knows: a made-up one ("v9") would only fail later, at birth or growth."""
    if value not in _preset_names() and value != IMPORTED_PRESET:
        raise _Bad(allowed, "no such preset")
    return value


class _Name(_Spec):
    """A companion's name (the name of its folder too): checked by home.validate_name."""

    allowed = (
        "a name of 1 to 40 characters without path separators, '..', a leading dot "
        "or control characters"
    )

    def check(self, v: Any) -> str:
        if not isinstance(v, str):
            raise _Bad(self.allowed)
        try:
            return validate_name(v)
        except HomeError:
            raise _Bad(self.allowed) from None


class _Born(_Spec):
    allowed = "an ISO 8601 date-time such as '2024-05-01T08:30:00+02:00' (or '' if unknown)"

    def check(self, v: Any) -> str:
        if isinstance(v, (_dt.datetime, _dt.date)):  # an unquoted TOML date-time
            return v.isoformat()
        if not isinstance(v, str):
            raise _Bad(self.allowed)
        if v == "":
            return v
        try:
            _dt.datetime.fromisoformat(v)
        except ValueError:
            raise _Bad(self.allowed) from None
        return v


class _Template(_Spec):
    def __init__(self, required: tuple[str, ...], max_len: int = 300) -> None:
        self.required = required
        self.max_len = max_len
        allowed_fields = " and ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
        if required:
            names = ", ".join("{" + r + "}" for r in required)
            self.allowed = (
                f"a line containing {names}, using no placeholders other than "
                f"{allowed_fields} (write {{{{ and }}}} for literal braces)"
            )
        else:
            self.allowed = (
                f"a non-empty line, using no placeholders other than {allowed_fields} "
                f"(write {{{{ and }}}} for literal braces)"
            )

    def check(self, v: Any) -> str:
        if not isinstance(v, str):
            raise _Bad(self.allowed)
        if not v.strip():
            raise _Bad(self.allowed, "it is empty")
        if len(v) > self.max_len:
            raise _Bad(self.allowed, f"longer than {self.max_len} characters")
        if _has_control(v):
            raise _Bad(self.allowed, "it contains a control character")
        used: set[str] = set()
        try:
            parts = list(string.Formatter().parse(v))
        except ValueError:
            raise _Bad(self.allowed, "an unmatched { or }") from None
        for _literal, name, spec, conversion in parts:
            if name is None:
                continue
            if name not in TEMPLATE_FIELDS or spec or conversion:
                shown = "{" + name + ("!" + conversion if conversion else "") + (
                    ":" + spec if spec else ""
                ) + "}"
                raise _Bad(self.allowed, f"{shown} is not a placeholder it may use")
            used.add(name)
        missing = [r for r in self.required if r not in used]
        if missing:
            raise _Bad(self.allowed, "{" + missing[0] + "} is missing")
        return v


class _Indicators(_Spec):
    def __init__(self, count: int = 4) -> None:
        self.count = count
        self.line = _Template(required=())
        self.allowed = (
            f"a list of exactly {count} non-empty lines (early morning to nightfall), "
            f"each using no placeholders other than {{companion}} and {{owner}}"
        )

    def check(self, v: Any) -> tuple[str, ...]:
        if not isinstance(v, (list, tuple)) or len(v) != self.count:
            raise _Bad(self.allowed)
        out = []
        for i, line in enumerate(v, 1):
            try:
                out.append(self.line.check(line))
            except _Bad as bad:
                raise _Bad(self.allowed, f"line {i}: {bad.why or 'not a line of text'}") from None
        return tuple(out)

    def parse(self, text: str) -> tuple[str, ...]:
        return self.check([line.strip() for line in text.strip().splitlines()])

    def to_toml(self, v: Any) -> Any:
        return list(v)


_ACTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


class _Bindings(_Spec):
    allowed = (
        "a table of action id = key, e.g. { pick_1 = \"1\", good_night = \"ctrl+n\" }; "
        "each key a non-empty string without spaces"
    )
    key_allowed = "a non-empty key string without spaces, e.g. \"ctrl+n\" or \"f2\""

    def check_key(self, key: Any) -> str:
        if not isinstance(key, str) or not key or len(key) > 64:
            raise _Bad(self.key_allowed)
        if _has_control(key) or any(c.isspace() for c in key):
            raise _Bad(self.key_allowed)
        return key

    def check_action(self, action: Any) -> str:
        if not isinstance(action, str) or not _ACTION_RE.fullmatch(action):
            raise _Bad("an action id made of letters, digits and _ (e.g. pick_1)")
        return action

    def check(self, v: Any) -> Mapping[str, str]:
        if not isinstance(v, Mapping):
            raise _Bad(self.allowed)
        out: dict[str, str] = {}
        for action, key in v.items():
            try:
                self.check_action(action)
                self.check_key(key)
            except _Bad as bad:
                raise _Bad(bad.allowed, subkey=str(action), subvalue=key) from None
            out[action] = key
        return MappingProxyType(dict(sorted(out.items())))

    def to_toml(self, v: Any) -> Any:
        return dict(v)


def _url_check(v: str, allowed: str) -> str:
    if v and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", v):
        raise _Bad(allowed)
    return v
