"""The torch boundary, checked the way a user meets it: every screen and every widget can be imported
(and so opened) without loading the network. Screens are found on disk, so a new screen is covered
without touching this test. The import-linter contracts in pyproject.toml check the same boundary
statically in `.ci/run`; this test checks what actually happens at run time, imports of imports included."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules(folder: str, package: str) -> list[str]:
    return [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(REPO / folder)])]


def test_every_screen_and_widget_imports_without_torch():
    screens = _modules("companion/screens", "companion.screens")
    widgets = _modules("widgets", "companion.widgets")
    assert len(screens) >= 10 and "companion.screens.night" in screens and "companion.screens.grow" in screens
    names = ["companion.app", "companion.messages", "companion.night.report", "companion.night.pending",
             "companion.history.pointer", *screens, *widgets]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'torch' not in sys.modules, f'importing {name} loaded torch'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
