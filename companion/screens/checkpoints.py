"""The checkpoints menu: every checkpoint with its story, restore with confirmation, and the state of
the protection (disk use, the last backup and when it was verified).

Restoring asks first, saying what will change (``companion.history.restore.describe_plan``); the restore itself
runs in a thread worker, then the screen posts ``CheckpointsScreen.Restored`` so the app reloads the
model without restarting. Refusals (a night running, a missing file, the checkpoint already current)
are said on the screen and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from companion.history.backup import BackupError, backup_line, due, folder_size, last_backup, make_backup
from companion.safety.leftovers import checkpoint_bytes
from companion.home import Home
from companion.progress import plural
from companion.history.restore import RestoreError, RestoreResult, describe_plan, plan_restore, restore
from companion.store import Checkpoint, Store
from companion.widgets.lists import CheckpointList, CheckpointRow, format_bytes
from companion.widgets.safe_text import display_safe
from companion.widgets.text_prompt import ConfirmScreen

__all__ = ["CheckpointsScreen"]


@dataclass(frozen=True)
class _Listing:
    checkpoints: list[Checkpoint]
    rows: list[CheckpointRow]
    day_numbers: dict[int, int]
    status: str
    stories: dict[int, str] = field(default_factory=dict)  # a growth's "grown from ... to ..."


class CheckpointsScreen(Screen):
    """Every live checkpoint, oldest first; enter or ``r`` restores the highlighted one, ``b`` backs up."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("r", "restore", "Restore"),
        Binding("b", "backup", "Back up now"),
        Binding("m", "morning", "Morning report"),
        Binding("e", "export", "Export"),
    ]
    DEFAULT_CSS = """
    CheckpointsScreen #checkpoints-list { height: 1fr; }
    CheckpointsScreen #checkpoint-story { height: auto; padding: 0 1; border-top: solid $primary; }
    CheckpointsScreen #checkpoints-status { height: auto; padding: 0 1; color: $text-muted; }
    CheckpointsScreen #checkpoints-message { height: auto; padding: 0 1; }
    CheckpointsScreen #checkpoints-message.-error { color: $error; }
    """

    class Restored(Message):
        """A restore finished: the app reloads the current weights (``reload_weights()``)."""

        def __init__(self, checkpoint_id: int, result: RestoreResult | None = None) -> None:
            super().__init__()
            self.checkpoint_id = checkpoint_id
            self.result = result

    class _Listed(Message):
        def __init__(self, listing: _Listing) -> None:
            super().__init__()
            self.listing = listing

    class _Said(Message):
        def __init__(self, text: str, error: bool) -> None:
            super().__init__()
            self.text, self.error = text, error

    class _RestoreDone(Message):
        def __init__(self, result: RestoreResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, home: Home, store: Store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.listing: _Listing | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield CheckpointList(id="checkpoints-list")
            yield Static(id="checkpoint-story")
            yield Static(id="checkpoints-status")
            yield Static(id="checkpoints-message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(CheckpointList).focus()
        self.refresh_list()

    def action_morning(self) -> None:
        """The morning report of the night that made (or started from) the highlighted checkpoint."""
        row = self.query_one(CheckpointList).highlighted_row
        if row is None:
            return
        nights = [n for n in self.store.nights() if row.id in (n.post_checkpoint_id, n.pre_checkpoint_id) and n.report]
        opener = getattr(self.app, "open_morning_report", None)
        if not nights:
            self.notify(f"Checkpoint {row.id} has no night's report.", severity="information")
        elif opener is not None:
            opener(night_id=nights[-1].id)

    # -- listing ------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="list")
    def refresh_list(self) -> None:
        from companion.growth.plan import checkpoint_size
        from companion.history.weights import Weights

        weights = Weights(self.home, self.store)
        current = weights.current()
        checkpoints = self.store.checkpoints()
        day_numbers = {d.id: d.number for d in self.store.days()}
        rows = []
        stories: dict[int, str] = {}
        for c in checkpoints:
            path = self.home.path / c.path
            exists = path.is_file()
            shape, stories[c.id] = checkpoint_size(path) if exists else ("", "")
            rows.append(CheckpointRow(
                id=c.id, reason=c.reason, day=day_numbers.get(c.day_id) if c.day_id else None,
                created=c.created_at[:16].replace("T", " "), step=c.step, probe_ppl=c.probe_ppl,
                size_bytes=path.stat().st_size if exists else c.size_bytes, missing=not exists,
                current=current is not None and current.id == c.id, damaged=c.damaged or "",
                unaccepted=not weights.accepted(c), shape=shape))
        used, leftover = checkpoint_bytes(self.home.checkpoints_dir)
        settings = self.home.load_settings()
        backups = self.home.backup_dir(settings)
        status = (f"{plural(len(checkpoints), 'checkpoint')} · {format_bytes(used)} on disk"
                  + (f" (and {format_bytes(leftover)} of leftover temporary files, removed at the next start)"
                     if leftover else "") + " · backups "
                  f"{format_bytes(folder_size(backups))} in {backups}\n"
                  + backup_line(last_backup(self.home, settings), due(self.home, settings)))
        self.post_message(self._Listed(_Listing(checkpoints, rows, day_numbers, status, stories)))

    @on(_Listed)
    def _fill(self, message: _Listed) -> None:
        first = self.listing is None
        self.listing = message.listing
        checkpoint_list = self.query_one(CheckpointList)
        checkpoint_list.set_rows(message.listing.rows)
        current = next((i for i, r in enumerate(message.listing.rows) if r.current), None)
        if current is not None and first:  # open on the weights the companion lives on
            checkpoint_list.highlighted = current
        self.query_one("#checkpoints-status", Static).update(Content(display_safe(message.listing.status)))

    @on(CheckpointList.Highlighted)
    def _story(self, event: CheckpointList.Highlighted) -> None:
        if self.listing is None:
            return
        c = self.listing.checkpoints[event.index]
        row = event.row
        parent = f"from checkpoint {c.parent_id}" if c.parent_id else "no parent"
        day = f"day {row.day}" if row.day is not None else "before any day"
        ppl = f"{c.probe_ppl:.2f}" if c.probe_ppl is not None else "not measured"
        lines = [f"Checkpoint {c.id}: {c.reason}, {day}, {parent}",
                 f"created {c.created_at[:19].replace('T', ' ')} · step {c.step:,} · probe perplexity {ppl} · "
                 f"{format_bytes(row.size_bytes)} · checksum {c.checksum[:12]}",
                 f"file {c.path}" + (" — MISSING: deleted outside the app; it cannot be restored"
                                     if row.missing else "")]
        if self.listing.stories.get(c.id):
            lines.append(self.listing.stories[c.id])
        if row.current:
            lines.append("The companion lives on these weights now.")
        self.query_one("#checkpoint-story", Static).update(Content(display_safe("\n".join(lines))))

    def say(self, text: str, error: bool = False) -> None:
        """Show a message on the screen (and as a notification)."""
        message = self.query_one("#checkpoints-message", Static)
        message.update(Content(display_safe(text)))
        message.set_class(error, "-error")
        self.notify(text, severity="error" if error else "information")

    @on(_Said)
    def _said(self, message: _Said) -> None:
        self.say(message.text, message.error)

    # -- restore ------------------------------------------------------------------------------------

    @on(CheckpointList.Selected)
    def _selected(self, event: CheckpointList.Selected) -> None:
        self.action_restore()

    def action_restore(self) -> None:
        checkpoint_list = self.query_one(CheckpointList)
        row = checkpoint_list.highlighted_row
        if row is None:
            return
        if row.missing:
            self.say(f"Checkpoint {row.id} is missing: its file was deleted outside the app, so it cannot be "
                     "restored.", error=True)
            return
        try:
            plan = plan_restore(self.home, self.store, int(row.id))
        except RestoreError as exc:
            self.say(f"Restore refused: {exc}.", error=True)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.say(f"Restoring checkpoint {row.id}…")
                self._restore(int(row.id))

        self.app.push_screen(ConfirmScreen(describe_plan(plan), title="Restore this checkpoint?",
                                           yes_label="Restore", no_label="Keep"), answered)

    @work(thread=True, exclusive=True, group="restore")
    def _restore(self, checkpoint_id: int) -> None:
        try:
            result = restore(self.home, self.store, checkpoint_id)
        except RestoreError as exc:
            self.post_message(self._Said(f"Restore refused: {exc}.", True))
            return
        except Exception as exc:  # a full disk while saving the pre-restore weights, ...
            self.post_message(self._Said(f"Restore failed, nothing changed: {exc}", True))
            return
        self.post_message(self._RestoreDone(result))

    @on(_RestoreDone)
    def _restored(self, message: _RestoreDone) -> None:
        r = message.result
        undo = f" To undo, restore checkpoint {r.saved.id} ({r.saved.reason})." if r.saved else ""
        days = f" {r.days_marked} day(s) marked as not in the weights." if r.days_marked else ""
        if r.lessons_marked:
            days += f" {r.lessons_marked} lesson(s) too: the nights will teach them again."
        self.say(f"Restored checkpoint {r.restored.id}.{days}{undo}")
        self.post_message(self.Restored(r.restored.id, r))
        self.refresh_list()

    # -- export -------------------------------------------------------------------------------------

    def action_export(self) -> None:
        from pathlib import Path

        from companion.screens.export import ExportScreen

        row = self.query_one(CheckpointList).highlighted_row
        if row is None:
            return
        if row.missing:
            self.say(f"Checkpoint {row.id} is missing: its file was deleted outside the app.", error=True)
            return
        checkpoint_id = int(row.id)

        def answered(choice: tuple[str, str, str] | None) -> None:
            if choice:
                fmt, dtype, path = choice
                self.say(f"Exporting checkpoint {checkpoint_id} to {path}…")
                self._export(checkpoint_id, fmt, dtype, path)

        self.app.push_screen(ExportScreen(f"{self.home.name}-checkpoint-{checkpoint_id}", Path.home()), answered)

    @work(thread=True, exclusive=True, group="export")
    def _export(self, checkpoint_id: int, fmt: str, dtype: str, path: str) -> None:
        from companion.interop.export import ExportError, export_checkpoint

        try:
            done = export_checkpoint(self.home, self.store, fmt, path, dtype=dtype, checkpoint_id=checkpoint_id)
        except ExportError as exc:
            self.post_message(self._Said(f"Export refused: {exc}", True))
            return
        except Exception as exc:  # anything else: said, never a crash of the app
            self.post_message(self._Said(f"Export failed, nothing was written: {exc}", True))
            return
        self.post_message(self._Said(f"Exported checkpoint {checkpoint_id} ({done.format} {done.dtype}, "
                                     f"{format_bytes(done.size_bytes)}) to {done.path}.", False))

    # -- backup -------------------------------------------------------------------------------------

    def action_backup(self) -> None:
        self.say("Backing up…")
        self._backup()

    @work(thread=True, exclusive=True, group="backup")
    def _backup(self) -> None:
        try:
            info = make_backup(self.home, self.store)
        except BackupError as exc:
            self.post_message(self._Said(f"Backup failed: {exc}", True))
            return
        self.post_message(self._Said(f"Backed up and verified: {info.folder} ({format_bytes(info.size_bytes)}).",
                                     False))
        self.app.call_from_thread(self.refresh_list)
