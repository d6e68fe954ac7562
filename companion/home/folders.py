"""Where companions live: the root of homes, one folder per companion, and what is in it.

The *root* folder holds one folder per companion (its *home*)::

    <root>/<name>/companion.toml     settings (see companion.settings)
                  tokenizer.json
                  checkpoints/
                  books/
                  backups/           default backup folder
                  companion.db       the store
                  lock               held while an app has the companion open

The root is ``platformdirs.user_data_dir("companion")``, overridden by the environment
variable ``COMPANION_HOME``, overridden by an explicit ``--home`` path.  A path that
itself contains ``companion.toml`` is taken as one companion's home directly, so
``--home DIR`` works whether DIR is the root or a companion's folder.

This module is on the UI's start-up path: it must never import torch or textual.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from companion.home.errors import HomeError
from companion.home.lock import HomeLock, LockInfo
from companion.home.names import validate_name
from companion.safety.private import make_private, make_tree_private, private_mkdir

if TYPE_CHECKING:  # pragma: no cover
    from companion.settings import Settings


APP_NAME = "companion"
ENV_HOME = "COMPANION_HOME"
ENV_CONFIG = "COMPANION_CONFIG"

SETTINGS_FILE = "companion.toml"
TOKENIZER_FILE = "tokenizer.json"
STORE_FILE = "companion.db"
LOCK_FILE = "lock"
CHECKPOINTS_DIR = "checkpoints"
BOOKS_DIR = "books"
BACKUPS_DIR = "backups"
SUBFOLDERS = (CHECKPOINTS_DIR, BOOKS_DIR, BACKUPS_DIR)


#: A birth is built in a hidden folder beside the companions, ``.<name>.unborn``, and renamed to
#: ``<name>`` only when it is whole (settings, tokenizer, a current checkpoint): a birth that fails or
#: is killed never leaves a half companion under the companion's own name.
UNBORN_SUFFIX = ".unborn"

#: The bundled, ready-trained seedling a new companion can adopt (tokenizer and fp16 weights).
SEEDLING_DIR = Path(__file__).parents[1] / "seedling"

# --------------------------------------------------------------------------- folders


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var, "").strip()
    return _absolute(value) if value else None


def _absolute(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(p))))


def resolve_root(home: str | os.PathLike[str] | None = None) -> Path:
    """The folder of companions: ``home`` if given (``--home``), else ``$COMPANION_HOME``
    if set and non-empty, else ``platformdirs.user_data_dir("companion")``.  Returned
    absolute with ``~`` expanded; nothing is created.  The result may be one companion's
    home rather than a root (see :func:`is_home`); :meth:`Home.open` handles both."""
    if home is not None and os.fspath(home).strip():
        return _absolute(home)
    return _env_path(ENV_HOME) or _absolute(platformdirs.user_data_dir(APP_NAME))


def config_dir() -> Path:
    """The owner's configuration folder: ``$COMPANION_CONFIG`` if set, else
    ``platformdirs.user_config_dir("companion")``.  Owner themes live in
    ``config_dir()/themes/*.tcss|*.toml``.  Nothing is created."""
    return _env_path(ENV_CONFIG) or _absolute(platformdirs.user_config_dir(APP_NAME))


def themes_dir() -> Path:
    """``config_dir()/themes``: where the owner's own theme files live."""
    return config_dir() / "themes"


def is_home(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is one companion's home (a folder holding ``companion.toml``)."""
    return (Path(path) / SETTINGS_FILE).is_file()


def list_companions(root: str | os.PathLike[str]) -> list[str]:
    """Names of the companions living in ``root`` (sub-folders holding
    ``companion.toml``), sorted.  A root that does not exist yet holds none; a root that
    is not a folder is a :class:`HomeError`.  If ``root`` is itself a companion's home,
    that one companion's name is returned."""
    root = _absolute(root)
    if is_home(root):
        return [root.name]
    if not root.exists():
        return []
    if not root.is_dir():
        raise HomeError(f"{root} is not a folder; it cannot hold companions")
    try:
        entries = list(root.iterdir())
    except OSError as e:
        raise HomeError(f"cannot read the folder {root}: {e.strerror or e}") from None
    return sorted(p.name for p in entries if not p.name.startswith(".") and is_home(p))


def unborn_path(root: str | os.PathLike[str], name: str) -> Path:
    """Where the birth of ``name`` is built until it is whole."""
    return _absolute(root) / f".{name}{UNBORN_SUFFIX}"


def is_born(path: str | os.PathLike[str]) -> bool:
    """Whether a home is whole: settings, a tokenizer, and a CURRENT pointer or a checkpoint file.

    Reads the folder only (no store, no torch): the app asks this at start for every companion."""
    path = Path(path)
    checkpoints = path / CHECKPOINTS_DIR
    if not (is_home(path) and (path / TOKENIZER_FILE).is_file() and checkpoints.is_dir()):
        return False
    try:
        return (checkpoints / "CURRENT").is_file() or any(checkpoints.glob("*.safetensors"))
    except OSError:
        return False


def list_unborn(root: str | os.PathLike[str]) -> list[Path]:
    """Births that did not finish, sorted by name: ``.<name>.unborn`` folders holding settings, and
    homes under a companion's own name that an older version left without a tokenizer or weights."""
    root = _absolute(root)
    if is_home(root) or not root.is_dir():
        return []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    aside = [p for p in entries if p.name.startswith(".") and p.name.endswith(UNBORN_SUFFIX) and is_home(p)]
    legacy = [p for p in entries if not p.name.startswith(".") and is_home(p) and not is_born(p)]
    return aside + legacy


def ensure_writable(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`HomeError` naming ``folder`` unless a file can really be created in
    it (permissions alone do not tell: read-only mounts, full disks, ACLs...)."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test-", suffix=".tmp")
    except OSError as e:
        raise HomeError(f"cannot write in the folder {folder}: {e.strerror or e}") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _make_dirs(folder: Path) -> None:
    """Make a folder (0700: private by default, whatever the umask) or raise HomeError naming it."""
    try:
        private_mkdir(folder)
    except FileExistsError:
        raise HomeError(f"cannot create the folder {folder}: a file is in the way") from None
    except OSError as e:
        raise HomeError(f"cannot create the folder {folder}: {e.strerror or e}") from None
    if not folder.is_dir():
        raise HomeError(f"cannot use {folder}: it is not a folder")


# --------------------------------------------------------------------------- the home


class Home:
    """One companion's home folder.  Build with :meth:`create` or :meth:`open`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _absolute(path)

    def __repr__(self) -> str:
        return f"Home({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Home) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # -- paths --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The companion's name: the name of its folder (``.<name>.unborn`` while it is being born)."""
        folder = self.path.name
        if folder.startswith(".") and folder.endswith(UNBORN_SUFFIX):
            return folder[1 : -len(UNBORN_SUFFIX)]
        return folder

    @property
    def unborn(self) -> bool:
        """Whether this home is a birth still being built aside."""
        return self.path.name.startswith(".") and self.path.name.endswith(UNBORN_SUFFIX)

    @property
    def root(self) -> Path:
        """The folder of companions this home lives in."""
        return self.path.parent

    @property
    def settings_path(self) -> Path:
        return self.path / SETTINGS_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def books_dir(self) -> Path:
        return self.path / BOOKS_DIR

    @property
    def backups_dir(self) -> Path:
        """The default backup folder (``backup.folder`` in the settings may move it; see
        :meth:`backup_dir`)."""
        return self.path / BACKUPS_DIR

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def backup_dir(self, settings: "Settings | None" = None) -> Path:
        """Where backups go: ``backup.folder`` from the settings (read from disk when not
        given); empty means :attr:`backups_dir`, a relative path is taken from the home."""
        if settings is None:
            settings = self.load_settings()
        folder = settings.backup.folder
        if not folder:
            return self.backups_dir
        p = Path(os.path.expanduser(folder))
        return p if p.is_absolute() else self.path / p

    # -- settings -----------------------------------------------------------------------

    def load_settings(self) -> "Settings":
        """Read ``companion.toml`` (raises ``companion.settings.SettingsError``)."""
        from companion.settings import load_settings

        return load_settings(self.settings_path)

    def save_settings(self, settings: "Settings") -> None:
        """Write ``companion.toml`` atomically."""
        from companion.settings import save_settings

        save_settings(self.settings_path, settings)

    # -- creating and opening -----------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        name: str,
        *,
        owner: str | None = None,
        preset: str | None = None,
        settings: "Settings | None" = None,
        aside: bool = False,
    ) -> "Home":
        """Make a new companion's home ``<root>/<name>/`` with its sub-folders and a
        ``companion.toml``: ``settings`` if given (its ``companion.name`` must be
        ``name``), else default settings for ``owner`` (default ``"Owner"``) and
        ``preset``.  The root is created if needed.

        With ``aside`` the home is made in ``.<name>.unborn`` (see :func:`unborn_path`), for a
        birth that is renamed into place only once it is whole.

        Never overwrites: an existing companion of that name, or any non-empty folder
        in the way, is refused with :class:`HomeError` and left untouched."""
        from companion.settings import DEFAULT_PRESET, Settings

        validate_name(name)
        root = _absolute(root)
        if is_home(root):
            raise HomeError(
                f"{root} is the home of the companion {root.name!r}, not a folder of "
                f"companions; create new companions next to it, in {root.parent}"
            )
        _make_dirs(root)
        ensure_writable(root)
        if settings is None:
            settings = Settings.new(name, owner or "Owner", preset=preset or DEFAULT_PRESET)
        elif settings.companion.name != name:
            raise HomeError(
                f"the settings name the companion {settings.companion.name!r}, "
                f"not {name!r}"
            )
        path = unborn_path(root, name) if aside else root / name
        exists_msg = f"a companion named {name} already exists in {root}; never overwriting"
        if is_home(root / name) or (path.exists() and not path.is_dir()):
            raise HomeError(exists_msg)
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise HomeError(exists_msg) from None
            try:
                occupied = any(path.iterdir())
            except OSError as e:
                raise HomeError(f"cannot read the folder {path}: {e.strerror or e}") from None
            if occupied:
                raise HomeError(
                    f"the folder {path} already exists and is not empty; never overwriting"
                ) from None
        except OSError as e:
            raise HomeError(f"cannot create the folder {path}: {e.strerror or e}") from None
        home = cls(path)
        make_private(path)
        for sub in SUBFOLDERS:
            _make_dirs(path / sub)
        from companion.settings import save_settings

        try:
            save_settings(home.settings_path, settings, exclusive=True)
        except FileExistsError:  # another process created it just now
            raise HomeError(exists_msg) from None
        except OSError as e:
            raise HomeError(
                f"cannot write {home.settings_path}: {e.strerror or e}"
            ) from None
        return home

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        name: str | None = None,
        *,
        check_writable: bool = True,
    ) -> "Home":
        """Open an existing companion.

        ``root`` may be the folder of companions or one companion's home.  With
        ``name=None`` the only companion there is opened; none, or several, is a
        :class:`HomeError` (the latter lists them).  With ``check_writable`` (the
        default) the home must really be writable and its missing sub-folders are
        made again."""
        root = _absolute(root)
        if is_home(root):
            if name is not None and name != root.name:
                raise HomeError(
                    f"{root} is the home of the companion {root.name!r}, not {name!r}"
                )
            home = cls(root)
        else:
            if name is not None:
                validate_name(name)
            if not root.exists():
                raise HomeError(f"no companion lives in {root} yet (the folder does not exist)")
            names = list_companions(root)
            if name is not None:
                if name not in names:
                    if unborn_path(root, name).is_dir():
                        raise HomeError(f"{name}'s birth did not finish (kept in {unborn_path(root, name)}); run "
                                        f"the same `companion birth` again to continue it, or open the app")
                    others = f"; companions there: {', '.join(names)}" if names else ""
                    raise HomeError(f"no companion named {name} in {root}{others}")
                home = cls(root / name)
            elif not names:
                raise HomeError(f"no companion lives in {root} yet; create one first")
            elif len(names) > 1:
                raise HomeError(
                    f"several companions live in {root}: {', '.join(names)}; "
                    f"say which one with --name NAME"
                )
            else:
                home = cls(root / names[0])
        if check_writable:
            ensure_writable(home.path)
            for sub in SUBFOLDERS:
                _make_dirs(home.path / sub)
            home.make_private()
        return home

    def make_private(self) -> None:
        """Folders 0700 and the app's files 0600, whatever umask made them (homes made before this rule,
        files copied in at birth). The owner's books keep their own modes; their folder is private."""
        make_private(self.path)
        make_private(self.books_dir)
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for entry in entries:
            if entry.name == BOOKS_DIR:
                continue
            if entry.is_dir(follow_symlinks=False):
                make_tree_private(entry.path)
            else:
                make_private(entry.path)

    # -- the lock -----------------------------------------------------------------------

    def lock(self) -> "HomeLock":
        """Take the companion's lock now and return it (a context manager; or call
        :meth:`HomeLock.release`).  Raises :class:`LockedError` if another process (or
        another lock in this one) holds it.  See :class:`HomeLock`."""
        return HomeLock(self.lock_path, self.name).acquire()

    def lock_holder(self) -> "LockInfo | None":
        """Who the lock file says holds (or last held without releasing) the lock; for
        display only -- the lock itself is the kernel's."""
        try:
            return LockInfo.parse(self.lock_path.read_bytes())
        except OSError:
            return None


