"""The widgets, driven in a real Textual app (no mocks): what the owner sees, and what they post."""

from __future__ import annotations

import ast
import html
import math
import re
from pathlib import Path
from typing import Iterable

import pytest
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Sparkline

from companion.themes import DEFAULT_THEME, STYLESHEET_PATH, register_themes
from companion.widgets import (
    AnnotationEditor,
    CandidateDeck,
    CheckpointList,
    CheckpointRow,
    ConfirmScreen,
    DayGauge,
    DayList,
    DaySummaryRow,
    NightProgress,
    TextEditScreen,
    TranscriptEntry,
    TranscriptLine,
    TranscriptView,
    display_safe,
    parse_tags,
    stars_label,
)
from companion.widgets.gauge import QUARTER_MARK
from companion.widgets.night import format_duration

ROOT = Path(__file__).resolve().parent.parent


class WidgetApp(App):
    """Mounts the given widgets with the real stylesheet and records every message they post."""

    CSS_PATH = STYLESHEET_PATH

    def __init__(self, *widgets: Widget) -> None:
        super().__init__()
        self._widgets = widgets
        self.messages: list[Message] = []
        self.results: list[object] = []

    def compose(self) -> ComposeResult:
        yield from self._widgets

    def on_mount(self) -> None:
        register_themes(self)
        self.theme = DEFAULT_THEME

    def on_transcript_view_line_selected(self, message: TranscriptView.LineSelected) -> None:
        self.messages.append(message)

    def on_transcript_view_line_activated(self, message: TranscriptView.LineActivated) -> None:
        self.messages.append(message)

    def on_candidate_deck_highlighted(self, message: CandidateDeck.Highlighted) -> None:
        self.messages.append(message)

    def on_day_list_selected(self, message: DayList.Selected) -> None:
        self.messages.append(message)

    def on_day_list_highlighted(self, message: DayList.Highlighted) -> None:
        self.messages.append(message)

    def on_checkpoint_list_selected(self, message: CheckpointList.Selected) -> None:
        self.messages.append(message)

    def of(self, kind: type) -> list:
        return [m for m in self.messages if type(m) is kind]


def screen_text(app: App) -> str:
    """Everything on screen as plain text, read from the public SVG screenshot."""
    svg = app.export_screenshot()
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape("".join(texts)).replace("\xa0", " ")


# -- safe text ---------------------------------------------------------------------------------


def test_display_safe_makes_controls_visible() -> None:
    assert display_safe("\x1b[31mred") == "^[[31mred"
    assert display_safe("a\r\nb\tc") == "a\nb\tc"
    assert display_safe("x\ry\x00\x7f") == "x^My^@^?"
    assert display_safe("\u202eevil") == "<U+202E>evil"
    assert display_safe("\x9b") == "<U+009B>"
    assert display_safe("bad\udc80") == "bad\ufffd"
    assert display_safe(None) == "" and display_safe(42) == "42"
    assert display_safe("[bold]kept[/]") == "[bold]kept[/]"


# -- transcript --------------------------------------------------------------------------------


async def test_transcript_shows_markup_and_escapes_literally() -> None:
    view = TranscriptView()
    app = WidgetApp(view)
    async with app.run_test(size=(100, 40)) as pilot:
        markup = view.add_line(1, "owner", "[bold red]hi[/] and [/] and [link=x]y", "typed", "Ada")
        escape = view.add_line(1, "companion", "look \x1b[31mred\x1b[0m\x07 done", "chosen", "Mira")
        await pilot.pause()
        assert markup.render().plain == "Ada  [bold red]hi[/] and [/] and [link=x]y"
        assert "[bold red]hi[/]" in screen_text(app)
        shown = escape.render().plain
        assert shown == "Mira  look ^[[31mred^[[0m^G done"
        assert "^[[31mred" in screen_text(app)
        assert "\x1b" not in shown
        assert markup.text.startswith("[bold red]")  # the stored text is untouched
        assert markup.has_class("-owner") and escape.has_class("-companion")
        assert escape.has_class("-src-chosen")


async def test_transcript_roles_labels_and_indicators() -> None:
    view = TranscriptView()
    app = WidgetApp(view)
    async with app.run_test(size=(100, 40)) as pilot:
        view.set_lines(
            [
                {"role": "inner", "text": "Good morning, Mira.", "source": "greeting", "turn_id": None},
                {"role": "inner", "text": "The sun is high.", "source": "indicator"},
                {"role": "owner", "text": "hello", "speaker": "Ada", "turn_id": 1, "source": "typed"},
                {"role": "companion", "text": "hi Ada", "speaker": "Mira", "turn_id": 1, "source": "chosen"},
                {"role": "inner", "text": "she seems glad", "speaker": "Mira", "turn_id": 1, "source": "model_inner"},
            ]
        )
        await pilot.pause()
        lines = view.lines
        assert [line.role for line in lines] == ["inner", "inner", "owner", "companion", "inner"]
        assert lines[0].has_class("-indicator") and lines[1].has_class("-indicator")
        assert lines[0].render().plain == "Good morning, Mira."  # no name label on time lines
        assert lines[4].render().plain == "inner  she seems glad"
        assert lines[4].has_class("-inner")
        assert lines[0].styles.text_align == "center"
        assert lines[4].styles.text_style.italic


async def test_transcript_cursor_selection_and_messages() -> None:
    view = TranscriptView()
    app = WidgetApp(view)
    async with app.run_test(size=(100, 40)) as pilot:
        view.add_line(1, "owner", "first", "typed", "Ada")
        view.add_line(1, "companion", "second", "chosen", "Mira")
        view.add_line(1, "inner", "third", "model_inner", "Mira")
        await pilot.pause()
        view.focus()
        assert view.selected_line is None
        await pilot.press("up")  # from no cursor: the last line
        assert view.selected_line == (1, "inner", "third")
        await pilot.press("k", "k")
        assert view.selected_line == (1, "owner", "first")
        await pilot.press("k")  # clamps at the first line
        assert view.cursor == 0
        await pilot.press("j")
        turn_id, role, text = view.selected_line
        assert (turn_id, role, text) == (1, "companion", "second")
        assert view.lines[1].has_class("-highlight") and not view.lines[0].has_class("-highlight")
        await pilot.press("enter")
        await pilot.pause()
        selected = app.of(TranscriptView.LineSelected)
        assert [m.selected.text for m in selected] == ["third", "second", "first", "second"]
        activated = app.of(TranscriptView.LineActivated)
        assert len(activated) == 1 and activated[0].selected.role == "companion"


async def test_transcript_jumps_and_lines_added_before_mount() -> None:
    view = TranscriptView()
    view.add_line(1, "owner", "added before mount", "typed", "Ada")
    deck = CandidateDeck()
    deck.add_card("early card", finished=True)
    app = WidgetApp(view, deck)
    async with app.run_test(size=(100, 40)) as pilot:
        view.set_lines([TranscriptEntry("owner", "one", speaker="Ada", turn_id=1),
                        TranscriptEntry("companion", "two", speaker="Mira", turn_id=1)])
        await pilot.pause()
        assert [line.text for line in view.lines] == ["one", "two"]
        assert len(view.query(TranscriptLine)) == 2
        view.focus()
        await pilot.press("G")
        assert view.selected_line == (1, "companion", "two")
        await pilot.press("g")
        assert view.selected_line == (1, "owner", "one")
        assert "early card" in screen_text(app) and deck.cards[0].number == 1


async def test_transcript_annotation_badge() -> None:
    view = TranscriptView()
    app = WidgetApp(view)
    async with app.run_test(size=(100, 40)) as pilot:
        view.add_line(7, "companion", "a reply", "chosen", "Mira")
        inner = view.add_line(7, "inner", "a thought", "model_inner", "Mira")
        await pilot.pause()
        assert view.set_annotation(7, ["keep", "insightful"], "good [b]one[/b]") == 1
        await pilot.pause()
        shown = inner.render().plain.replace("\u00a0", " ")
        assert shown == "inner  a thought\n keep   insightful  ✎ good [b]one[/b]"
        assert " keep " in screen_text(app) and "✎ good [b]one[/b]" in screen_text(app)
        assert inner.has_class("-annotated")
        assert not view.lines[0].has_class("-annotated")


async def test_transcript_follows_the_end_unless_scrolled_up() -> None:
    view = TranscriptView()
    app = WidgetApp(view)
    async with app.run_test(size=(100, 20)) as pilot:
        for n in range(40):
            view.add_line(n, "owner", f"line {n}", "typed", "Ada")
        await pilot.pause()
        await pilot.pause()
        assert view.max_scroll_y > 0
        assert view.scroll_y == view.max_scroll_y
        view.scroll_home(animate=False)
        await pilot.pause()
        view.add_line(99, "owner", "late line", "typed", "Ada")
        await pilot.pause()
        await pilot.pause()
        assert view.scroll_y == 0  # the owner scrolled up: stay where they are
        view.clear()
        await pilot.pause()
        assert view.lines == [] and view.selected_line is None


# -- candidates --------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "columns"), [(160, 3), (100, 2), (60, 1)])
async def test_deck_columns_follow_width(width: int, columns: int) -> None:
    deck = CandidateDeck()
    app = WidgetApp(deck)
    async with app.run_test(size=(width, 40)) as pilot:
        deck.start_round(3)
        for card in deck.cards:
            card.set_text("a candidate reply " * 3)
            card.finish()
        await pilot.pause()
        await pilot.pause()
        assert deck.columns == columns
        assert deck.styles.grid_size_columns == columns
        xs = sorted({card.region.x for card in deck.cards})
        assert len(xs) == columns  # cards really sit side by side


async def test_deck_resizes_columns() -> None:
    deck = CandidateDeck()
    app = WidgetApp(deck)
    async with app.run_test(size=(160, 40)) as pilot:
        deck.start_round(3)
        await pilot.pause()
        assert deck.columns == 3
        await pilot.resize_terminal(70, 40)
        await pilot.pause()
        await pilot.pause()
        assert deck.columns == 1
        assert len({card.region.x for card in deck.cards}) == 1


async def test_card_streams_rates_and_marks() -> None:
    deck = CandidateDeck()
    app = WidgetApp(deck)
    async with app.run_test(size=(100, 40)) as pilot:
        first, second, third = deck.start_round(3, candidate_ids=[10, 11, 12])
        first.append_text("Hel")
        first.append_text("lo [i]there[/i]")
        await pilot.pause()
        assert first.has_class("-streaming")
        assert "Hello [i]there[/i]▌" in first.render().plain
        assert "☆ unrated" in first.render().plain
        first.finish()
        first.set_rating(3)
        second.finish(stopped=True)
        third.finish()
        third.set_marks(chosen=True, corrected=True)
        second.set_marks(passed_over=True)
        await pilot.pause()
        assert first.has_class("-finished") and first.has_class("-rated")
        assert "★★★☆" in first.render().plain and "unrated" not in first.render().plain
        assert second.has_class("-stopped") and "(stopped)" in second.render().plain
        assert "passed over" in second.render().plain and second.has_class("-passed-over")
        assert "chosen" in third.render().plain and "corrected" in third.render().plain
        assert third.has_class("-chosen") and third.has_class("-corrected")
        first.set_rating(None)
        assert "☆ unrated" in first.render().plain and not first.has_class("-rated")
        with pytest.raises(ValueError):
            first.set_rating(5)
        with pytest.raises(ValueError):
            first.set_rating(0)
        assert deck.card_by_id(11) is second
        third.set_rating(4)
        await pilot.pause()
        assert "★★★★" in screen_text(app)


def test_stars_label() -> None:
    assert stars_label(None) == "☆ unrated"
    assert stars_label(1) == "★☆☆☆"
    assert stars_label(4) == "★★★★"


async def test_deck_rounds_keep_earlier_cards_and_highlight() -> None:
    deck = CandidateDeck()
    app = WidgetApp(deck)
    async with app.run_test(size=(160, 40)) as pilot:
        round_one = deck.start_round(3)
        for card in round_one:
            card.set_text("first round")
            card.finish()
        await pilot.pause()
        assert deck.highlighted_index == 0
        round_two = deck.start_round(3)
        await pilot.pause()
        assert [c.number for c in deck.cards] == [1, 2, 3, 4, 5, 6]
        assert all(c.round_no == 1 for c in round_one) and all(c.round_no == 2 for c in round_two)
        assert "round 2" in round_two[0].render().plain and "round" not in round_one[0].header().plain
        assert round_two[0].has_class("-later-round")
        assert all(c.text == "first round" for c in round_one)  # never overwritten
        deck.focus()
        await pilot.press("right", "right")
        assert deck.highlighted_index == 2
        await pilot.press("down")  # one row = 3 columns
        assert deck.highlighted_index == 5
        await pilot.press("right")  # clamps at the last card
        assert deck.highlighted_index == 5
        await pilot.press("left", "up")
        assert deck.highlighted_index == 1
        assert deck.highlighted_card is deck.cards[1] and deck.cards[1].has_class("-highlight")
        await pilot.pause()
        indexes = [m.index for m in app.of(CandidateDeck.Highlighted)]
        assert indexes == [0, 1, 2, 5, 4, 1]
        deck.clear()
        await pilot.pause()
        assert deck.cards == [] and deck.highlighted_index is None


# -- gauge -------------------------------------------------------------------------------------


async def test_gauge_marks_usage_and_classes() -> None:
    gauge = DayGauge()
    app = WidgetApp(gauge)
    async with app.run_test(size=(100, 40)) as pilot:
        gauge.update_usage(100, 800)
        await pilot.pause()
        bar, label = gauge.render().plain.split("\n")
        assert bar.count(QUARTER_MARK) == 3
        width = len(bar)
        assert width == gauge.content_size.width
        assert [i for i, c in enumerate(bar) if c == QUARTER_MARK] == [
            round(width / 4),
            round(width / 2),
            round(width * 3 / 4),
        ]
        assert label == "100 / 800 tokens · 12%"
        assert gauge.quarters_passed == 0
        assert not gauge.has_class("-late")
        assert QUARTER_MARK in screen_text(app) and "100 / 800 tokens" in screen_text(app)

        gauge.update_usage(640, 800)  # 80%
        await pilot.pause()
        assert gauge.quarters_passed == 3
        assert gauge.has_class("-late") and not gauge.has_class("-full")
        assert "80%" in gauge.render().plain

        gauge.update_usage(800, 800)
        await pilot.pause()
        assert gauge.quarters_passed == 4 and gauge.has_class("-full")

        gauge.update_usage(0, 0)
        await pilot.pause()
        assert gauge.quarters_passed == 0 and not gauge.has_class("-late")
        assert "no budget" in gauge.render().plain


# -- annotation editor -------------------------------------------------------------------------


async def test_annotation_editor_keyboard_only() -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        editor = AnnotationEditor("she seems glad", tags=["off", "Mood"], note="")
        app.push_screen(editor, app.results.append)
        await pilot.pause()
        assert isinstance(app.focused, Checkbox)  # 'keep' first
        await pilot.press("space")  # keep on
        await pilot.press("tab", "tab", "enter")  # insightful skipped, off toggled off
        await pilot.press("tab")  # the free tags input, prefilled "mood"
        await pilot.press("end", *", Warm ,warm, ,", "tab")
        await pilot.press(*"a good line")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [(["keep", "mood", "warm"], "a good line")]


async def test_annotation_editor_save_button_and_escape() -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.push_screen(AnnotationEditor("x", tags=["insightful"], note="old"), app.results.append)
        await pilot.pause()
        await pilot.press("tab", "tab", "tab", "tab", "tab")  # keep, insightful, off, tags, note
        assert app.focused.id == "annotation-save"
        await pilot.press("enter")
        await pilot.pause()
        app.push_screen(AnnotationEditor("x", tags=["keep"]), app.results.append)
        await pilot.pause()
        await pilot.press("space", "escape")
        await pilot.pause()
        assert app.results == [(["insightful"], "old"), None]


def test_parse_tags() -> None:
    assert parse_tags(" Keep,, very   Good ,keep,") == ["keep", "very good"]
    assert parse_tags("a\x1bb") == ["a^[b"]


# -- prompts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "expected"), [(("y",), True), (("n",), False), (("escape",), False)])
async def test_confirm_screen_keys(keys: tuple[str, ...], expected: bool) -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.push_screen(ConfirmScreen("Restore checkpoint [b]7[/b]?"), app.results.append)
        await pilot.pause()
        assert "Restore checkpoint [b]7[/b]?" in screen_text(app)
        await pilot.press(*keys)
        await pilot.pause()
        assert app.results == [expected]


async def test_confirm_screen_enter_defaults_to_no() -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.push_screen(ConfirmScreen("End the day now?"), app.results.append)
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [False]


async def test_text_edit_screen_saves_and_cancels() -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.push_screen(TextEditScreen("I think so", title="Correct"), app.results.append)
        await pilot.pause()
        await pilot.press(*" too.", "ctrl+s")
        await pilot.pause()
        app.push_screen(TextEditScreen("draft"), app.results.append)
        await pilot.pause()
        await pilot.press("x", "escape")
        await pilot.pause()
        assert app.results == ["I think so too.", None]


async def test_text_edit_screen_refuses_oversized_and_empty_text() -> None:
    app = WidgetApp()
    async with app.run_test(size=(100, 40)) as pilot:
        screen = TextEditScreen("x" * 20, max_chars=10)
        app.push_screen(screen, app.results.append)
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [] and app.screen is screen
        assert "Too long" in screen_text(app)
        screen.query_one("TextArea").text = "   "
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == [] and "Nothing written" in screen_text(app)
        screen.query_one("TextArea").text = "short"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.results == ["short"]


# -- night -------------------------------------------------------------------------------------


async def test_night_progress_shows_phase_steps_and_losses() -> None:
    night = NightProgress(history=5)
    app = WidgetApp(night)
    async with app.run_test(size=(100, 40)) as pilot:
        night.update_progress("dreaming", 0, 0, None, None)
        await pilot.pause()
        assert night.has_class("-phase-dreaming")
        assert "dreaming" in screen_text(app)
        for step in range(1, 8):
            night.update_progress("training", step, 100, 3.0 - step * 0.1, 125.0)
        await pilot.pause()
        assert night.has_class("-phase-training") and not night.has_class("-phase-dreaming")
        text = screen_text(app)
        assert "step 7 / 100" in text and "loss 2.3000" in text
        assert "about 2:05 left" in text and "elapsed 0:00" in text
        assert len(night.query_one(Sparkline).data) == 5  # last N losses only
        night.update_progress("training", 8, 100, math.nan, None)
        await pilot.pause()
        assert night.has_class("-bad-loss") and len(night.losses) == 5
        night.finish("rolled back: the loss went NaN", ok=False)
        await pilot.pause()
        assert night.has_class("-failed") and "rolled back" in screen_text(app)


def test_format_duration() -> None:
    assert format_duration(None) == "—"
    assert format_duration(65) == "1:05"
    assert format_duration(3723) == "1:02:03"
    assert format_duration(math.inf) == "—"


# -- lists -------------------------------------------------------------------------------------


async def test_day_list_rows_and_messages() -> None:
    rows = [
        DaySummaryRow(1, "2025-03-01", turns=12, tokens=600, budget=768, ratings=5, corrections=2, night="accepted"),
        DaySummaryRow(2, "2025-03-02", turns=3, tokens=100, budget=768),
    ]
    days = DayList(rows)
    app = WidgetApp(days)
    async with app.run_test(size=(120, 40)) as pilot:
        days.focus()
        await pilot.pause()
        text = screen_text(app)
        assert "day    1" in text and "2025-03-01" in text and "78%" in text and "accepted" in text
        assert "open" in text
        await pilot.press("down", "enter")
        await pilot.pause()
        selected = app.of(DayList.Selected)
        assert len(selected) == 1 and selected[0].row is rows[1]
        assert app.of(DayList.Highlighted)[-1].row is rows[1]
        assert days.highlighted_row is rows[1]
        days.update_row(1, DaySummaryRow(2, "2025-03-02", turns=3, tokens=100, budget=768, night="rolled back"))
        await pilot.pause()
        assert "rolled back" in screen_text(app)


async def test_checkpoint_list_marks_missing_files() -> None:
    rows = [
        CheckpointRow("ck-0003", "night", day=3, created="2025-03-03 23:10", step=1200, probe_ppl=41.2,
                      size_bytes=52_400_000, current=True),
        CheckpointRow("ck-0002", "before growth [x]", day=2, step=900, probe_ppl=None, size_bytes=None, missing=True),
    ]
    checkpoints = CheckpointList(rows)
    app = WidgetApp(checkpoints)
    async with app.run_test(size=(140, 40)) as pilot:
        checkpoints.focus()
        await pilot.pause()
        text = screen_text(app)
        assert "ck-0003" in text and "52.4 MB" in text and "41.20" in text and "●" in text
        assert "before growth [x]" in text and "missing" in text
        await pilot.press("down", "enter")
        await pilot.pause()
        assert [m.row for m in app.of(CheckpointList.Selected)] == [rows[1]]


# -- boundaries --------------------------------------------------------------------------------


@pytest.mark.parametrize("package", ["widgets", "themes"])
def test_package_imports_no_torch_companion_or_model(package: str) -> None:
    """Widgets and themes are leaves: torch, the network and the rest of the companion stay out (they
    may import each other, as `companion.widgets` and `companion.themes`)."""
    allowed = ("companion.widgets", "companion.themes")
    for path in (ROOT / package).glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: Iterable[str] = ()
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] != "torch", f"{path.name} imports {name}"
                if name.split(".")[0] == "companion":
                    assert name.startswith(allowed), f"{path.name} imports {name}"

