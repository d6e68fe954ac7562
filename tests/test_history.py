"""Past days: the owner browses the days, opens one and sees all of it, searches and jumps to a hit.

Days are lived through the real DaySession with ``live_day`` (also used by the book and restore
tests); the screen runs in a real Textual app.
"""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input

from companion.day import scripted as scripted_day
from companion.history.cli import cmd_days
from companion.screens.days import DayScreen, DaysScreen, HitList
from companion.day.scripted import Exchange, ScriptedDay
from companion.store import Store
from companion.widgets.lists import DayList
from companion.widgets.transcript import TranscriptView

GREETING = "Good morning, Scout. Trey is here."
INDICATOR = "It is early morning; the day is young."


def live_day(home, store: Store, exchanges: list[Exchange], *, dream: str | None = None, night: str | None = None,
             checkpoint_id: int | None = None, block_size: int = 256, close: bool = True):
    """Live one day through the real DaySession (`companion.day.scripted`; block 256 makes a 192-token
    day), then record its dream and night as a night would."""
    day, _ = scripted_day.live_day(home, store, exchanges, block_size=block_size, checkpoint_id=checkpoint_id,
                                   close=close)
    if close:
        if dream is not None:
            store.add_dream(day.id, dream)
        if night is not None:
            n = store.start_night(day.id)
            store.finish_night(n.id, night, reason="probe perplexity worsened" if night == "rolled_back" else None)
    return day


THREE_DAYS = [
    dict(exchanges=[
        Exchange("Do you like the sea?", ("I love the sea.", "Not much."), pick=0, rate={0: 4, 1: 1},
                 tags=("keep",), note="lovely"),
        Exchange("What colour is it?", ("Green.", "Blue, mostly."), correct=(0, "Grey-blue in winter.")),
    ], dream="I swam among lanterns.", night="accepted"),
    dict(exchanges=[
        Exchange('Tell me about AND OR NOT "quotes"*', ("Operators?",), write="They are just words."),
    ], night="rolled_back"),
    dict(exchanges=[
        Exchange("Where is the lighthouse?", ("On the cliff.", "Far away."), pick=1),
    ], close=False),
]
DAY_ONE_TURNS = 9  # the greeting, two exchanges, the three indicators of the quarters begun, good night


def live_three_days(home, store: Store) -> list:
    return [live_day(home, store, **spec) for spec in THREE_DAYS]


class Host(App):
    def __init__(self, screen) -> None:
        super().__init__()
        self._first = screen

    def on_mount(self) -> None:
        self.push_screen(self._first)


async def _settle(pilot, times: int = 4) -> None:
    for _ in range(times):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def test_browse_days_preview_and_open_a_day(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        app = Host(DaysScreen(tiny_home, store))
        async with app.run_test(size=(140, 40)) as pilot:
            await _settle(pilot)
            rows = app.screen.query_one(DayList).rows
            assert [r.number for r in rows] == [3, 2, 1]  # newest first
            assert rows[2].night == "accepted" and rows[1].night == "rolled back" and rows[0].night is None
            assert (rows[2].ratings, rows[2].corrections, rows[2].turns) == (2, 1, DAY_ONE_TURNS)
            preview = str(app.screen.query_one("#days-preview").render())
            assert "Day 3" in preview and "Where is the lighthouse?" in preview

            await pilot.press("down", "down")
            await _settle(pilot)
            preview = str(app.screen.query_one("#days-preview").render())
            assert "Day 1" in preview and "night: accepted" in preview

            await pilot.press("enter")
            await _settle(pilot)
            assert isinstance(app.screen, DayScreen)
            shown = [line.plain_text() for line in app.screen.query_one(TranscriptView).lines]
            text = "\n".join(shown)
            for expected in (GREETING, INDICATOR, "Do you like the sea?", "✓ picked  I love the sea.",
                             "· passed over  Not much.", "★★★★", "★☆☆☆", "✎ corrected  Green.",
                             "Grey-blue in winter.", "keep", "✎ lovely", "I swam among lanterns.",
                             "night accepted"):
                assert expected in text, expected
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, DaysScreen)


async def test_search_jumps_to_the_turn_and_treats_fts_syntax_as_plain_text(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        app = Host(DaysScreen(tiny_home, store))
        async with app.run_test(size=(140, 40)) as pilot:
            await _settle(pilot)
            await pilot.press("slash")
            await pilot.press(*"lighthouse")
            await _settle(pilot)
            hits = app.screen.query_one(HitList)
            assert hits.display and not app.screen.query_one(DayList).display
            assert [(h.kind, h.day_number) for h in hits.hits] == [("turn", 3)]
            await pilot.press("enter")  # submit: focus goes to the hits
            await pilot.press("enter")  # open the hit
            await _settle(pilot)
            assert isinstance(app.screen, DayScreen)
            view = app.screen.query_one(TranscriptView)
            assert view.selected_widget is not None and "lighthouse" in view.selected_widget.text

            await pilot.press("escape")
            await pilot.pause()
            search = app.screen.query_one("#days-search", Input)
            search.value = 'AND OR NOT "quotes"*'
            await _settle(pilot)
            assert [h.day_number for h in app.screen.query_one(HitList).hits] == [2]
            search.value = '"(*'  # nothing searchable left: no error, nothing found
            await _settle(pilot)
            assert app.screen.query_one(HitList).hits == []


async def test_a_search_hit_in_a_passed_over_candidate_lands_on_its_line(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        [hit] = store.search("Far away", kinds=("candidate",))
        app = Host(DayScreen(tiny_home, store, hit.day_id, focus=(hit.kind, hit.id)))
        async with app.run_test(size=(140, 40)) as pilot:
            await _settle(pilot)
            line = app.screen.query_one(TranscriptView).selected_widget
            assert line is not None and line.text == "✓ picked  Far away."


def test_days_command_lists_and_searches(tiny_home, capsys):
    class Args:
        home, name, search = str(tiny_home.path), None, None

    with Store.open(tiny_home.store_path) as store:
        assert cmd_days(Args) == 0
        assert "has not lived a day yet" in capsys.readouterr().out
        live_three_days(tiny_home, store)
    assert cmd_days(Args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["1", out[1].split()[1], str(DAY_ONE_TURNS)] and out[1].rstrip().endswith("accepted")
    assert out[2].rstrip().endswith("rolled back") and out[3].rstrip().endswith("open")
    Args.search = 'NOT "quotes"*'
    assert cmd_days(Args) == 0
    assert "day    2" in capsys.readouterr().out


def test_a_past_day_shows_each_turn_once_with_what_was_chosen_passed_over_and_amended(tiny_home):
    """Finding 8: an inner line the model said is not also "passed over"; an amendment is shown."""
    from companion.screens.days import day_entries

    with Store.open(tiny_home.store_path) as store:
        scripted = ScriptedDay(tiny_home, store, block_size=256)
        lived = scripted.live(Exchange("Hi", ("Hello.", "Hey."), pick=0, inner="He seems glad."))
        scripted.session.amend_correction(lived.candidates[0].id, "Hello, Trey.")
        day = scripted.day
        texts = [e.text for e in day_entries(store, day.id).entries]
    assert sum("He seems glad." in t for t in texts) == 1  # said once, never also "passed over"
    assert "Hello, Trey." in texts and any(t.startswith("✎ amended 1×") and "Hello." in t for t in texts)
    assert any(t.startswith("✎ corrected  Hello.") for t in texts)  # the card is now the corrected one
    assert any(t.startswith("· passed over  Hey.") for t in texts)


async def test_a_multi_line_turn_is_one_entry_its_lines_under_the_first(tiny_home):
    view_lines = []

    class One(App):
        def compose(self):
            yield TranscriptView(id="t")

    app = One()
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(TranscriptView)
        view.add_line(1, "companion", "first line\nsecond line", "chosen", "Scout")
        await pilot.pause()
        view_lines = view.lines[0].plain_text().split("\n")
    assert view_lines[0].startswith("Scout  first line")
    assert view_lines[1] == " " * len("Scout  ") + "second line"
