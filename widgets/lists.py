"""Lists of past days and of checkpoints, for browsing and restoring.

Rows are plain dataclasses defined here so that the widgets know nothing of the store; the app
fills them from whatever it reads.  Each list posts ``Selected`` (enter / click) and
``Highlighted`` (cursor moved) carrying the row itself, not an option index.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Any, Generic, Iterable, TypeVar

from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from companion.widgets.safe_text import one_line

__all__ = [
    "CheckpointList",
    "CheckpointRow",
    "DayList",
    "DaySummaryRow",
    "format_bytes",
]


def format_bytes(size: int | None) -> str:
    """``812 B``, ``4.2 MB``, ``1.3 GB``; ``—`` when unknown."""
    if size is None or size < 0:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # unreachable


def _when(value: Any, *, with_time: bool) -> str:
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")
    if isinstance(value, _dt.date):
        return value.isoformat()
    return one_line(value or "—", 16)


@dataclass(frozen=True)
class DaySummaryRow:
    """One past (or current) day, as the day list shows it."""

    number: int
    date: _dt.date | _dt.datetime | str
    turns: int = 0
    tokens: int = 0
    budget: int = 0
    ratings: int = 0
    corrections: int = 0
    night: str | None = None
    """The night's result in words ("accepted", "rolled back", ...); None while the day is open."""

    @property
    def fullness(self) -> float:
        return min(1.0, self.tokens / self.budget) if self.budget > 0 else 0.0

    def prompt(self) -> Content:
        night = one_line(self.night, 28) if self.night else "open"
        full = f"{round(self.fullness * 100):>3d}%" if self.budget > 0 else "  —"
        return Content.assemble(
            (f"day {self.number:>4d}", "bold"),
            f"  {_when(self.date, with_time=False):<10}",
            f"  {self.turns:>4d} turns",
            f"  {self.tokens:>6,d} tok {full}",
            f"  {self.ratings:>3d} ★",
            f"  {self.corrections:>3d} ✎",
            "  ",
            (night, "italic" if self.night is None else ""),
        )


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint with its story, as the checkpoint list shows it."""

    id: str | int
    reason: str
    day: int | None = None
    created: _dt.datetime | str = ""
    step: int = 0
    probe_ppl: float | None = None
    size_bytes: int | None = None
    missing: bool = False
    """True when the weights file is gone: listed, but cannot be restored."""
    current: bool = False
    """True for the checkpoint the companion runs on now."""
    shape: str = ""
    """The model's size in short (e.g. ``w384 ctx1024``): checkpoints of different sizes coexist."""
    damaged: str = ""
    """Why the file would not load, when a load found it damaged (marked, never restorable as is)."""
    unaccepted: bool = False
    """A night's checkpoint whose night was never recorded as accepted (a stop while saving it)."""

    def prompt(self) -> Content:
        ppl = f"{self.probe_ppl:.2f}" if self.probe_ppl is not None and math.isfinite(self.probe_ppl) else "—"
        day = f"day {self.day}" if self.day is not None else "—"
        parts: list[Any] = [
            ("● " if self.current else "  ", "bold"),
            (one_line(self.id, 14).ljust(14), "bold"),
            f"  {one_line(self.reason, 22):<22}",
            f"  {day:<9}",
            f"  {_when(self.created, with_time=True):<16}",
            f"  step {self.step:>7,d}",
            f"  ppl {ppl:>7}",
            f"  {format_bytes(self.size_bytes):>8}",
        ]
        if self.shape:
            parts.append(f"  {one_line(self.shape, 16):<16}")
        if self.missing:
            parts += ["  ", ("missing", "bold reverse")]
        elif self.damaged:
            parts += ["  ", ("damaged", "bold reverse")]
        if self.unaccepted:
            parts += ["  ", ("never accepted", "italic")]
        return Content.assemble(*parts)


RowT = TypeVar("RowT")


class _RowList(OptionList, Generic[RowT]):
    """An OptionList whose options are rows; translates option messages into row messages."""

    DEFAULT_CSS = """
    _RowList { height: 1fr; }
    """

    class Selected(Message):
        """A row was chosen (enter or click)."""

        def __init__(self, row_list: "_RowList[Any]", row: Any, index: int) -> None:
            super().__init__()
            self.row_list = row_list
            self.row = row
            self.index = index

        @property
        def control(self) -> "_RowList[Any]":
            return self.row_list

    class Highlighted(Selected):
        """The cursor moved to a row."""

    def __init__(
        self,
        rows: Iterable[RowT] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        self._rows: list[RowT] = list(rows)
        super().__init__(
            *[self._option(row) for row in self._rows], name=name, id=id, classes=classes, markup=False
        )

    def _option(self, row: RowT) -> Option:
        return Option(row.prompt())  # type: ignore[attr-defined]

    @property
    def rows(self) -> list[RowT]:
        return list(self._rows)

    def set_rows(self, rows: Iterable[RowT]) -> None:
        """Replace every row, keeping the cursor on the same index where possible."""
        highlighted = self.highlighted
        self._rows = list(rows)
        self.set_options([self._option(row) for row in self._rows])
        if self._rows:
            self.highlighted = min(highlighted or 0, len(self._rows) - 1)

    def update_row(self, index: int, row: RowT) -> None:
        """Replace one row in place (e.g. a night finished)."""
        self._rows[index] = row
        self.replace_option_prompt_at_index(index, row.prompt())  # type: ignore[attr-defined]

    @property
    def highlighted_row(self) -> RowT | None:
        index = self.highlighted
        return self._rows[index] if index is not None and index < len(self._rows) else None

    def _on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list is not self:
            return
        event.stop()
        if 0 <= event.option_index < len(self._rows):
            self.post_message(self.Highlighted(self, self._rows[event.option_index], event.option_index))

    def _on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list is not self:
            return
        event.stop()
        if 0 <= event.option_index < len(self._rows):
            self.post_message(self.Selected(self, self._rows[event.option_index], event.option_index))


class DayList(_RowList[DaySummaryRow]):
    """Every day of the companion's life, newest wherever the app puts it.

    Messages: ``DayList.Selected`` / ``DayList.Highlighted`` with ``.row`` (a ``DaySummaryRow``)
    and ``.index``; handlers are ``on_day_list_selected`` / ``on_day_list_highlighted``.
    """

    class Selected(_RowList.Selected):
        row: DaySummaryRow

    class Highlighted(_RowList.Selected):
        row: DaySummaryRow


class CheckpointList(_RowList[CheckpointRow]):
    """Every checkpoint with its story; a row whose file is gone is marked ``missing``.

    Missing rows stay selectable (the owner may want to read their story); the app must refuse to
    restore them with a clear message.

    Messages: ``CheckpointList.Selected`` / ``CheckpointList.Highlighted`` with ``.row``
    (a ``CheckpointRow``); handlers ``on_checkpoint_list_selected`` / ``..._highlighted``.
    """

    class Selected(_RowList.Selected):
        row: CheckpointRow

    class Highlighted(_RowList.Selected):
        row: CheckpointRow
