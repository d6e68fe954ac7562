"""companion.toml: defaults, round-trips, validation messages, one-key updates."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
import tomli_w

from companion.settings import (
    DEFAULT_GOODNIGHT,
    DEFAULT_GREETING,
    DEFAULT_INDICATORS,
    Settings,
    SettingsError,
    describe_settings,
    iter_settings,
    load_settings,
    save_settings,
    settings_to_toml,
    update_settings_file,
)

BORN = "2024-05-01T08:30:00+02:00"


def new() -> Settings:
    return Settings.new("Ash", "Mia", born=BORN)


def write(path: Path, table: dict) -> Path:
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def minimal() -> dict:
    return {"companion": {"name": "Ash", "owner": "Mia"}}


# --------------------------------------------------------------------------- defaults


def test_defaults():
    s = new()
    assert s.companion.name == "Ash" and s.companion.owner == "Mia"
    assert s.companion.born == BORN and s.companion.preset == "seedling"
    assert s.sampling.candidates == 3
    assert s.sampling.temperature == 0.8
    assert s.sampling.top_k == 50
    assert s.sampling.top_p == 0.95
    assert s.sampling.repetition_penalty == 1.1
    assert s.sampling.max_reply_tokens == 64
    assert s.sampling.seed is None
    assert s.day.share == 0.75
    assert s.day.indicators == DEFAULT_INDICATORS and len(s.day.indicators) == 4
    assert s.day.greeting == DEFAULT_GREETING and s.day.goodnight == DEFAULT_GOODNIGHT
    assert s.night.learning_rate == 3e-5 and s.night.steps == 0
    assert s.night.probe_bound == 0.03 and s.night.spike_factor == 4.0
    assert s.night.dpo_beta == 0.1 and s.night.dreams_kept == 5 and s.night.owner_weight == 0.3
    assert s.night.day.weight == 1.0 and s.night.replay.tokens > 0
    assert s.teacher.enabled is False and s.teacher.url == "" and s.teacher.timeout_s == 30
    assert s.backup.folder == "" and s.backup.keep == 8 and s.backup.every_days == 7
    assert s.books.max_bytes == 5_000_000
    assert s.ui.theme == "companion-dusk" and dict(s.ui.bindings) == {}


def test_new_defaults_born_to_now():
    s = Settings.new("Ash", "Mia")
    assert s.companion.born  # an ISO date-time, validated by construction
    assert "T" in s.companion.born


def test_rendered_lines_name_the_companion():
    s = new()
    assert s.greeting_line() == "Good morning, Ash. Mia is here."
    assert s.goodnight_line() == "Good night, Ash. The day is over."
    assert s.indicator_lines() == DEFAULT_INDICATORS


# --------------------------------------------------------------------------- round trip


def test_defaults_round_trip_byte_exact(tmp_path):
    path = tmp_path / "companion.toml"
    s = new()
    save_settings(path, s)
    first = path.read_bytes()
    loaded = load_settings(path)
    assert loaded == s
    save_settings(path, loaded)
    assert path.read_bytes() == first
    assert first.decode() == settings_to_toml(s)
    assert [p.name for p in tmp_path.iterdir()] == ["companion.toml"]  # no temp files left


def test_changed_values_round_trip(tmp_path):
    path = tmp_path / "companion.toml"
    s = (
        new()
        .with_value("sampling.seed", "1234")
        .with_value("sampling.temperature", "0.7")
        .with_value("ui.bindings.good_night", "ctrl+n")
        .with_value("ui.bindings.pick_1", "1")
        .with_value("day.indicators.2", "Noon, {companion}.")
        .with_value("night.books.weight", 0.25)
        .with_value("teacher.url", "https://example.org/v1")
        .with_value("teacher.enabled", "yes")
    )
    save_settings(path, s)
    loaded = load_settings(path)
    assert loaded == s
    assert loaded.sampling.seed == 1234
    assert dict(loaded.ui.bindings) == {"good_night": "ctrl+n", "pick_1": "1"}
    assert loaded.indicator_lines()[1] == "Noon, Ash."
    save_settings(path, loaded)
    assert load_settings(path) == s


def test_unset_seed_is_absent_from_file(tmp_path):
    path = tmp_path / "companion.toml"
    save_settings(path, new())
    assert "seed" not in tomllib.loads(path.read_text())["sampling"]


def test_old_file_with_missing_keys_takes_defaults(tmp_path):
    path = write(tmp_path / "companion.toml", {**minimal(), "sampling": {"candidates": 5}})
    s = load_settings(path)
    assert s.sampling.candidates == 5
    assert s.sampling.temperature == 0.8
    assert s.night == new().night
    assert s.companion.born == ""  # unknown


def test_integer_where_a_number_is_expected_is_accepted(tmp_path):
    path = write(tmp_path / "companion.toml", {**minimal(), "sampling": {"temperature": 1}})
    s = load_settings(path)
    assert s.sampling.temperature == 1.0 and isinstance(s.sampling.temperature, float)


def test_unquoted_toml_datetime_for_born(tmp_path):
    path = tmp_path / "companion.toml"
    path.write_text('[companion]\nname = "Ash"\nowner = "Mia"\nborn = 2024-05-01T08:30:00\n')
    assert load_settings(path).companion.born == "2024-05-01T08:30:00"


def test_settings_are_immutable():
    s = new()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sampling.temperature = 1.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.ui.bindings["pick_1"] = "x"  # type: ignore[index]


# --------------------------------------------------------------------------- refusals


BAD_VALUES = [
    # (section table, dotted key, shown value, fragment of what is allowed)
    ({"sampling": {"temperature": 5.0}}, "sampling.temperature", "5.0", "a number from 0.05 to 2.0"),
    ({"sampling": {"temperature": "hot"}}, "sampling.temperature", "'hot'", "a number from 0.05 to 2.0"),
    ({"sampling": {"candidates": 0}}, "sampling.candidates", "0", "a whole number from 1 to 8"),
    ({"sampling": {"candidates": 2.5}}, "sampling.candidates", "2.5", "a whole number from 1 to 8"),
    ({"sampling": {"top_k": True}}, "sampling.top_k", "true", "from 0 (off) to 1,000"),
    ({"sampling": {"seed": -1}}, "sampling.seed", "-1", "for fresh randomness"),
    ({"day": {"share": 0.1}}, "day.share", "0.1", "a number from 0.25 to 0.95"),
    ({"day": {"indicators": ["a", "b", "c"]}}, "day.indicators", "['a', 'b', 'c']", "exactly 4"),
    ({"day": {"indicators": ["a", "", "c", "d"]}}, "day.indicators", "['a', '', 'c', 'd']", "non-empty"),
    ({"day": {"greeting": "Good morning."}}, "day.greeting", "'Good morning.'", "containing {companion}"),
    ({"night": {"day": {"weight": 11.0}}}, "night.day.weight", "11.0", "a number from 0.0 to 10.0"),
    ({"night": {"replay": {"tokens": 10_000_001}}}, "night.replay.tokens", "10000001", "10,000,000"),
    ({"night": {"spike_factor": 1.0}}, "night.spike_factor", "1.0", "greater than 1.0"),
    ({"night": {"learning_rate": 0.5}}, "night.learning_rate", "0.5", "a number from 1e-07 to 0.01"),
    ({"teacher": {"url": "ftp://example.org"}}, "teacher.url", "'ftp://example.org'", "http"),
    ({"teacher": {"api_key_env": "sk-live-123"}}, "teacher.api_key_env", "'sk-live-123'", "never the key itself"),
    ({"teacher": {"enabled": "yes"}}, "teacher.enabled", "'yes'", "true or false"),
    ({"backup": {"keep": 0}}, "backup.keep", "0", "a whole number from 1 to 1,000"),
    ({"ui": {"theme": ""}}, "ui.theme", "''", "non-empty"),
    ({"ui": {"bindings": {"pick_1": ""}}}, "ui.bindings.pick_1", "''", "non-empty"),
    ({"sampling": 3}, "sampling", "3", "a table [sampling]"),
]


@pytest.mark.parametrize("table,key,shown,allowed", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_invalid_value_in_file_is_refused_naming_file_key_value_and_allowed(
    tmp_path, table, key, shown, allowed
):
    path = write(tmp_path / "companion.toml", {**minimal(), **table})
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"{key} = {shown}" in msg
    assert allowed in msg
    assert info.value.key == key
    assert info.value.path == path


@pytest.mark.parametrize(
    "name,key", [("a/b", "companion.name"), ("\x1b[31m", "companion.name"), ("", "companion.name")]
)
def test_bad_companion_name_in_file(tmp_path, name, key):
    path = write(tmp_path / "companion.toml", {"companion": {"name": name, "owner": "Mia"}})
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert f"{key} = {name!r}" in str(info.value)
    assert "\x1b" not in str(info.value)  # control characters are shown escaped


def test_bad_born_in_file(tmp_path):
    table = {"companion": {"name": "Ash", "owner": "Mia", "born": "yesterday"}}
    path = write(tmp_path / "companion.toml", table)
    with pytest.raises(SettingsError, match=r"companion\.born = 'yesterday'.*ISO 8601"):
        load_settings(path)


@pytest.mark.parametrize(
    "table,key",
    [
        ({"sampling": {"temprature": 0.7}}, "sampling.temprature"),
        ({"samplng": {"temperature": 0.7}}, "samplng"),
        ({"night": {"day": {"wieght": 1.0}}}, "night.day.wieght"),
        ({"ui": {"colour": "red"}}, "ui.colour"),
    ],
)
def test_unknown_key_or_section_is_refused(tmp_path, table, key):
    path = write(tmp_path / "companion.toml", {**minimal(), **table})
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    msg = str(info.value)
    assert str(path) in msg and "unknown" in msg and key in msg
    assert info.value.key == key


def test_unknown_key_suggests_the_close_one(tmp_path):
    path = write(tmp_path / "companion.toml", {**minimal(), "sampling": {"temprature": 0.7}})
    with pytest.raises(SettingsError, match=r"did you mean sampling\.temperature\?"):
        load_settings(path)


def test_missing_required_key_is_refused(tmp_path):
    path = write(tmp_path / "companion.toml", {"companion": {"name": "Ash"}})
    with pytest.raises(SettingsError, match=r"missing required key companion\.owner") as info:
        load_settings(path)
    assert str(path) in str(info.value)
    path = write(tmp_path / "companion.toml", {"sampling": {}})
    with pytest.raises(SettingsError, match=r"missing required key companion\b"):
        load_settings(path)


def test_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "companion.toml"
    path.write_text('[companion]\nname = "Ash\nowner = "Mia"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "not valid TOML" in str(info.value)
    assert "line 2" in str(info.value)


def test_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "companion.toml"
    path.write_bytes(b'[companion]\nname = "\xff"\n')
    with pytest.raises(SettingsError, match="not UTF-8") as info:
        load_settings(path)
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope" / "companion.toml"
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "template,why",
    [
        ("Good morning, {companion}. {bogus}", "{bogus}"),
        ("Good morning, {owner}.", "{companion} is missing"),
        ("Good morning, {companion!r}.", "{companion!r}"),
        ("Good morning, {companion:>10}.", "{companion:>10}"),
        ("Good morning, {companion", "unmatched"),
        ("Good morning, {companion}. {}", "{}"),
    ],
)
def test_bad_templates_are_refused_naming_the_key(template, why):
    s = new()
    for key in ("day.greeting", "day.goodnight"):
        with pytest.raises(SettingsError) as info:
            s.with_value(key, template)
        msg = str(info.value)
        assert f"{key} = {template!r}" in msg
        assert why in msg
        assert "{companion} and {owner}" in msg


def test_template_with_literal_braces_and_owner():
    s = new().with_value("day.greeting", "{{Dawn}} {owner} greets {companion}.")
    assert s.greeting_line() == "{Dawn} Mia greets Ash."


def test_indicator_with_bogus_placeholder_is_refused():
    with pytest.raises(SettingsError, match=r"day\.indicators\.3 = 'Late, \{when\}\.'"):
        new().with_value("day.indicators.3", "Late, {when}.")


# --------------------------------------------------------------------------- one-key updates


@pytest.mark.parametrize(
    "key,text,expected",
    [
        ("sampling.temperature", "0.7", 0.7),
        ("sampling.candidates", "5", 5),
        ("sampling.top_k", "0", 0),
        ("sampling.seed", "42", 42),
        ("sampling.seed", "", None),
        ("night.steps", "1,000", 1000),
        ("night.day.tokens", "5000", 5000),
        ("teacher.timeout_s", " 12 ", 12),
        ("backup.folder", "/mnt/usb/companion", "/mnt/usb/companion"),
        ("ui.theme", "companion-dawn", "companion-dawn"),
        ("ui.bindings.pick_1", "f1", "f1"),
    ],
)
def test_with_value_from_text(key, text, expected):
    s = new()
    changed = s.with_value(key, text)
    assert changed.get(key) == expected
    assert s == new()  # the original is untouched


def test_with_value_four_lines_for_indicators():
    lines = "Dawn.\nNoon.\nDusk.\nNight."
    s = new().with_value("day.indicators", lines)
    assert s.day.indicators == ("Dawn.", "Noon.", "Dusk.", "Night.")


def test_with_value_removes_a_binding_with_none():
    s = new().with_value("ui.bindings.pick_1", "1")
    assert new().with_value("ui.bindings.pick_1", None) == new()
    assert s.with_value("ui.bindings.pick_1", None).ui.bindings == {}


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("sampling.temperature", "5", "a number from 0.05 to 2.0"),
        ("sampling.temperature", "nan", "a number from 0.05 to 2.0"),
        ("sampling.temperature", "warm", "a number from 0.05 to 2.0"),
        ("sampling.candidates", "2.5", "a whole number from 1 to 8"),
        ("teacher.enabled", "maybe", "true or false"),
        ("teacher.enabled", "true", "teacher.url"),
        ("day.indicators", "only one line", "exactly 4"),
        ("ui.bindings.pick_1", "ctrl n", "without spaces"),
        ("ui.bindings.pick 1", "x", "action id"),
        ("night", "3", "one at a time"),
    ],
)
def test_with_value_refused_names_key_and_value(key, value, allowed):
    s = new()
    with pytest.raises(SettingsError) as info:
        s.with_value(key, value)
    msg = str(info.value)
    assert key in msg and allowed in msg
    assert s == new()


def test_with_value_unknown_key():
    with pytest.raises(SettingsError, match=r"unknown key sampling\.tempreature = '0\.7'"):
        new().with_value("sampling.tempreature", "0.7")


def test_update_file_valid_and_refused(tmp_path):
    path = tmp_path / "companion.toml"
    save_settings(path, new())
    s = update_settings_file(path, "sampling.temperature", "0.7")
    assert s.sampling.temperature == 0.7
    assert load_settings(path) == s
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    for key, value in [
        ("sampling.temperature", "7"),
        ("day.greeting", "Hello {bogus}"),
        ("sampling.temprature", "0.5"),
        ("teacher.enabled", "true"),
    ]:
        with pytest.raises(SettingsError) as info:
            update_settings_file(path, key, value)
        assert str(path) in str(info.value) and key in str(info.value)
        assert path.read_bytes() == before
        assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companion.toml"]


def test_save_refuses_to_replace_when_exclusive(tmp_path):
    path = tmp_path / "companion.toml"
    save_settings(path, new(), exclusive=True)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        save_settings(path, new().with_value("sampling.candidates", 4), exclusive=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companion.toml"]


def test_invalid_settings_cannot_be_built():
    with pytest.raises(SettingsError, match=r"sampling\.candidates = 99"):
        dataclasses.replace(new(), sampling=dataclasses.replace(new().sampling, candidates=99))


# --------------------------------------------------------------------------- describing


def test_describe_lists_every_key_with_its_default():
    infos = {i.key: i for i in describe_settings()}
    s = new()
    assert infos["sampling.temperature"].default == 0.8
    assert "0.05" in infos["sampling.temperature"].allowed
    assert infos["night.replay.weight"].help
    assert infos["companion.name"].default is None
    assert [k for k, _ in iter_settings(s)] == list(infos)
    for key, value in iter_settings(s):
        assert s.get(key) == value
        if key not in ("companion.name", "companion.owner", "companion.born"):
            assert value == infos[key].default, key
