"""Candidate replies: one card per sampled reply, laid out as a deck the owner picks from.

Everything shown is teaching signal, so a card never disappears: "more candidates" rounds add
cards after the earlier ones, and a card keeps its marks (chosen, corrected, passed over) and its
rating.  "No rating is not a low rating": an unrated card says so in words, never as zero stars.
"""

from __future__ import annotations

from typing import Any, Iterable

from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from companion.widgets.safe_text import display_safe

__all__ = ["MAX_STARS", "CandidateCard", "CandidateDeck", "stars_label"]

MAX_STARS = 4


def stars_label(rating: int | None) -> str:
    """``★★★☆`` for 3 of 4; ``☆ unrated`` when there is no rating."""
    if rating is None:
        return "☆ unrated"
    return "★" * rating + "☆" * (MAX_STARS - rating)


class CandidateCard(Widget):
    """One candidate reply: its number, streaming text, state, rating and marks.

    CSS classes: ``-streaming`` / ``-finished`` / ``-stopped``, ``-rated``, ``-chosen``,
    ``-corrected``, ``-passed-over``, ``-later-round`` (from a "more candidates" round) and
    ``-highlight`` (the deck's cursor).
    """

    COMPONENT_CLASSES = {
        "candidate-card--number",
        "candidate-card--stars",
        "candidate-card--unrated",
        "candidate-card--mark",
        "candidate-card--round",
        "candidate-card--state",
    }

    DEFAULT_CSS = """
    CandidateCard {
        height: auto;
        padding: 0 1;
    }
    CandidateCard.-highlight { background: $foreground 10%; }
    CandidateCard > .candidate-card--number { text-style: bold; }
    CandidateCard > .candidate-card--unrated { text-style: dim; }
    CandidateCard > .candidate-card--mark { text-style: bold; }
    CandidateCard > .candidate-card--round { text-style: dim; }
    CandidateCard > .candidate-card--state { text-style: dim italic; }
    """

    text: reactive[str] = reactive("", layout=True)
    rating: reactive[int | None] = reactive(None, toggle_class="-rated")
    chosen: reactive[bool] = reactive(False, toggle_class="-chosen")
    corrected: reactive[bool] = reactive(False, toggle_class="-corrected")
    passed_over: reactive[bool] = reactive(False, toggle_class="-passed-over")
    state: reactive[str] = reactive("streaming")
    """'streaming', 'finished' or 'stopped'."""

    STATES = ("streaming", "finished", "stopped")

    def __init__(
        self,
        number: int,
        text: str = "",
        *,
        round_no: int = 1,
        candidate_id: Any = None,
        finished: bool = False,
        rating: int | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.number = number
        self.round_no = round_no
        self.candidate_id = candidate_id
        self.set_reactive(CandidateCard.text, text)
        self.set_reactive(CandidateCard.state, "finished" if finished else "streaming")
        self.set_reactive(CandidateCard.rating, self.validate_rating(rating))
        self.set_class(rating is not None, "-rated")
        self.set_class(round_no > 1, "-later-round")
        self._apply_state_class()

    # -- updates ---------------------------------------------------------------------------------

    def append_text(self, chunk: str) -> None:
        """Add a streamed chunk of text."""
        self.text = self.text + chunk

    def set_text(self, text: str) -> None:
        self.text = text

    def finish(self, stopped: bool = False) -> None:
        """The sample ended: naturally (end of turn / length) or stopped by the owner."""
        self.state = "stopped" if stopped else "finished"

    def set_rating(self, rating: int | None) -> None:
        """1..4 stars, or None to clear the rating (unrated, not a low rating)."""
        self.rating = rating

    def set_marks(
        self,
        *,
        chosen: bool | None = None,
        corrected: bool | None = None,
        passed_over: bool | None = None,
    ) -> None:
        """Set any of the marks; marks left as None keep their value."""
        if chosen is not None:
            self.chosen = chosen
        if corrected is not None:
            self.corrected = corrected
        if passed_over is not None:
            self.passed_over = passed_over

    @property
    def finished(self) -> bool:
        return self.state != "streaming"

    def validate_rating(self, rating: int | None) -> int | None:
        if rating is None:
            return None
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= MAX_STARS:
            raise ValueError(f"rating must be 1..{MAX_STARS} or None, not {rating!r}")
        return rating

    def validate_state(self, state: str) -> str:
        if state not in self.STATES:
            raise ValueError(f"state must be one of {self.STATES}, not {state!r}")
        return state

    def watch_state(self) -> None:
        self._apply_state_class()

    def _apply_state_class(self) -> None:
        for state in self.STATES:
            self.set_class(self.state == state, f"-{state}")

    # -- display ---------------------------------------------------------------------------------

    @property
    def marks(self) -> list[str]:
        """The marks in words, as shown on the card."""
        marks = []
        if self.chosen:
            marks.append("chosen")
        if self.corrected:
            marks.append("corrected")
        if self.passed_over:
            marks.append("passed over")
        return marks

    def header(self) -> Content:
        style = self.get_visual_style
        parts: list[Any] = [(f" {self.number} ", style("candidate-card--number", partial=True))]
        if self.round_no > 1:
            parts += ["  ", (f"round {self.round_no}", style("candidate-card--round", partial=True))]
        stars_style = "candidate-card--stars" if self.rating is not None else "candidate-card--unrated"
        parts += ["  ", (stars_label(self.rating), style(stars_style, partial=True))]
        for mark in self.marks:
            parts += ["  ", (mark, style("candidate-card--mark", partial=True))]
        return Content.assemble(*parts)

    def render(self) -> Content:
        body = display_safe(self.text)
        parts: list[Any] = [self.header(), "\n", Content(body, strip_control_codes=False)]
        state_style = self.get_visual_style("candidate-card--state", partial=True)
        if self.state == "streaming":
            parts.append(("▌", state_style))
        elif self.state == "stopped":
            parts += ["\n" if body else "", ("(stopped)", state_style)]
        elif not body:
            parts.append(("(empty)", state_style))
        return Content.assemble(*parts, strip_control_codes=False)

    def plain_text(self) -> str:
        """What the card shows, as plain text."""
        return self.render().plain

    def on_click(self, event: events.Click) -> None:
        for node in self.ancestors:
            if isinstance(node, CandidateDeck):
                node.highlight_card(self)
                break


class CandidateDeck(VerticalScroll, can_focus=True):
    """All candidate cards of the current turn, in a grid that fits the terminal's width.

    Columns follow the deck's width (``COLUMN_BREAKPOINTS``: 1 under 80 cells, 2 under 140,
    else 3).  left/right (h/l) move the highlight by one card, up/down (k/j) by one row; number
    keys are left to the app (e.g. "2 picks candidate 2").
    """

    COLUMN_BREAKPOINTS: tuple[tuple[int, int], ...] = ((80, 1), (140, 2))
    MAX_COLUMNS = 3

    BINDINGS = [
        Binding("left,h", "move(-1)", "Previous candidate", show=False),
        Binding("right,l", "move(1)", "Next candidate", show=False),
        Binding("up,k", "move_row(-1)", "Row up", show=False),
        Binding("down,j", "move_row(1)", "Row down", show=False),
        Binding("home", "move_to(0)", "First candidate", show=False),
        Binding("end", "move_to(-1)", "Last candidate", show=False),
    ]

    DEFAULT_CSS = """
    CandidateDeck {
        layout: grid;
        height: 1fr;
        grid-size: 1;
        grid-rows: auto;
        grid-gutter: 0 1;
    }
    """

    highlighted_index: reactive[int | None] = reactive(None, init=False)
    """0-based index of the highlighted card, or None."""

    class Highlighted(Message):
        """The highlighted card changed."""

        def __init__(self, deck: "CandidateDeck", card: CandidateCard | None, index: int | None) -> None:
            super().__init__()
            self.deck = deck
            self.card = card
            self.index = index

        @property
        def control(self) -> "CandidateDeck":
            return self.deck

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._cards: list[CandidateCard] = []
        self._columns = 1
        self._ready = False  # cards added before mount are mounted in on_mount

    # -- cards -----------------------------------------------------------------------------------

    @property
    def cards(self) -> list[CandidateCard]:
        return list(self._cards)

    @property
    def current_round(self) -> int:
        return max((card.round_no for card in self._cards), default=0)

    def add_card(
        self,
        text: str = "",
        *,
        round_no: int | None = None,
        candidate_id: Any = None,
        finished: bool = False,
        rating: int | None = None,
    ) -> CandidateCard:
        """Add a card after the others (numbered from 1 across rounds) and return it."""
        card = CandidateCard(
            len(self._cards) + 1,
            text,
            round_no=round_no if round_no is not None else max(1, self.current_round),
            candidate_id=candidate_id,
            finished=finished,
            rating=rating,
        )
        self._cards.append(card)
        if self._ready:
            self.mount(card)
        return card

    def start_round(self, count: int, candidate_ids: Iterable[Any] | None = None) -> list[CandidateCard]:
        """Add ``count`` empty streaming cards as the next round (round 1 when the deck is empty)."""
        round_no = self.current_round + 1
        ids = list(candidate_ids) if candidate_ids is not None else [None] * count
        if len(ids) != count:
            raise ValueError("candidate_ids must have one id per card")
        cards = [self.add_card(round_no=round_no, candidate_id=cid) for cid in ids]
        if self.highlighted_index is None and cards:
            self.highlighted_index = self._cards.index(cards[0])
        return cards

    def card(self, index: int) -> CandidateCard:
        return self._cards[index]

    def card_by_id(self, candidate_id: Any) -> CandidateCard | None:
        return next((c for c in self._cards if c.candidate_id == candidate_id), None)

    def clear(self) -> None:
        """Remove every card (a new turn)."""
        cards, self._cards = self._cards, []
        self.set_reactive(CandidateDeck.highlighted_index, None)
        if self._ready and cards:
            self.remove_children(cards)

    # -- layout ----------------------------------------------------------------------------------

    @classmethod
    def columns_for_width(cls, width: int) -> int:
        for limit, columns in cls.COLUMN_BREAKPOINTS:
            if width < limit:
                return columns
        return cls.MAX_COLUMNS

    @property
    def columns(self) -> int:
        """How many columns the grid has now."""
        return self._columns

    def on_resize(self, event: events.Resize) -> None:
        self._set_columns(self.columns_for_width(event.size.width))

    def on_mount(self) -> None:
        self._ready = True
        if self._cards:
            self.mount_all(self._cards)
        self._set_columns(self.columns_for_width(self.size.width or self.app.size.width))

    def _set_columns(self, columns: int) -> None:
        self._columns = columns
        if self.styles.grid_size_columns != columns:
            self.styles.grid_size_columns = columns

    # -- highlight -------------------------------------------------------------------------------

    @property
    def highlighted_card(self) -> CandidateCard | None:
        index = self.highlighted_index
        return self._cards[index] if index is not None and index < len(self._cards) else None

    def highlight(self, index: int | None) -> None:
        self.highlighted_index = index

    def highlight_card(self, card: CandidateCard) -> None:
        if card in self._cards:
            self.highlighted_index = self._cards.index(card)

    def validate_highlighted_index(self, value: int | None) -> int | None:
        if value is None or not self._cards:
            return None
        if value < 0:
            value += len(self._cards)
        return max(0, min(value, len(self._cards) - 1))

    def watch_highlighted_index(self, old: int | None, new: int | None) -> None:
        if old is not None and old < len(self._cards):
            self._cards[old].remove_class("-highlight")
        card = self.highlighted_card
        if card is not None:
            card.add_class("-highlight")
            if card.is_attached:
                self.scroll_to_widget(card, animate=False)
        self.post_message(self.Highlighted(self, card, new if card is not None else None))

    def action_move(self, delta: int) -> None:
        if not self._cards:
            return
        if self.highlighted_index is None:
            self.highlighted_index = 0
        else:
            self.highlighted_index = max(0, self.highlighted_index + delta)

    def action_move_row(self, delta: int) -> None:
        self.action_move(delta * self._columns)

    def action_move_to(self, index: int) -> None:
        if self._cards:
            self.highlighted_index = index
