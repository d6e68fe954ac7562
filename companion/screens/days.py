"""Past days: every day the companion has lived, a preview beside the list, full-text search, and the
whole of one day (every candidate, choice, rating, correction, annotation, indicator, its dream and
its night) when opened.

Store reads run in thread workers that post their results back as messages, so a long life never
stalls the screen. Everything the owner or the model wrote is shown through ``display_safe`` inside
``Content`` objects: never parsed as markup, never able to repaint the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from companion.home import Home
from companion.progress import plural
from companion.store import DaySummary, Hit, Store, StoreError
from companion.transcript import parse_text
from companion.widgets.lists import DayList, DaySummaryRow
from companion.widgets.safe_text import display_safe, one_line
from companion.widgets.transcript import TranscriptEntry, TranscriptView

__all__ = ["DaysScreen", "DayScreen", "HitList", "day_entries", "summary_row", "night_words"]

STARS = "★★★★"


def night_words(status: str | None) -> str:
    return {"accepted": "accepted", "rolled_back": "rolled back", "interrupted": "interrupted",
            "nothing": "nothing to learn", "failed": "failed", "running": "night running"}.get(status or "",
                                                                                              status or "")


def summary_row(d: DaySummary) -> DaySummaryRow:
    """A store summary as the day list shows it."""
    if d.closed_at is None:
        night = None
    else:
        night = night_words(d.night_status) if d.night_status else "no night yet"
    if not d.in_weights:
        night = f"{night or 'open'} · not in weights"
    return DaySummaryRow(number=d.number, date=d.opened_at[:10], turns=d.turns, tokens=d.tokens,
                         budget=d.budget_tokens, ratings=d.ratings, corrections=d.corrections, night=night)


@dataclass(frozen=True)
class DayView:
    """Everything needed to show one day: its lines, where each searchable row landed, a title."""

    title: str
    entries: list[TranscriptEntry]
    index: dict[tuple[str, int], int]   # ("turn" | "candidate" | "dream", id) -> line index


def _stars(stars: int | None) -> str:
    return "" if stars is None else STARS[:stars] + "☆" * (4 - stars)


def day_entries(store: Store, day_id: int, *, owner: str = "", companion: str = "") -> DayView:
    """The lines of a past day, in the order they happened: each turn, then the candidates shown for
    it (marked picked, corrected or passed over, with their stars), then the dream and the night."""
    day = store.get_day(day_id)
    if day is None:
        raise StoreError(f"there is no day with id {day_id}")
    turns = store.turns(day_id)
    candidates = store.candidates(day_id)
    ratings = store.ratings(day_id)
    choices = store.choices(day_id)
    corrected = {k.candidate_id for k in store.corrections(day_id)}
    picked = {c.candidate_id for c in choices if c.kind == "pick"}
    choice_of_turn = {c.turn_id: c for c in choices}
    notes = store.annotations(day_id)
    turn_notes = {a.turn_id: a for a in notes if a.turn_id is not None}
    dream_notes = {(a.dream_id, a.line_index): a for a in notes if a.dream_id is not None}
    by_prompt: dict[int | None, list] = {}
    for c in candidates:
        key = c.prompt_turn_id if c.prompt_turn_id is not None else -1 - c.round  # no prompt: by round
        by_prompt.setdefault(key, []).append(c)
    speakers = {"owner": owner, "companion": companion}
    entries: list[TranscriptEntry] = []
    index: dict[tuple[str, int], int] = {}

    def emit_candidates(key: int) -> None:
        for c in sorted(by_prompt.pop(key, []), key=lambda c: (c.round, c.slot)):
            mark = "✓ picked" if c.id in picked else "✎ corrected" if c.id in corrected else "· passed over"
            label = f"option {c.round + 1}.{c.slot + 1} {_stars(ratings.get(c.id))}".rstrip()
            index[("candidate", c.id)] = len(entries)
            entries.append(TranscriptEntry(role=c.role, text=f"{mark}  {c.text}", source="candidate",
                                           speaker=label))

    said = {t.candidate_id for t in turns if t.candidate_id is not None and t.role == "inner"}
    for key, cands in by_prompt.items():  # an inner line the model said is its turn: shown once
        by_prompt[key] = [c for c in cands if c.id not in said]
    for t in turns:
        choice = choice_of_turn.get(t.id)
        if choice is not None and choice.prompt_turn_id is None and choice.candidate_id is not None:
            chosen = next((c for c in candidates if c.id == choice.candidate_id), None)
            if chosen is not None:
                emit_candidates(-1 - chosen.round)
        a = turn_notes.get(t.id)
        index[("turn", t.id)] = len(entries)
        entries.append(TranscriptEntry(role=t.role, text=t.text, source=t.source, speaker=speakers.get(t.role, ""),
                                       turn_id=t.id, tags=a.tags if a else (), note=(a.note or "") if a else ""))
        if t.amended:
            versions = store.amendments(t.id)
            original = store.recorded_turn(t.id)
            was = original.text if original is not None else ""
            entries.append(TranscriptEntry(
                role=t.role, source="candidate", speaker="amended",
                text=f"✎ amended {len(versions) - 1}× · first said: {was}"))
        emit_candidates(t.id)
    for key in sorted(by_prompt):
        emit_candidates(key)
    for dream in store.dreams(day_id=day_id):
        index[("dream", dream.id)] = len(entries)
        entries.append(TranscriptEntry(role="inner", text=f"the dream of day {day.number} ({dream.source})",
                                       source="indicator"))
        parts = parse_text(dream.text) or []
        lines = [(p.role, p.text) for p in parts] if parts else [("inner", line) for line in dream.text.split("\n")]
        for i, (role, text) in enumerate(lines):
            a = dream_notes.get((dream.id, i))
            entries.append(TranscriptEntry(role="inner" if role in ("inner", "text") else role, text=text,
                                           source="dream" if role in ("inner", "text") else "candidate",
                                           speaker=speakers.get(role, ""), tags=a.tags if a else (),
                                           note=(a.note or "") if a else ""))
    for night in store.nights(day_id):
        reason = f": {night.reason}" if night.reason else ""
        entries.append(TranscriptEntry(role="inner", text=f"night {night_words(night.status)}{reason}",
                                       source="indicator"))
    status = "open" if day.closed_at is None else f"closed ({day.close_reason})"
    weights = "" if day.in_weights else " · not in the weights"
    title = f"Day {day.number} · {day.opened_at[:10]} · {plural(len(turns), 'turn')} · {status}{weights}"
    return DayView(title, entries, index)


class HitList(OptionList):
    """Search results: ``day N · kind`` and the snippet with the matched words highlighted."""

    class Chosen(Message):
        def __init__(self, hit: Hit) -> None:
            super().__init__()
            self.hit = hit

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.hits: list[Hit] = []

    def show(self, hits: list[Hit], query: str) -> None:
        self.hits = list(hits)
        if not hits:
            self.set_options([Option(Content(f"nothing found for {one_line(query, 60)}"), disabled=True)])
            return
        self.set_options([Option(self._prompt(h)) for h in hits])
        self.highlighted = 0

    @staticmethod
    def _prompt(hit: Hit) -> Content:
        parts: list = [(f"day {hit.day_number:>4d} {hit.kind:<9}", "bold"), "  "]
        pos = 0
        for start, end in hit.spans:
            parts.append(one_line(hit.snippet[pos:start]))
            parts.append((one_line(hit.snippet[start:end]), "bold reverse"))
            pos = end
        parts.append(one_line(hit.snippet[pos:]))
        return Content.assemble(*parts)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.hits):
            self.post_message(self.Chosen(self.hits[event.option_index]))


class DayScreen(Screen):
    """One past day, whole. ``focus``: ``(kind, id)`` of a search hit to put the cursor on."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"),
                Binding("m", "morning", "Morning report")]
    DEFAULT_CSS = """
    DayScreen #day-title { height: auto; padding: 0 1; text-style: bold; }
    DayScreen TranscriptLine.-src-candidate { padding-left: 6; color: $text-muted; }
    """

    class Loaded(Message):
        def __init__(self, view: DayView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, home: Home, store: Store, day_id: int, focus: tuple[str, int] | None = None) -> None:
        super().__init__()
        self.home, self.store, self.day_id, self.focus_target = home, store, day_id, focus
        self.day_view: DayView | None = None

    def compose(self) -> ComposeResult:
        yield Static(Content("loading…"), id="day-title")
        yield TranscriptView(id="day-transcript")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TranscriptView).focus()
        self._load()

    def action_morning(self) -> None:
        """This day's night, as the morning report showed it."""
        opener = getattr(self.app, "open_morning_report", None)
        if opener is not None:
            opener(day_id=self.day_id)

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            settings = self.home.load_settings()
            names = {"owner": settings.companion.owner, "companion": settings.companion.name}
        except Exception:  # a bad settings file must not hide the day
            names = {}
        self.post_message(self.Loaded(day_entries(self.store, self.day_id, **names)))

    @on(Loaded)
    def _show(self, message: Loaded) -> None:
        self.day_view = message.view
        self.query_one("#day-title", Static).update(Content(display_safe(message.view.title)))
        view = self.query_one(TranscriptView)
        view.set_lines(message.view.entries)
        if self.focus_target is not None and self.focus_target in message.view.index:
            view.cursor = message.view.index[self.focus_target]
            self.call_after_refresh(lambda: view.scroll_to_widget(view.selected_widget, animate=False)
                                    if view.selected_widget else None)


class DaysScreen(Screen):
    """The list of days beside a preview; ``/`` searches every day; enter opens a day or a hit."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "search", "Search"),
    ]
    DEFAULT_CSS = """
    DaysScreen #days-search { dock: top; }
    DaysScreen #days-body { height: 1fr; }
    DaysScreen #days-list, DaysScreen #days-hits { width: 3fr; height: 1fr; }
    DaysScreen #days-preview-pane { width: 2fr; height: 1fr; border-left: solid $primary; padding: 0 1; }
    DaysScreen .-hidden { display: none; }
    """

    class DaysLoaded(Message):
        def __init__(self, days: list[DaySummary]) -> None:
            super().__init__()
            self.days = days

    class PreviewLoaded(Message):
        def __init__(self, number: int, text: str) -> None:
            super().__init__()
            self.number, self.text = number, text

    class HitsFound(Message):
        def __init__(self, query: str, hits: list[Hit]) -> None:
            super().__init__()
            self.query, self.hits = query, hits

    def __init__(self, home: Home, store: Store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.days: list[DaySummary] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search every day (plain words)", id="days-search")
        with Horizontal(id="days-body"):
            yield DayList(id="days-list")
            yield HitList(id="days-hits")
            with VerticalScroll(id="days-preview-pane"):
                yield Static(Content("no day yet"), id="days-preview")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(HitList).add_class("-hidden")
        self.query_one(DayList).focus()
        self._load_days()

    # -- the list and its preview -------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="days")
    def _load_days(self) -> None:
        self.post_message(self.DaysLoaded(list(reversed(self.store.list_days()))))

    @on(DaysLoaded)
    def _fill(self, message: DaysLoaded) -> None:
        self.days = message.days
        day_list = self.query_one(DayList)
        day_list.set_rows([summary_row(d) for d in self.days])
        if self.days:
            day_list.highlighted = 0
        else:
            self.query_one("#days-preview", Static).update(Content("The companion has not lived a day yet."))

    @on(DayList.Highlighted)
    def _highlighted(self, event: DayList.Highlighted) -> None:
        self._preview(self.days[event.index])

    @work(thread=True, exclusive=True, group="preview")
    def _preview(self, day: DaySummary) -> None:
        row = summary_row(day)
        lines = [f"Day {day.number} · {day.opened_at[:16].replace('T', ' ')}",
                 f"{plural(day.turns, 'turn')} · {day.tokens:,} of {day.budget_tokens:,} tokens ({row.fullness:.0%} full)",
                 f"{day.ratings} rated · {day.corrections} corrected · night: {row.night or 'open'}"]
        if not day.in_weights:
            lines.append("Not in the weights: a restore went back to before this day.")
        lines.append("")
        for t in self.store.turns(day.id)[:40]:
            lines.append(f"{t.role}: {one_line(t.text, 200)}")
        self.post_message(self.PreviewLoaded(day.number, "\n".join(lines)))

    @on(PreviewLoaded)
    def _show_preview(self, message: PreviewLoaded) -> None:
        self.query_one("#days-preview", Static).update(Content(display_safe(message.text)))

    @on(DayList.Selected)
    def _open_day(self, event: DayList.Selected) -> None:
        self.app.push_screen(DayScreen(self.home, self.store, self.days[event.index].id))

    # -- search -------------------------------------------------------------------------------------

    def action_search(self) -> None:
        self.query_one("#days-search", Input).focus()

    def action_back(self) -> None:
        search = self.query_one("#days-search", Input)
        if search.value:
            search.value = ""  # first escape clears the search, the second leaves
            self.query_one(DayList).focus()
        else:
            self.app.pop_screen()

    @on(Input.Changed, "#days-search")
    def _search_changed(self, event: Input.Changed) -> None:
        text = event.value
        searching = bool(text.strip())
        self.query_one(DayList).set_class(searching, "-hidden")
        self.query_one(HitList).set_class(not searching, "-hidden")
        if searching:
            self._search(text)

    @on(Input.Submitted, "#days-search")
    def _search_submitted(self) -> None:
        if self.query_one("#days-search", Input).value.strip():
            self.query_one(HitList).focus()

    @work(thread=True, exclusive=True, group="search")
    def _search(self, text: str) -> None:
        try:
            hits = self.store.search(text, limit=100, prefix=True)
        except StoreError:
            hits = []
        self.post_message(self.HitsFound(text, hits))

    @on(HitsFound)
    def _show_hits(self, message: HitsFound) -> None:
        if message.query == self.query_one("#days-search", Input).value:
            self.query_one(HitList).show(message.hits, message.query)

    @on(HitList.Chosen)
    def _jump(self, message: HitList.Chosen) -> None:
        hit = message.hit
        self.app.push_screen(DayScreen(self.home, self.store, hit.day_id, focus=(hit.kind, hit.id)))
