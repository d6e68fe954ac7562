"""`companion` is the only top-level import package: the design card's `model/`, `widgets/` and `themes/`
folders install inside it (so a user's own `model.py`, or the unrelated `themes` package on the index,
can never shadow ours), and a source checkout resolves `companion.model` to the same folders."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"companion": "companion", "model": "companion.model", "widgets": "companion.widgets",
           "themes": "companion.themes"}


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_companion():
    found = set()
    for init in REPO.glob("*/**/__init__.py"):
        parts = init.parent.relative_to(REPO).parts
        if parts[0] in FOLDERS:
            found.add(".".join((FOLDERS[parts[0]], *parts[1:])))
    assert set(_setuptools()["packages"]) == found
    assert {name.split(".")[0] for name in _setuptools()["package-dir"]} == {"companion"}


def test_a_users_own_model_module_does_not_shadow_ours(tmp_path):
    (tmp_path / "model.py").write_text("raise SystemExit('the user model.py was imported')\n")
    (tmp_path / "themes.py").write_text("raise SystemExit('the user themes.py was imported')\n")
    code = "import companion.model.transformer, companion.themes, companion.app; print('ours')"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "ours"


def test_the_checkout_maps_companion_model_to_the_model_folder():
    import companion.model.transformer
    import companion.widgets

    assert Path(companion.model.transformer.__file__).parent == REPO / "model"
    assert Path(companion.widgets.__file__).parent == REPO / "widgets"
