"""The day gauge: how full today's context is.

A day is one context window, so the owner needs to see how much of it is left.  The quarter marks
are drawn on the bar because the temporal indicators fire as each quarter passes: the owner can see
the next "time of day" coming.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

__all__ = ["DayGauge", "QUARTER_MARK", "LATE_FRACTION"]

QUARTER_MARK = "│"
LATE_FRACTION = 0.75


class DayGauge(Widget):
    """A bar of tokens used against the day's budget, with marks at 25/50/75%.

    Two lines: the bar, then ``used / budget tokens · NN%``.  CSS classes: ``-late`` from 75% on,
    ``-full`` when the budget is used up, ``-empty-budget`` when there is no budget yet.
    Component classes style the bar: ``day-gauge--filled``, ``day-gauge--empty``,
    ``day-gauge--mark``, ``day-gauge--label``.
    """

    COMPONENT_CLASSES = {
        "day-gauge--filled",
        "day-gauge--empty",
        "day-gauge--mark",
        "day-gauge--label",
    }

    DEFAULT_CSS = """
    DayGauge {
        height: 2;
        padding: 0 1;
    }
    DayGauge > .day-gauge--filled { background: $primary; color: $foreground; }
    DayGauge > .day-gauge--empty { background: $foreground 12%; color: $text-muted; }
    DayGauge > .day-gauge--mark { text-style: bold; }
    """

    used: reactive[int] = reactive(0)
    budget: reactive[int] = reactive(0)

    def __init__(
        self,
        used: int = 0,
        budget: int = 0,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(DayGauge.used, max(0, int(used)))
        self.set_reactive(DayGauge.budget, max(0, int(budget)))
        self._update_classes()

    def update_usage(self, used: int, budget: int) -> None:
        """Show ``used`` tokens of a ``budget`` (the day's share of the block size)."""
        self.budget = max(0, int(budget))
        self.used = max(0, int(used))

    @property
    def fraction(self) -> float:
        """How full the day is, 0.0 .. 1.0 (0 when there is no budget)."""
        if self.budget <= 0:
            return 0.0
        return min(1.0, self.used / self.budget)

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)

    @property
    def quarters_passed(self) -> int:
        """How many quarter marks the day has passed (0..4); 4 means full."""
        if self.budget <= 0:
            return 0
        return min(4, (self.used * 4) // self.budget)

    def watch_used(self) -> None:
        self._update_classes()

    def watch_budget(self) -> None:
        self._update_classes()

    def _update_classes(self) -> None:
        self.set_class(self.budget > 0 and self.fraction >= LATE_FRACTION, "-late")
        self.set_class(self.budget > 0 and self.used >= self.budget, "-full")
        self.set_class(self.budget <= 0, "-empty-budget")

    @staticmethod
    def mark_positions(width: int) -> set[int]:
        """Cells of a ``width``-wide bar that carry the 25/50/75% marks."""
        if width < 4:
            return set()
        return {round(width * q / 4) for q in (1, 2, 3)} - {0, width}

    def bar(self, width: int) -> Text:
        """The bar alone, ``width`` cells wide, built cell by cell."""
        filled_style = self.get_component_rich_style("day-gauge--filled", partial=True)
        empty_style = self.get_component_rich_style("day-gauge--empty", partial=True)
        mark_style = self.get_component_rich_style("day-gauge--mark", partial=True)
        width = max(0, width)
        filled_cells = round(self.fraction * width)
        marks = self.mark_positions(width)
        bar = Text(no_wrap=True, overflow="crop", end="")
        for cell in range(width):
            style: Style = filled_style if cell < filled_cells else empty_style
            if cell in marks:
                bar.append(QUARTER_MARK, style + mark_style)
            else:
                bar.append(" ", style)
        return bar

    def label(self) -> str:
        if self.budget <= 0:
            return f"{self.used:,} tokens · no budget yet"
        return f"{self.used:,} / {self.budget:,} tokens · {self.percent}%"

    def render(self) -> Text:
        width = self.content_size.width or self.size.width
        text = self.bar(width)
        text.append("\n")
        text.append(self.label(), self.get_component_rich_style("day-gauge--label", partial=True))
        return text
