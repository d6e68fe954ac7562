"""Growing from the app's palette: the preview, the question, the growth in the trainer thread with its
progress, and the next day's longer budget on the gauge."""

from __future__ import annotations

import pytest

from companion.screens.grow import GrowScreen, parse_request
from companion.growth.plan import GrowthError
from companion.screens.night import NightScreen
from companion.store import Store
from tests.test_app import app_for, quick, ready, until
from tests.test_app_night import QUICK_NIGHT, live_a_day_and_say_good_night

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def home(tiny_home):
    quick(tiny_home, **QUICK_NIGHT)
    return tiny_home


def screen_text(app) -> str:
    import html

    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def open_grow(pilot) -> GrowScreen:
    await pilot.press("ctrl+p")
    await pilot.press(*"Grow")
    await until(pilot, lambda: "Wider, or a longer day" in screen_text(pilot.app))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(pilot.app.screen, GrowScreen))
    return pilot.app.screen


async def ask(pilot, screen: GrowScreen, text: str) -> None:
    field = screen.query_one("#grow-input")
    field.focus()
    field.value = text
    await pilot.press("enter")


async def test_growing_from_the_palette_previews_asks_grows_and_lengthens_the_next_day(home):
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await ready(pilot)
        assert chat.session.budget == 192
        grow = await open_grow(pilot)
        await ask(pilot, grow, "context 512")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=60)
        await until(pilot, lambda: "parameters" in screen_text(app))
        text = screen_text(app)
        assert "Stretch the context 256 -> 512" in text and "parameters" in text and "time a step" in text
        assert "192 -> 384 tokens" in text
        await pilot.press("y")
        await until(pilot, lambda: grow.outcome != "", timeout=120)
        assert grow.outcome == "grown", screen_text(app)
        assert "Grown" in screen_text(app)
        await until(pilot, lambda: app.engine.block_size == 512, timeout=30)
        with Store.open(home.store_path) as store:
            assert store.latest_checkpoint().reason == "growth"
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is chat)
        assert chat.session.budget == 192  # the open day keeps its budget
        await live_a_day_and_say_good_night(pilot)
        await until(pilot, lambda: isinstance(app.screen, NightScreen))
        await until(pilot, lambda: app.screen.finished, timeout=120)
        await until(pilot, lambda: chat.session is not None and chat.session.day.number == 2, timeout=30)
        assert chat.session.budget == 384
        assert chat.gauge.budget == 384


async def test_a_bad_request_or_a_no_changes_nothing(home):
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        await ready(pilot)
        grow = await open_grow(pilot)
        await ask(pilot, grow, "width 40")
        await until(pilot, lambda: "Growth refused: width 40 is not larger" in screen_text(app), timeout=60)
        await ask(pilot, grow, "width 96")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=60)
        await until(pilot, lambda: "parameters" in screen_text(app))
        await pilot.press("n")
        await until(pilot, lambda: "Not grown; nothing changed." in screen_text(app))
    with Store.open(home.store_path) as store:
        assert [c.reason for c in store.checkpoints()] == ["birth"]


def test_requests_are_read_as_the_owner_writes_them():
    assert parse_request("width 384") == (384, None) and parse_request("v2") == (512, None)
    assert parse_request("context 1024") == (None, 1024) and parse_request("384") == (384, None)
    for bad in ("", "context lots", "taller 3"):
        with pytest.raises(GrowthError):
            parse_request(bad)


async def test_adding_tokens_from_the_palette_gives_the_open_day_the_new_tokenizer(home):
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await ready(pilot)
        grow = await open_grow(pilot)
        await ask(pilot, grow, "tokens Pemberton <|owner|>")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", timeout=60)
        await until(pilot, lambda: "Add 2 tokens" in screen_text(app))
        text = screen_text(app)
        assert '+ " Pemberton"  id 512' in text and 'skipped "<|owner|>": a role token' in text
        await pilot.press("y")
        await until(pilot, lambda: grow.outcome != "", timeout=120)
        assert grow.outcome == "grown", screen_text(app)
        await until(pilot, lambda: app.engine.tokenizer.vocab_size == 514, timeout=30)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is chat and chat.session.tokenizer.vocab_size == 514, timeout=30)
        assert chat.session.tokenizer.encode("Hi Pemberton") == chat.session.tokenizer.encode("Hi") + [512]
    with Store.open(home.store_path) as store:
        assert [c.reason for c in store.checkpoints()] == ["birth", "growth"]


def test_token_requests_are_read_as_the_owner_writes_them():
    from companion.screens.grow import parse_tokens_request

    assert parse_tokens_request("tokens Pemberton okapi") == ["Pemberton", "okapi"]
    assert parse_tokens_request("width 384") is None
    with pytest.raises(GrowthError, match="which words"):
        parse_tokens_request("tokens")
