"""The night inside the app: good night hands the day to the trainer thread, the morning begins the
next day on the night's weights, and a quit mid-night resumes at the next start."""

from __future__ import annotations

import html

import pytest

from companion.screens.night import NightScreen
from companion.store import Store
from tests.test_app import app_for, quick, ready, send, until

QUICK_NIGHT = {"night.batch_tokens": "768", "night.learning_rate": "2e-3", "night.replay.tokens": "800",
               "night.day.tokens": "1500", "night.preferences.tokens": "2500"}


@pytest.fixture()
def home(tiny_home):
    quick(tiny_home, **QUICK_NIGHT)
    return tiny_home


pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def live_a_day_and_say_good_night(pilot):
    chat = await ready(pilot)
    await send(pilot, chat, "What is my name?")
    await pilot.press("escape", "1")
    await until(pilot, lambda: any(line.source == "chosen" for line in chat.transcript.lines))
    await pilot.press("ctrl+n")
    await until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
    await pilot.press("y")
    return chat


async def test_good_night_runs_the_night_and_the_morning_begins_the_next_day(home):
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await live_a_day_and_say_good_night(pilot)
        await until(pilot, lambda: isinstance(app.screen, NightScreen))
        night = app.screen
        await until(pilot, lambda: night.finished, timeout=120)
        await until(pilot, lambda: chat.session is not None and chat.session.day.number == 2, timeout=30)
        assert night.report.status in ("accepted", "rolled_back")
        screen_text = html.unescape(app.export_screenshot()).replace("\xa0", " ")
        assert "The night of day 1" in screen_text
        with Store.open(home.store_path) as store:
            [record] = store.nights()
            current = store.latest_checkpoint()
        assert record.status == night.report.status
        if record.status == "accepted":  # the next day lives on the night's weights
            await until(pilot, lambda: app.engine.checkpoint_id == record.post_checkpoint_id, timeout=30)
            assert chat.session.checkpoint_id == record.post_checkpoint_id == current.id
        await pilot.press("escape")  # back to the day from the morning report
        await until(pilot, lambda: app.screen is chat)


async def test_the_night_can_be_left_and_found_again_and_its_morning_report_stays_reachable(home):
    """Finding 3: leaving the night screen loses nothing; the morning opens by itself when the night
    ends; F5 and the past day (m) bring the report back. Amending the day during its night is refused."""
    quick(home, **{"night.steps": "40"})
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await live_a_day_and_say_good_night(pilot)
        await until(pilot, lambda: isinstance(app.screen, NightScreen))
        night = app.screen
        await pilot.press("escape")  # leave the night while it runs (a quick night may end first)
        await until(pilot, lambda: app.screen is chat or night.finished)
        left_running = app.screen is chat and not night.finished
        if left_running:
            await pilot.press("escape", "2")  # to the cards: picking another card now is refused, saying why
            await pilot.pause(0.1)
            assert any("night has it" in n.message for n in app.notices) or night.finished
        # The morning report opens by itself when the night ends, though the owner had left it.
        await until(pilot, lambda: night.finished, timeout=150)
        if left_running:
            await until(pilot, lambda: app.screen is night)
        else:
            await pilot.press("f5")
            await until(pilot, lambda: app.screen is night)
        assert night.query_one("MorningReport").display
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is chat)
        await pilot.press("f5")  # the report is still there
        await until(pilot, lambda: app.screen is night and night.has_class("-morning"))
        await pilot.press("escape")
        await until(pilot, lambda: chat.session is not None and chat.session.day.number == 2, timeout=30)
        # Later, from past days: day 1, then m for its morning report.
        await pilot.press("f2")
        await until(pilot, lambda: type(app.screen).__name__ == "DaysScreen" and len(app.screen.days) == 2)
        await pilot.press("down", "enter")  # newest first: day 1 is the second row
        await until(pilot, lambda: type(app.screen).__name__ == "DayScreen")
        await pilot.press("m")
        await until(pilot, lambda: type(app.screen).__name__ == "MorningReportScreen")
        summary = str(app.screen.query_one("#morning-summary").render())
        assert "Night of day 1" in summary
        # And from its checkpoint: the night started from the birth weights (first row).
        while app.screen is not chat:
            app.pop_screen()
            await pilot.pause()
        await pilot.press("f3")
        await until(pilot, lambda: type(app.screen).__name__ == "CheckpointsScreen"
                    and app.screen.query_one("CheckpointList").rows)
        app.screen.query_one("CheckpointList").highlighted = 0
        await pilot.press("m")
        await until(pilot, lambda: type(app.screen).__name__ == "MorningReportScreen")
        assert "Night of day 1" in str(app.screen.query_one("#morning-summary").render())
    with Store.open(home.store_path) as store:
        [choice] = store.choices(store.days()[0].id, history=True)  # nothing was amended
        assert choice.supersedes is None


async def test_a_quit_during_the_night_resumes_it_at_the_next_start(home):
    quick(home, **{"night.steps": "120"})  # long enough that the quit lands mid-night
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        await live_a_day_and_say_good_night(pilot)
        await until(pilot, lambda: isinstance(app.screen, NightScreen))
        night = app.screen
        await until(pilot, lambda: night.query_one("NightProgress").step > 0, timeout=90)
    # Leaving the app stopped the trainer at the next step boundary; the weights are untouched.
    with Store.open(home.store_path) as store:
        [record] = store.nights()
        assert record.status == "interrupted"
        assert store.latest_checkpoint().id == record.pre_checkpoint_id
    quick(home, **{"night.steps": "3"})
    again = app_for(home)
    async with again.run_test(size=(110, 40)) as pilot:
        await until(pilot, lambda: isinstance(again.screen, NightScreen), timeout=60)
        await until(pilot, lambda: again.screen.finished, timeout=120)
    with Store.open(home.store_path) as store:
        statuses = [n.status for n in store.nights()]
    assert statuses[0] == "interrupted" and statuses[-1] in ("accepted", "rolled_back")
