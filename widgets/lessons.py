"""The list of lessons: each lesson's day, status, recall over the nights as a sparkline, and its
question. Rows are plain dataclasses filled by the screen; the widget knows nothing of the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from textual.content import Content

from companion.widgets.lists import _RowList
from companion.widgets.safe_text import one_line

__all__ = ["LessonList", "LessonRow", "sparkline", "STATUS_STYLES"]

_BARS = "▁▂▃▄▅▆▇█"

STATUS_STYLES = {
    "new": "italic",
    "learning": "",
    "learned": "bold",
    "fading": "bold reverse",
    "retired": "dim strike",
}


def sparkline(rates: Sequence[float | None], width: int | None = None) -> str:
    """One character per night, ▁ (said 0 times) to █ (said every time); ``·`` for a night that
    did not count (rolled back). With ``width``, the last ``width`` nights, left-padded."""
    chars = []
    for rate in rates:
        if rate is None:
            chars.append("·")
        else:
            rate = min(1.0, max(0.0, rate))
            chars.append(_BARS[min(len(_BARS) - 1, int(rate * len(_BARS)))])
    line = "".join(chars)
    if width is not None:
        line = line[-width:].rjust(width)
    return line


@dataclass(frozen=True)
class LessonRow:
    """One lesson as the list shows it."""

    id: int
    day: int | None
    status: str
    question: str
    answer: str
    rates: tuple[float | None, ...] = ()
    """Recall per night, oldest first (None: a night that was not accepted)."""
    phrasings: int = 0
    in_weights: bool = True
    retired: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def prompt(self) -> Content:
        day = f"day {self.day}" if self.day is not None else "book"
        latest = next((r for r in reversed(self.rates) if r is not None), None)
        latest_text = f"{round(latest * 100):>3d}%" if latest is not None else "   —"
        parts: list[Any] = [
            (f"#{self.id:<4d}", "bold"),
            f" {day:<8}",
            (f" {self.status:<8}", STATUS_STYLES.get(self.status, "")),
            f" {sparkline(self.rates, 12)} {latest_text}",
            f"  {one_line(self.question, 40)}",
            ("  → ", "dim"),
            one_line(self.answer, 40),
        ]
        if self.phrasings:
            parts.append((f"  +{self.phrasings}", "dim"))
        if not self.in_weights:
            parts += ["  ", ("not in the weights", "italic")]
        return Content.assemble(*parts)


class LessonList(_RowList[LessonRow]):
    """Every lesson, oldest first. Messages: ``LessonList.Selected`` / ``LessonList.Highlighted``
    with ``.row`` (a ``LessonRow``)."""

    class Selected(_RowList.Selected):
        row: LessonRow

    class Highlighted(_RowList.Selected):
        row: LessonRow
