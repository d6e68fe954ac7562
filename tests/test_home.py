"""Homes of companions: roots, names, create/open/list, writability, and the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from companion.home import (
    Home,
    HomeError,
    LockedError,
    config_dir,
    list_companions,
    resolve_root,
    themes_dir,
    validate_name,
)
from companion.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="flock semantics are tested on POSIX")


def run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def spawn_py(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


TRY_LOCK = """
import sys
from companion.home import Home, LockedError
home = Home.open(sys.argv[1])
try:
    with home.lock() as lock:
        print("locked", lock.recovered_stale, flush=True)
except LockedError as e:
    print("refused:", e, flush=True)
    sys.exit(3)
"""

LOCK_AND_HOLD = """
import sys, time
from companion.home import Home
home = Home.open(sys.argv[1])
lock = home.lock()
print("ready", flush=True)
time.sleep(120)
"""

LOCK_AND_EXIT = """
import os, sys
from companion.home import Home
home = Home.open(sys.argv[1])
lock = home.lock()
print("locked", flush=True)
os._exit(0)
"""


# --------------------------------------------------------------------------- start-up path


def test_importing_home_and_settings_pulls_in_neither_torch_nor_textual():
    out = run_py(
        "import sys, companion.home, companion.settings; "
        "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- roots


def test_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_HOME", raising=False)
    assert resolve_root() == Path(platformdirs.user_data_dir("companion")).absolute()
    monkeypatch.setenv("COMPANION_HOME", str(tmp_path / "env"))
    assert resolve_root() == tmp_path / "env"
    assert resolve_root(None) == tmp_path / "env"
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_root(str(tmp_path / "explicit")) == tmp_path / "explicit"
    monkeypatch.setenv("COMPANION_HOME", "")
    assert resolve_root() == Path(platformdirs.user_data_dir("companion")).absolute()


def test_root_is_absolute_and_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert resolve_root("~/companions") == tmp_path / "companions"
    assert resolve_root("rel") == tmp_path / "rel"


def test_resolve_root_creates_nothing(tmp_path):
    resolve_root(tmp_path / "not-yet")
    assert not (tmp_path / "not-yet").exists()


def test_config_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_CONFIG", raising=False)
    assert config_dir() == Path(platformdirs.user_config_dir("companion")).absolute()
    monkeypatch.setenv("COMPANION_CONFIG", str(tmp_path / "cfg"))
    assert config_dir() == tmp_path / "cfg"
    assert themes_dir() == tmp_path / "cfg" / "themes"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name,why",
    [
        ("", "empty"),
        ("a/b", "path separator"),
        ("/", "path separator"),
        ("a\\b", "path separator"),
        ("..", ".."),
        ("a..b", ".."),
        (".hidden", "dot"),
        ("\x1b[31m", "control"),
        ("tab\there", "control"),
        ("zero\u200bwidth", "invisible"),
        ("x" * 41, "41 characters"),
        (" Ash", "space"),
    ],
)
def test_bad_names_are_refused(tmp_path, name, why):
    with pytest.raises(HomeError) as info:
        validate_name(name)
    msg = str(info.value)
    assert repr(name) in msg and why in msg
    assert "\x1b" not in msg
    with pytest.raises(HomeError):
        Home.create(tmp_path, name)
    assert list(tmp_path.iterdir()) == []  # nothing was made


@pytest.mark.parametrize("name", ["Ash", "ash-2", "Élodie", "小明", "Mr. Wren", "x" * 40])
def test_good_names(name):
    assert validate_name(name) == name


def test_validate_name_says_what(tmp_path):
    with pytest.raises(HomeError, match=r"invalid owner name ''"):
        validate_name("", what="owner name")


# --------------------------------------------------------------------------- create / open / list


def test_create_open_list(tmp_path):
    root = tmp_path / "companions"
    assert list_companions(root) == []
    home = Home.create(root, "Ash", owner="Mia")
    assert home.path == root / "Ash" and home.name == "Ash" and home.root == root
    for d in (home.checkpoints_dir, home.books_dir, home.backups_dir):
        assert d.is_dir()
    assert home.settings_path == root / "Ash" / "companion.toml"
    assert home.tokenizer_path == root / "Ash" / "tokenizer.json"
    assert home.store_path == root / "Ash" / "companion.db"
    assert home.lock_path == root / "Ash" / "lock"
    s = load_settings(home.settings_path)
    assert s.companion.name == "Ash" and s.companion.owner == "Mia"
    assert home.load_settings() == s
    assert list_companions(root) == ["Ash"]
    assert Home.open(root) == home
    assert Home.open(root, "Ash") == home
    assert Home.open(home.path) == home  # --home pointing at the companion itself
    assert Home.open(home.path, "Ash") == home
    Home.create(root, "Bea", owner="Mia")
    (root / "not-a-companion").mkdir()
    (root / "stray.txt").write_text("x")
    assert list_companions(root) == ["Ash", "Bea"]
    assert list_companions(home.path) == ["Ash"]


def test_create_with_given_settings(tmp_path):
    from companion.settings import Settings

    s = Settings.new("Ash", "Mia", born="2024-05-01T08:30:00").with_value("sampling.candidates", 5)
    home = Home.create(tmp_path, "Ash", settings=s)
    assert home.load_settings() == s
    with pytest.raises(HomeError, match="'Ash', not 'Bea'"):
        Home.create(tmp_path, "Bea", settings=s)


def test_open_errors(tmp_path):
    with pytest.raises(HomeError, match="does not exist"):
        Home.open(tmp_path / "missing")
    with pytest.raises(HomeError, match="no companion lives in"):
        Home.open(tmp_path)
    Home.create(tmp_path, "Ash", owner="Mia")
    with pytest.raises(HomeError, match=r"no companion named Bea in .*companions there: Ash"):
        Home.open(tmp_path, "Bea")
    Home.create(tmp_path, "Bea", owner="Mia")
    with pytest.raises(HomeError, match=r"several companions live in .*: Ash, Bea"):
        Home.open(tmp_path)
    with pytest.raises(HomeError, match=r"home of the companion 'Ash', not 'Bea'"):
        Home.open(tmp_path / "Ash", "Bea")
    with pytest.raises(HomeError, match="invalid companion name"):
        Home.open(tmp_path, "../Ash")


def test_existing_name_is_refused_and_left_untouched(tmp_path):
    home = Home.create(tmp_path, "Ash", owner="Mia")
    (home.checkpoints_dir / "weights.safetensors").write_bytes(b"years of teaching")
    settings_bytes = home.settings_path.read_bytes()
    mtime = home.settings_path.stat().st_mtime_ns
    with pytest.raises(HomeError) as info:
        Home.create(tmp_path, "Ash", owner="Someone else")
    assert str(info.value) == (
        f"a companion named Ash already exists in {tmp_path}; never overwriting"
    )
    assert home.settings_path.read_bytes() == settings_bytes
    assert home.settings_path.stat().st_mtime_ns == mtime
    assert (home.checkpoints_dir / "weights.safetensors").read_bytes() == b"years of teaching"
    assert sorted(p.name for p in home.path.iterdir()) == [
        "backups",
        "books",
        "checkpoints",
        "companion.toml",
    ]


def test_non_empty_folder_in_the_way_is_refused(tmp_path):
    (tmp_path / "Ash").mkdir()
    (tmp_path / "Ash" / "diary.txt").write_text("mine")
    with pytest.raises(HomeError, match="not empty; never overwriting"):
        Home.create(tmp_path, "Ash")
    assert [p.name for p in (tmp_path / "Ash").iterdir()] == ["diary.txt"]
    (tmp_path / "Bea").write_text("a file")
    with pytest.raises(HomeError, match="already exists"):
        Home.create(tmp_path, "Bea")
    assert (tmp_path / "Bea").read_text() == "a file"


def test_empty_folder_is_used(tmp_path):
    (tmp_path / "Ash").mkdir()
    home = Home.create(tmp_path, "Ash")
    assert home.load_settings().companion.name == "Ash"


def test_creating_inside_a_companion_home_is_refused(tmp_path):
    home = Home.create(tmp_path, "Ash")
    with pytest.raises(HomeError, match="is the home of the companion 'Ash'"):
        Home.create(home.path, "Bea")
    assert not (home.path / "Bea").exists()


def test_open_remakes_missing_subfolders(tmp_path):
    home = Home.create(tmp_path, "Ash")
    home.books_dir.rmdir()
    Home.open(tmp_path)
    assert home.books_dir.is_dir()


def test_open_with_a_broken_settings_file_still_opens_but_loading_names_it(tmp_path):
    home = Home.create(tmp_path, "Ash")
    home.settings_path.write_text("[companion\n")
    opened = Home.open(tmp_path)
    with pytest.raises(SettingsError, match=str(home.settings_path).replace("\\", "\\\\")):
        opened.load_settings()


def test_backup_dir(tmp_path):
    home = Home.create(tmp_path, "Ash")
    s = home.load_settings()
    assert home.backup_dir() == home.backups_dir
    assert home.backup_dir(s.with_value("backup.folder", "elsewhere")) == home.path / "elsewhere"
    assert home.backup_dir(s.with_value("backup.folder", str(tmp_path / "usb"))) == tmp_path / "usb"


# --------------------------------------------------------------------------- writability


def _unwritable_root(tmp_path: Path) -> Path:
    """A root nobody can write in: a read-only folder for ordinary users; as root (who
    ignores permissions) a path under a regular file, which is not a folder."""
    if IS_ROOT or os.name != "posix":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        return blocker / "companions"
    root = tmp_path / "read-only"
    root.mkdir()
    root.chmod(0o500)
    return root


def test_unwritable_root_is_refused_naming_the_folder(tmp_path):
    root = _unwritable_root(tmp_path)
    try:
        with pytest.raises(HomeError) as info:
            Home.create(root, "Ash")
        assert str(root) in str(info.value) or str(root.parent) in str(info.value)
    finally:
        if root.is_dir():
            root.chmod(0o700)


def test_root_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(HomeError, match="not a folder"):
        list_companions(blocker)
    with pytest.raises(HomeError, match="a-file"):
        Home.create(blocker, "Ash")
    assert blocker.read_text() == "x"


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores folder permissions")
def test_unwritable_home_is_refused_on_open(tmp_path):
    home = Home.create(tmp_path, "Ash")
    home.path.chmod(0o500)
    try:
        with pytest.raises(HomeError, match="cannot write in the folder") as info:
            Home.open(tmp_path)
        assert str(home.path) in str(info.value)
        assert Home.open(tmp_path, check_writable=False) == home
    finally:
        home.path.chmod(0o700)


# --------------------------------------------------------------------------- the lock


def test_lock_in_one_process(tmp_path):
    home = Home.create(tmp_path, "Ash")
    with home.lock() as lock:
        assert lock.held and not lock.recovered_stale and lock.note is None
        holder = home.lock_holder()
        assert holder is not None and holder.pid == os.getpid()
        with pytest.raises(LockedError, match=rf"companion Ash is already open .*\(pid {os.getpid()}, since "):
            home.lock()
    assert not lock.held
    assert home.lock_holder() is None  # a clean release empties the record
    again = home.lock()
    assert not again.recovered_stale
    again.release()
    again.release()  # twice is fine


@POSIX_ONLY
def test_second_process_is_refused_while_locked_and_succeeds_after(tmp_path):
    home = Home.create(tmp_path, "Ash")
    lock = home.lock()
    try:
        out = run_py(TRY_LOCK, str(home.path))
        assert out.returncode == 3, out.stderr
        assert out.stdout.startswith(
            f"refused: companion Ash is already open in another process (pid {os.getpid()}, since "
        )
        assert lock.held
    finally:
        lock.release()
    out = run_py(TRY_LOCK, str(home.path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "locked False"


@POSIX_ONLY
def test_lock_of_a_killed_process_is_recovered(tmp_path):
    home = Home.create(tmp_path, "Ash")
    child = spawn_py(LOCK_AND_HOLD, str(home.path))
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        with pytest.raises(LockedError) as info:
            home.lock()
        assert f"already open in another process (pid {child.pid}, since " in str(info.value)
        assert info.value.holder is not None and info.value.holder.pid == child.pid
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    with home.lock() as lock:
        assert lock.recovered_stale
        assert lock.stale is not None and lock.stale.pid == child.pid
        assert lock.stale.process_exists() is False
        assert lock.note.startswith("recovered a stale lock")
        assert f"pid {child.pid}" in lock.note
        assert home.lock_holder().pid == os.getpid()
    # and a clean release leaves nothing stale for the next one
    with home.lock() as lock:
        assert not lock.recovered_stale


@POSIX_ONLY
def test_lock_of_a_process_that_exited_without_releasing_is_recovered(tmp_path):
    home = Home.create(tmp_path, "Ash")
    out = run_py(LOCK_AND_EXIT, str(home.path))
    assert out.returncode == 0 and out.stdout.strip() == "locked", out.stderr
    out = run_py(TRY_LOCK, str(home.path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "locked True"


def test_garbage_in_the_lock_file_does_not_block(tmp_path):
    home = Home.create(tmp_path, "Ash")
    home.lock_path.write_bytes(b"\x00\xffnot json")
    with home.lock() as lock:
        assert lock.recovered_stale and lock.note.startswith("recovered a stale lock")


def test_lock_in_a_missing_home_is_a_home_error(tmp_path):
    home = Home(tmp_path / "gone")
    with pytest.raises(HomeError, match="lock file"):
        home.lock()
