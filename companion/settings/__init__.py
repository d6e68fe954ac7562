"""The companion's settings: one TOML file, ``companion.toml``, in the companion's home.

`specs` says how each kind of value is checked, `schema` declares every section and key (defaults, help)
and builds a valid `Settings`, `files` reads and writes the file. Everything public is importable from
`companion.settings`. On the UI's start-up path: nothing here imports torch or textual.
"""

from companion.settings.files import (describe_settings, iter_settings, load_settings, save_settings,
                                      settings_from_toml, settings_to_toml, update_settings_file, SettingInfo)
from companion.settings.schema import (DEFAULT_GOODNIGHT, DEFAULT_GREETING, DEFAULT_INDICATORS, DEFAULT_PRESET,
                                       DEFAULT_THEME, BackupSettings, BooksSettings,
                                       CompanionSettings, DaySettings, EngineSettings, LessonSettings, NightSettings,
                                       SamplingSection, Settings, SourceBudget, TeacherSettings, UISettings,
                                       render_template)
from companion.settings.specs import IMPORTED_PRESET, TEMPLATE_FIELDS, SettingsError

__all__ = [
    "SettingsError", "Settings", "CompanionSettings", "SamplingSection", "DaySettings", "EngineSettings", "SourceBudget",
    "LessonSettings", "NightSettings", "TeacherSettings", "BackupSettings", "BooksSettings", "UISettings",
    "SettingInfo", "DEFAULT_INDICATORS", "DEFAULT_GREETING", "DEFAULT_GOODNIGHT", "DEFAULT_PRESET",
    "DEFAULT_THEME", "IMPORTED_PRESET", "TEMPLATE_FIELDS", "load_settings", "save_settings",
    "update_settings_file", "settings_to_toml", "settings_from_toml", "describe_settings", "iter_settings",
    "render_template",
]
