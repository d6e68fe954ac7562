"""The settings people edit: one frozen dataclass per section of ``companion.toml`` (companion, sampling,
day, night, teacher, backup, books, ui), each key with its default, its spec and its help, and the walk
that builds and checks a whole tree of them. A `Settings` is immutable and always valid: build one with
`Settings.new`, `load_settings` or `Settings.with_value` (what the settings screen uses to change one
key from the text the owner typed). Unknown keys are refused with the nearest known key named."""


from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping



from companion.settings.specs import SettingsError, _Bad, _Bindings, _Bool, _Born, _Float, _Indicators, _Int, _Name, _OptInt, _Spec, _Template, _Text, _error, _known_preset, _preset_names, _show, _url_check


DEFAULT_PRESET = "seedling"
DEFAULT_THEME = "companion-dusk"

#: The four inner-voice lines that mark the passing of a day, one per quarter.
DEFAULT_INDICATORS: tuple[str, str, str, str] = (
    "It is early morning; the day is young.",
    "The morning has passed; it is the middle of the day.",
    "The afternoon is growing long.",
    "Night is falling; the day is nearly done.",
)
DEFAULT_GREETING = "Good morning, {companion}. {owner} is here."
DEFAULT_GOODNIGHT = "Good night, {companion}. The day is over."


# --------------------------------------------------------------------------- sections


def _setting(default: Any, spec: _Spec, help: str = "") -> Any:
    meta = {"spec": spec, "help": help}
    if isinstance(default, dict):
        frozen = MappingProxyType(dict(default))
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


def _required(spec: _Spec, help: str = "") -> Any:
    return field(metadata={"spec": spec, "help": help})


def _section(cls: type, help: str = "", **defaults: Any) -> Any:
    return field(
        default_factory=(lambda: cls(**defaults)) if defaults else cls,
        metadata={"section": cls, "help": help},
    )


@dataclass(frozen=True)
class CompanionSettings:
    """``[companion]``: who the companion is."""

    name: str = _required(_Name(), "the companion's name (also its folder's name)")
    owner: str = _required(
        _Text("the owner's name: 1 to 80 characters of text", nonempty=True, max_len=80),
        "the owner's name, as the companion calls them",
    )
    born: str = _setting("", _Born(), "when the companion was born (ISO 8601 date-time)")
    preset: str = _setting(
        DEFAULT_PRESET,
        _Text(
            "a model preset name: " + ", ".join(_preset_names()),
            nonempty=True,
            max_len=64,
            pattern=r"[A-Za-z0-9_.\-]+",
            extra=lambda v, allowed: _known_preset(v, allowed),
        ),
        "the model preset the companion was born with",
    )


@dataclass(frozen=True)
class SamplingSection:
    """``[sampling]``: how the companion's replies are sampled, as the owner writes it. The model's one
    `SamplingSettings` is made from it in one place (`companion.day.request.sampling_from_settings`)."""

    candidates: int = _setting(3, _Int(1, 8), "how many candidate replies each turn")
    temperature: float = _setting(0.8, _Float(0.05, 2.0), "sampling temperature")
    top_k: int = _setting(
        50, _Int(0, 1000, "a whole number from 0 (off) to 1,000"), "top-k cut-off (0 = off)"
    )
    top_p: float = _setting(0.95, _Float(0.05, 1.0), "nucleus (top-p) cut-off")
    repetition_penalty: float = _setting(
        1.1, _Float(1.0, 2.0), "penalty on tokens already in the reply (1.0 = none)"
    )
    max_reply_tokens: int = _setting(64, _Int(8, 512), "longest reply, in tokens")
    seed: int | None = _setting(
        None,
        _OptInt(
            0,
            2**63 - 1,
            "a whole number from 0 to 9,223,372,036,854,775,807, or nothing "
            "(absent) for fresh randomness",
        ),
        "fixed random seed (absent = fresh randomness every time)",
    )


@dataclass(frozen=True)
class DaySettings:
    """``[day]``: the shape of a day."""

    share: float = _setting(
        0.75,
        _Float(0.25, 0.95),
        "the day's share of the block size; the rest is room for the dream",
    )
    indicators: tuple[str, ...] = _setting(
        DEFAULT_INDICATORS,
        _Indicators(4),
        "four inner-voice lines marking the quarters of the day",
    )
    greeting: str = _setting(
        DEFAULT_GREETING, _Template(("companion",)), "the line that opens each day"
    )
    goodnight: str = _setting(
        DEFAULT_GOODNIGHT, _Template(("companion",)), "the line that closes each day"
    )
    reply_takes_highlighted: bool = _setting(
        True,
        _Bool(),
        "replying while candidates wait takes the highlighted one as the reply (an implicit pick)",
    )


_WEIGHT = _Float(0.0, 10.0)
_BUDGET = _Int(0, 10_000_000)


@dataclass(frozen=True)
class SourceBudget:
    """One night source: its loss weight and the most tokens drawn from it per night
    (weight 0 or tokens 0 turns the source off)."""

    weight: float = _setting(1.0, _WEIGHT, "loss weight of this source (0 = off)")
    tokens: int = _setting(
        20_000, _BUDGET, "most tokens drawn from this source per night (0 = off)"
    )


@dataclass(frozen=True)
class LessonSettings:
    """``[night.lessons]``: how a night teaches lessons (see ``companion.lessons``). Used only on a
    night with lessons due; otherwise the night runs as before."""

    learning_rate: float = _setting(1e-4, _Float(1e-7, 1e-2), "peak learning rate of a night with lessons")
    steps: int = _setting(70, _Int(1, 10_000), "optimizer steps of a night with lessons")
    consolidation_steps: float = _setting(
        0.5, _Float(0.05, 1.0, allowed="a number from 0.05 to 1.0"),
        "share of the steps on a night whose lessons were all said back before it",
    )
    finish_steps: float = _setting(
        0.3, _Float(0.0, 2.0, allowed="a number from 0.0 (off) to 2.0"),
        "share of `steps` a night may add (a consolidating night too) while a taught answer is not yet drawn whole in 99% of samples",
    )
    material_tokens: int = _setting(
        1024, _Int(0, 1_048_576), "tokens of the night's other material (day, dreams, replay...) per step"
    )
    margin: float = _setting(
        1.0, _Float(0.0, 10.0, allowed="a number from 0.0 (off) to 10.0"),
        "nats by which a lesson's own answer must beat the other lessons' answers (0 = off)",
    )
    ordinary_weight: float = _setting(
        0.3, _WEIGHT, "loss weight of ordinary exchanges trained beside the lessons (against intrusion)"
    )
    pull: float = _setting(
        0.01, _Float(0.0, 1.0, allowed="a number from 0.0 (off) to 1.0"),
        "share of the way back toward the anchor's weights after a step, on average: each step's in proportion to its learning rate (limits drift)",
    )
    freeze_embeddings: bool = _setting(
        True, _Bool(), "keep the (tied) token embeddings fixed on a night with lessons (limits drift)"
    )
    samples: int = _setting(10, _Int(1, 100), "replies sampled per phrasing to measure recall each night")
    most: int = _setting(64, _Int(1, 10_000), "most lessons taught and measured in one night")
    crosstalk_bound: float = _setting(
        0.05, _Float(0.0, 1.0), "share of replies that may say another lesson's answer before a night is rolled back"
    )
    intrusion_bound: float = _setting(
        0.05, _Float(0.0, 1.0), "share of replies to ordinary lines that may carry a lesson before a night is rolled back"
    )
    intrusion_lines: int = _setting(
        10, _Int(0, 100), "ordinary owner lines asked to measure intrusion (each `samples` times)"
    )


@dataclass(frozen=True)
class NightSettings:
    """``[night]``: how the companion learns at night."""

    learning_rate: float = _setting(3e-5, _Float(1e-7, 1e-2), "peak learning rate")
    threads: int = _setting(
        0,
        _Int(0, 256, "a whole number from 0 (auto) to 256"),
        "CPU threads the night trains on (0 = auto: the cores free before each step, none taken from a reply being written or another program)",
    )
    steps: int = _setting(
        0,
        _Int(0, 100_000, "a whole number from 0 (auto) to 100,000"),
        "optimizer steps per night (0 = auto, from the token budgets)",
    )
    cpu_bfloat16: bool = _setting(
        True,
        _Bool(),
        "train in bfloat16 on a CPU that has it natively (AVX-512 BF16 or AMX; measures stay float32)",
    )
    batch_tokens: int = _setting(
        4096, _Int(64, 1_048_576), "tokens per optimizer step"
    )
    warmup_fraction: float = _setting(0.1, _Float(0.0, 0.5), "share of steps spent warming up")
    grad_clip: float = _setting(
        1.0,
        _Float(0.0, 100.0, allowed="a number from 0.0 (off) to 100.0"),
        "gradient norm clip (0 = off)",
    )
    probe_bound: float = _setting(
        0.03,
        _Float(0.0, 1.0),
        "allowed relative worsening of probe perplexity before a night is rolled back",
    )
    drift_bound: float = _setting(
        0.05,
        _Float(0.0, 10.0),
        "allowed relative worsening of the probe (starter part) since the anchor before a night is rolled back",
    )
    anchor: int | None = _setting(
        None,
        _OptInt(1, 2**63 - 1, "a checkpoint id, or nothing (absent) for the latest birth, adoption, growth or import"),
        "checkpoint the total drift is measured from (absent = the latest birth, adoption, growth or import)",
    )
    spike_factor: float = _setting(
        4.0,
        _Float(1.0, 100.0, lo_open=True),
        "a loss above this many times its running mean is a spike (night rolled back)",
    )
    dream_temperature: float = _setting(0.9, _Float(0.05, 2.0), "temperature of dreams")
    dream_top_p: float = _setting(0.95, _Float(0.05, 1.0), "top-p of dreams")
    owner_weight: float = _setting(
        0.3, _WEIGHT, "loss weight on the owner's own words (the companion's are 1.0)"
    )
    dpo_beta: float = _setting(0.1, _Float(0.01, 1.0), "preference (DPO) strength")
    dreams_kept: int = _setting(
        5, _Int(0, 100), "how many of the latest dreams are trained on each night"
    )
    day: SourceBudget = _section(SourceBudget, "the day just lived", weight=1.0, tokens=20_000)
    dreams: SourceBudget = _section(SourceBudget, "the latest dreams", weight=0.5, tokens=10_000)
    preferences: SourceBudget = _section(
        SourceBudget, "the owner's choices and ratings", weight=1.0, tokens=10_000
    )
    books: SourceBudget = _section(SourceBudget, "queued books", weight=0.5, tokens=50_000)
    replay: SourceBudget = _section(
        SourceBudget, "replay of older days and the birth corpus", weight=1.0, tokens=50_000
    )
    lessons: LessonSettings = _section(LessonSettings, "lessons: what the owner taught on purpose")


@dataclass(frozen=True)
class TeacherSettings:
    """``[teacher]``: an optional outside model.  Off unless the owner configures it:
    the app opens no network connection otherwise."""

    enabled: bool = _setting(False, _Bool(), "ask an outside teacher model (needs url)")
    url: str = _setting(
        "",
        _Text(
            "an http:// or https:// address (or '' when the teacher is off)",
            max_len=2000,
            extra=_url_check,
        ),
        "the teacher's address",
    )
    model: str = _setting(
        "", _Text("a model name (text, at most 200 characters)"), "the teacher's model name"
    )
    api_key_env: str = _setting(
        "",
        _Text(
            "the NAME of an environment variable holding the key (letters, digits, _; "
            "never the key itself), or ''",
            max_len=100,
            pattern=r"[A-Za-z_][A-Za-z0-9_]*",
        ),
        "environment variable holding the API key",
    )
    timeout_s: int = _setting(30, _Int(1, 600), "seconds to wait for the teacher")


@dataclass(frozen=True)
class BackupSettings:
    """``[backup]``: copies of the companion kept elsewhere."""

    folder: str = _setting(
        "",
        _Text("a folder path (or '' for the companion's own backups folder)", max_len=4096),
        "where backups go ('' = backups/ in the companion's home; relative = from the home)",
    )
    keep: int = _setting(8, _Int(1, 1000), "how many backups to keep")
    every_days: int = _setting(
        7,
        _Int(0, 3650, "a whole number from 0 (only by hand) to 3,650"),
        "days between automatic backups (0 = only by hand)",
    )


@dataclass(frozen=True)
class BooksSettings:
    """``[books]``: texts the owner gives the companion to read."""

    max_bytes: int = _setting(
        5_000_000, _Int(1_000, 1_000_000_000), "largest book accepted, in bytes"
    )


@dataclass(frozen=True)
class EngineSettings:
    """``[engine]``: how the day's model runs (see companion.compute)."""

    threads: int = _setting(
        0,
        _Int(0, 256, "a whole number from 0 (auto) to 256"),
        "CPU threads for generation (0 = auto: 1 on up to 2 cores; fewer while a night trains)",
    )
    int8: bool = _setting(
        False, _Bool(), "generate with int8 weights on the CPU (faster; logits drift a little, see README)"
    )
    backend: str = _setting(
        "torch",
        _Text("torch or llama.cpp", nonempty=True, max_len=16, pattern=r"torch|llama\.cpp"),
        "what generates: torch (our own loop) or llama.cpp (the llamacpp extra; GGUF of the current weights)",
    )


@dataclass(frozen=True)
class UISettings:
    """``[ui]``: the look and the keys."""

    theme: str = _setting(
        DEFAULT_THEME,
        _Text("a theme name (non-empty text)", nonempty=True, max_len=100),
        "the theme (checked by the app against its registered themes)",
    )
    bindings: Mapping[str, str] = _setting(
        {}, _Bindings(), "key overrides: action id = key (unknown actions are ignored)"
    )


_SECTION_ORDER = ("companion", "sampling", "day", "night", "engine", "teacher", "backup", "books", "ui")


@dataclass(frozen=True)
class Settings:
    """All of a companion's settings.  Immutable and always valid."""

    companion: CompanionSettings = field(metadata={"section": CompanionSettings})
    sampling: SamplingSection = _section(SamplingSection)
    day: DaySettings = _section(DaySettings)
    night: NightSettings = _section(NightSettings)
    engine: EngineSettings = _section(EngineSettings)
    teacher: TeacherSettings = _section(TeacherSettings)
    backup: BackupSettings = _section(BackupSettings)
    books: BooksSettings = _section(BooksSettings)
    ui: UISettings = _section(UISettings)

    def __post_init__(self) -> None:
        _validate_tree(self, "", None)

    # -- building ---------------------------------------------------------------------

    @classmethod
    def new(
        cls,
        name: str,
        owner: str,
        *,
        preset: str = DEFAULT_PRESET,
        born: str | _dt.datetime | None = None,
    ) -> "Settings":
        """Default settings for a newborn companion (``born`` defaults to now)."""
        if born is None:
            born = _dt.datetime.now().astimezone().replace(microsecond=0)
        if isinstance(born, _dt.datetime):
            born = born.isoformat()
        table = {"companion": {"name": name, "owner": owner, "born": born, "preset": preset}}
        return _build(table, None)

    # -- reading ------------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value at a dotted key, e.g. ``get("sampling.temperature")``."""
        obj: Any = self
        parts = key.split(".")
        for part in parts:
            if isinstance(obj, Mapping) and part in obj:
                obj = obj[part]
            elif isinstance(obj, tuple) and part.isdigit() and 1 <= int(part) <= len(obj):
                obj = obj[int(part) - 1]
            elif dataclasses.is_dataclass(obj) and part in _field_names(type(obj)):
                obj = getattr(obj, part)
            else:
                raise SettingsError(_unknown_key_message(key, None), key=key)
        return obj

    def to_dict(self) -> dict[str, Any]:
        """A plain TOML-ready table (the optional ``seed`` is left out when unset)."""
        return _to_table(self)

    # -- changing -----------------------------------------------------------------------

    def with_value(self, key: str, value: Any) -> "Settings":
        """A copy with one dotted key changed, validated.

        ``value`` may be the text typed on the settings screen (``"0.7"``, ``"true"``,
        four lines for ``day.indicators``) or a Python value of the right type.  Also
        accepted: ``day.indicators.N`` (N = 1..4) for one line, ``ui.bindings.ACTION``
        for one key (``None`` removes the override), ``sampling.seed`` with ``None`` or
        ``""`` to go back to fresh randomness.  A refused value raises
        :class:`SettingsError` and changes nothing.
        """
        parts = key.split(".")
        head, rest = parts[:-1], parts[-1]
        # Special paths into containers.
        if parts[:2] == ["ui", "bindings"] and len(parts) == 3:
            spec = _Bindings()
            action = parts[2]
            try:
                spec.check_action(action)
                new = dict(self.ui.bindings)
                if value is None:
                    new.pop(action, None)
                else:
                    new[action] = spec.check_key(value.strip() if isinstance(value, str) else value)
            except _Bad as bad:
                raise _error(key, value, bad, None) from None
            return self._replaced(["ui", "bindings"], MappingProxyType(dict(sorted(new.items()))))
        if parts[:2] == ["day", "indicators"] and len(parts) == 3:
            spec_line = _Template(required=())
            if not (parts[2].isdigit() and 1 <= int(parts[2]) <= len(self.day.indicators)):
                raise SettingsError(
                    f"unknown setting {key}; the lines of day.indicators are "
                    f"day.indicators.1 to day.indicators.{len(self.day.indicators)}",
                    key=key,
                    value=value,
                )
            try:
                line = spec_line.check(value.strip() if isinstance(value, str) else value)
            except _Bad as bad:
                raise _error(key, value, bad, None) from None
            lines = list(self.day.indicators)
            lines[int(parts[2]) - 1] = line
            return self._replaced(["day", "indicators"], tuple(lines))

        # An ordinary key: walk the section classes to its spec.
        cls: type = Settings
        for part in head:
            f = _fields(cls).get(part)
            if f is None or "section" not in f.metadata:
                raise SettingsError(_unknown_key_message(key, None, value), key=key, value=value)
            cls = f.metadata["section"]
        f = _fields(cls).get(rest)
        if f is None:
            raise SettingsError(_unknown_key_message(key, None, value), key=key, value=value)
        if "section" in f.metadata:
            raise SettingsError(
                f"{key} is a table, not a single setting; change its keys one at a time "
                f"({', '.join(key + '.' + n for n in _field_names(f.metadata['section']))})",
                key=key,
                value=value,
            )
        spec: _Spec = f.metadata["spec"]
        try:
            if isinstance(value, str) and not isinstance(
                spec, (_Text, _Name, _Born, _Template)
            ):
                new_value = spec.parse(value)
            else:
                new_value = spec.check(value)
        except _Bad as bad:
            raise _error(key, value, bad, None) from None
        return self._replaced(parts, new_value, shown_value=value)

    def _replaced(self, parts: list[str], new_value: Any, shown_value: Any = None) -> "Settings":
        def rebuild(obj: Any, i: int) -> Any:
            if i == len(parts) - 1:
                return dataclasses.replace(obj, **{parts[i]: new_value})
            return dataclasses.replace(obj, **{parts[i]: rebuild(getattr(obj, parts[i]), i + 1)})

        try:
            return rebuild(self, 0)
        except SettingsError as e:  # a cross-key rule (e.g. teacher.enabled needs a url)
            raise SettingsError(
                str(e), key=".".join(parts), value=shown_value, allowed=e.allowed
            ) from None

    # -- rendering ----------------------------------------------------------------------

    def greeting_line(self) -> str:
        """The good-morning line, with the names filled in."""
        return render_template(self.day.greeting, self.companion.name, self.companion.owner)

    def goodnight_line(self) -> str:
        """The good-night line, with the names filled in."""
        return render_template(self.day.goodnight, self.companion.name, self.companion.owner)

    def indicator_lines(self) -> tuple[str, ...]:
        """The four temporal indicators, with the names filled in."""
        return tuple(
            render_template(t, self.companion.name, self.companion.owner)
            for t in self.day.indicators
        )


def render_template(template: str, companion: str, owner: str) -> str:
    """Fill ``{companion}`` and ``{owner}`` into a (validated) day template."""
    return template.format(companion=companion, owner=owner)


# --------------------------------------------------------------------------- walking


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_key_message(key: str, path: Path | None, value: Any = ...) -> str:
    where = f"{path}: " if path is not None else ""
    parts = key.split(".")
    cls: type = Settings
    known_prefix: list[str] = []
    for part in parts[:-1]:
        f = _fields(cls).get(part)
        if f is None or "section" not in f.metadata:
            break
        cls = f.metadata["section"]
        known_prefix.append(part)
    names = _field_names(cls)
    section = ".".join(known_prefix)
    what = "known keys in [" + section + "]" if section else "known sections"
    miss = parts[len(known_prefix)]
    close = difflib.get_close_matches(miss, names, n=1)
    hint = f"; did you mean {'.'.join(known_prefix + close)}?" if close else ""
    shown = f" = {_show(value)}" if value is not ... else ""
    kind = "section" if not known_prefix and len(parts) == 1 else "key"
    return f"{where}unknown {kind} {key}{shown}{hint} ({what}: {', '.join(names)})"


def _build(table: Mapping[str, Any], path: Path | None) -> Settings:
    """A validated :class:`Settings` from a TOML table; errors name ``path``."""
    values = _from_table(Settings, table, "", path)
    try:
        return Settings(**values)
    except SettingsError as e:
        if path is None:
            raise
        raise SettingsError(
            f"{path}: {e}", path=path, key=e.key, value=e.value, allowed=e.allowed
        ) from None


def _from_table(cls: type, table: Any, prefix: str, path: Path | None) -> dict[str, Any]:
    fields = _fields(cls)
    for key, value in table.items():
        if key not in fields:
            raise SettingsError(
                _unknown_key_message(prefix + key, path, value),
                path=path,
                key=prefix + key,
                value=value,
            )
    out: dict[str, Any] = {}
    for name, f in fields.items():
        dotted = prefix + name
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                where = f"{path}: " if path is not None else ""
                spec = f.metadata.get("spec")
                allowed = spec.allowed if spec is not None else f"a table [{dotted}]"
                raise SettingsError(
                    f"{where}missing required key {dotted}; expected {allowed}",
                    path=path,
                    key=dotted,
                    allowed=allowed,
                )
            continue
        value = table[name]
        section = f.metadata.get("section")
        if section is not None:
            if not isinstance(value, Mapping):
                raise _error(dotted, value, _Bad(f"a table [{dotted}]"), path)
            out[name] = section(**_from_table(section, value, dotted + ".", path))
        else:
            try:
                out[name] = f.metadata["spec"].check(value)
            except _Bad as bad:
                raise _error(dotted, value, bad, path) from None
    return out


def _validate_tree(obj: Any, prefix: str, path: Path | None) -> None:
    for f in dataclasses.fields(obj):
        dotted = prefix + f.name
        value = getattr(obj, f.name)
        section = f.metadata.get("section")
        if section is not None:
            if not isinstance(value, section):
                raise _error(dotted, value, _Bad(f"a {section.__name__} ([{dotted}])"), path)
            _validate_tree(value, dotted + ".", path)
            continue
        try:
            f.metadata["spec"].check(value)
        except _Bad as bad:
            raise _error(dotted, value, bad, path) from None
    if isinstance(obj, Settings):
        _check_cross(obj, path)


def _check_cross(s: Settings, path: Path | None) -> None:
    """Rules that tie keys together."""
    if s.teacher.enabled and not s.teacher.url:
        where = f"{path}: " if path is not None else ""
        allowed = "teacher.enabled = true only with teacher.url set to an http(s) address"
        raise SettingsError(
            f"{where}teacher.enabled = true is not allowed while teacher.url is empty; "
            f"expected {allowed}",
            path=path,
            key="teacher.enabled",
            value=True,
            allowed=allowed,
        )


def _to_table(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = _field_names(type(obj))
    if isinstance(obj, Settings):
        names = list(_SECTION_ORDER)
    for name in names:
        f = _fields(type(obj))[name]
        value = getattr(obj, name)
        if "section" in f.metadata:
            out[name] = _to_table(value)
        elif value is None:
            continue  # TOML has no null: an unset optional key is simply absent
        else:
            out[name] = f.metadata["spec"].to_toml(value)
    return out
