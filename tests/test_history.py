"""Past days: the owner browses the days, opens one and sees all of it, searches and jumps to a hit.

Days are scripted straight into a real store with ``live_day`` (also used by the book and restore
tests); the screen runs in a real Textual app.
"""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input

from companion.history.cli import cmd_days
from companion.screens.days import DayScreen, DaysScreen, HitList
from companion.store import Store
from companion.widgets.lists import DayList
from companion.widgets.transcript import TranscriptView

GREETING = "Good morning, Scout. Trey is here."
INDICATOR = "It is early morning; the day is young."


def live_day(store: Store, exchanges: list[dict], *, dream: str | None = None, night: str | None = None,
             checkpoint_id: int | None = None, budget: int = 192, close: bool = True):
    """Live one day through the store as the day app would. Each exchange is
    ``{"say": owner text, "options": [candidates], "reply": ("pick", i) | ("correction", (i, text)) |
    ("written", text), "rate": {i: stars}, "note": annotation on the reply}``."""
    day = store.open_day(budget, checkpoint_id)
    store.add_turn(day.id, "inner", GREETING, "greeting", tokens=12)
    store.add_turn(day.id, "inner", INDICATOR, "indicator", tokens=10)
    for ex in exchanges:
        prompt = store.add_turn(day.id, "owner", ex["say"], "typed", tokens=6)
        cands = store.add_candidates(day.id, prompt.id, ex["options"], checkpoint_id=checkpoint_id)
        for i, stars in ex.get("rate", {}).items():
            store.rate(cands[i].id, stars)
        kind, arg = ex["reply"]
        if kind == "pick":
            reply = store.record_reply(day.id, prompt.id, "pick", candidate_id=cands[arg].id, tokens=6)
        elif kind == "correction":
            i, text = arg
            reply = store.record_reply(day.id, prompt.id, "correction", text, candidate_id=cands[i].id, tokens=6)
        else:
            reply = store.record_reply(day.id, prompt.id, "written", arg, tokens=6)
        if "note" in ex:
            store.annotate(turn_id=reply.turn.id, tags=("keep",), note=ex["note"])
    if close:
        store.close_day(day.id, "goodnight")
        if dream is not None:
            store.add_dream(day.id, dream)
        if night is not None:
            n = store.start_night(day.id)
            store.finish_night(n.id, night, reason="probe perplexity worsened" if night == "rolled_back" else None)
    return day


THREE_DAYS = [
    dict(exchanges=[
        {"say": "Do you like the sea?", "options": ["I love the sea.", "Not much."], "reply": ("pick", 0),
         "rate": {0: 4, 1: 1}, "note": "lovely"},
        {"say": "What colour is it?", "options": ["Green.", "Blue, mostly."],
         "reply": ("correction", (0, "Grey-blue in winter."))},
    ], dream="I swam among lanterns.", night="accepted"),
    dict(exchanges=[
        {"say": "Tell me about AND OR NOT \"quotes\"*", "options": ["Operators?"], "reply": ("written", "They are just words.")},
    ], night="rolled_back"),
    dict(exchanges=[
        {"say": "Where is the lighthouse?", "options": ["On the cliff.", "Far away."], "reply": ("pick", 1)},
    ], close=False),
]


def live_three_days(store: Store) -> list:
    return [live_day(store, **spec) for spec in THREE_DAYS]


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
        live_three_days(store)
        app = Host(DaysScreen(tiny_home, store))
        async with app.run_test(size=(140, 40)) as pilot:
            await _settle(pilot)
            rows = app.screen.query_one(DayList).rows
            assert [r.number for r in rows] == [3, 2, 1]  # newest first
            assert rows[2].night == "accepted" and rows[1].night == "rolled back" and rows[0].night is None
            assert (rows[2].ratings, rows[2].corrections, rows[2].turns) == (2, 1, 6)
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
        live_three_days(store)
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
        live_three_days(store)
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
        live_three_days(store)
    assert cmd_days(Args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:3] == ["1", out[1].split()[1], "6"] and out[1].rstrip().endswith("accepted")
    assert out[2].rstrip().endswith("rolled back") and out[3].rstrip().endswith("open")
    Args.search = 'NOT "quotes"*'
    assert cmd_days(Args) == 0
    assert "day    2" in capsys.readouterr().out


def test_a_past_day_shows_each_turn_once_with_what_was_chosen_passed_over_and_amended(tiny_home):
    """Finding 8: an inner line the model said is not also "passed over"; an amendment is shown."""
    from companion.screens.days import day_entries

    with Store.open(tiny_home.store_path) as store:
        day = live_day(store, [{"say": "Hi", "options": ["Hello.", "Hey."], "reply": ("pick", 0)}], close=False)
        turns = store.turns(day.id)
        [cand] = store.add_candidates(day.id, turns[-1].id, ["He seems glad."], role="inner")
        store.add_turn(day.id, "inner", "He seems glad.", "model_inner", candidate_id=cand.id, tokens=6)
        reply = [t for t in turns if t.role == "companion"][0]
        options = store.candidates(prompt_turn_id=reply.id - 1) or store.candidates(day.id)
        store.amend_reply(reply.id, "correction", "Hello, Trey.", candidate_id=options[0].id, tokens=6)
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
