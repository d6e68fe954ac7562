"""The app, driven with the keyboard through Textual's Pilot, on a tiny real companion (no mocks)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from companion.app import CompanionApp
from companion.screens.chat import ChatScreen
from companion.settings import update_settings_file
from companion.store import Store
from companion.transcript import Turn, count_tokens
from tests.conftest import make_tiny_home

REPO = Path(__file__).resolve().parents[1]
SIZE = (110, 40)


def quick(home, **values):
    """Short replies and a fixed seed keep the tiny model's turns fast and repeatable."""
    values = {"sampling.max_reply_tokens": "8", "sampling.seed": "1", **values}
    for key, value in values.items():
        update_settings_file(home.settings_path, key, value)


async def until(pilot, condition, timeout: float = 20.0) -> None:
    """Let the app work (workers, messages) until `condition()` holds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


def app_for(home, **kwargs) -> CompanionApp:
    return CompanionApp(home.root, watch_themes=False, device="cpu", **kwargs)


async def ready(pilot) -> ChatScreen:
    app = pilot.app
    await until(pilot, lambda: app.session is not None and isinstance(app.screen, ChatScreen))
    return app.screen


async def send(pilot, chat: ChatScreen, text: str) -> None:
    """Send a message from the editor and wait for the candidates; the focus stays in the editor."""
    chat.message_input.focus()
    chat.message_input.value = text
    await pilot.press("enter")
    await until(pilot, lambda: not chat.generating and chat.deck.cards and all(c.finished for c in chat.deck.cards))
    assert chat.focused is chat.message_input


async def to_cards(pilot, chat: ChatScreen) -> None:
    """Esc: the owner moves to the cards on purpose (letters are commands there)."""
    await pilot.press("escape")
    assert chat.focused is chat.deck


def stored_turns(home):
    with Store.open(home.store_path) as store:
        day = store.current_day() or store.days()[-1]
        return store.turns(day.id)


@pytest.fixture()
def home(tiny_home):
    quick(tiny_home)
    return tiny_home


async def test_a_full_turn_send_candidates_pick(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        assert [line.source for line in chat.transcript.lines] == ["greeting"]
        await send(pilot, chat, "Hello Scout, how are you?")
        assert len(chat.deck.cards) == 3
        await to_cards(pilot, chat)
        await pilot.press("2")
        await until(pilot, lambda: any(line.source == "chosen" for line in chat.transcript.lines))
        chosen = chat.deck.cards[1]
        assert chosen.chosen and chat.deck.cards[0].passed_over
        shown = [line for line in chat.transcript.lines if line.source == "chosen"][0]
        assert shown.text == chosen.text
    turns = stored_turns(home)
    assert [t.source for t in turns][:3] == ["greeting", "typed", "indicator"]
    assert any(t.source == "chosen" and t.text == chosen.text for t in turns)


async def test_rating_with_the_keyboard_and_clearing_it(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Rate these")
        await to_cards(pilot, chat)
        await pilot.press("right", "r", "3")  # highlight card 2, rate it 3 stars
        card = chat.deck.cards[1]
        assert card.rating == 3 and "★★★☆" in card.plain_text()
        await pilot.press("left", "r", "4", "right", "r", "0")
        assert chat.deck.cards[0].rating == 4 and card.rating is None
        ids = [c.candidate_id for c in chat.deck.cards]
    with Store.open(home.store_path) as store:
        assert store.ratings(day_id=store.current_day().id) == {ids[0]: 4}


async def test_correcting_a_card_and_writing_ones_own_reply(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Correct me")
        await to_cards(pilot, chat)
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        app.screen.query_one("TextArea").text = "What I should have said."
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any(l.source == "correction" for l in chat.transcript.lines))
        assert chat.deck.cards[0].corrected
        await until(pilot, lambda: not chat.generating)
        await send(pilot, chat, "Now I write it")
        await to_cards(pilot, chat)
        await pilot.press("w")
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        app.screen.query_one("TextArea").text = "My own words for you."
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any(l.source == "written" for l in chat.transcript.lines))
    with Store.open(home.store_path) as store:
        day = store.current_day()
        assert [k.text for k in store.corrections(day_id=day.id)] == ["What I should have said."]
        assert [c.kind for c in store.choices(day_id=day.id)] == ["correction", "written"]


async def test_more_candidates_keep_the_first_round(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Give me options")
        first = [c.text for c in chat.deck.cards]
        await to_cards(pilot, chat)
        await pilot.press("m")
        await until(pilot, lambda: len(chat.deck.cards) == 6 and not chat.generating)
        assert [c.text for c in chat.deck.cards[:3]] == first
        assert {c.round_no for c in chat.deck.cards[3:]} == {2}
        await pilot.press("5")
        await until(pilot, lambda: any(l.source == "chosen" for l in chat.transcript.lines))
    with Store.open(home.store_path) as store:
        cands = store.candidates(day_id=store.current_day().id)
        companion = [c for c in cands if c.role == "companion"]
        assert [c.round for c in companion] == [0, 0, 0, 1, 1, 1]
        assert [c.slot for c in companion] == [0, 1, 2, 0, 1, 2]


async def test_an_inner_line_asked_for_written_and_annotated(home):
    quick(home, **{"sampling.temperature": "0.05"})
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        chat.transcript.focus()
        await pilot.press("I")
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        app.screen.query_one("TextArea").text = "He seems tired today."
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any(l.source == "owner_inner" for l in chat.transcript.lines))
        await pilot.press("i")
        await until(pilot, lambda: not chat.generating and chat.round is not None)
        await pilot.pause(0.1)
        await pilot.press("a")  # the latest inner line
        await until(pilot, lambda: type(app.screen).__name__ == "AnnotationEditor")
        await pilot.press("space")  # toggles "keep"
        app.screen.query_one("#annotation-tags").value = "gentle"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        target = [l for l in chat.transcript.lines if l.source in ("model_inner", "owner_inner")][-1]
        assert target.tags == ("keep", "gentle")
    with Store.open(home.store_path) as store:
        assert store.annotation(turn_id=target.turn_id).tags == ("keep", "gentle")
        cands = store.candidates(day_id=store.current_day().id)
        assert any(c.role == "inner" for c in cands)  # the asked-for line was recorded, even if silent


async def test_the_gauge_counts_the_formatters_tokens(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Count me")
        await to_cards(pilot, chat)
        await pilot.press("1")
        await until(pilot, lambda: not chat.generating and chat.session.pending_prompt is None)
        turns = stored_turns(home)
        expected = sum(count_tokens(app.engine.tokenizer, Turn(t.role, t.text)) for t in turns)
        assert chat.gauge.used == expected == chat.session.used
        assert chat.gauge.budget == 192
        assert f"{expected} / 192 tokens" in chat.gauge.label()


async def test_indicators_appear_once_each_and_the_day_closes_when_full(home):
    quick(home, **{"sampling.max_reply_tokens": "24"})
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        first_day = chat.session.day.id
        for _ in range(40):
            if chat.session.day.id != first_day:
                break
            chat.message_input.focus()
            chat.message_input.value = "hi"
            await pilot.press("enter")
            if isinstance(app.screen, ChatScreen) and chat.session.pending_prompt is None:
                break  # refused: the confirm screen did not open and nothing was sent
            if not isinstance(app.screen, ChatScreen):  # the offer to end the day
                await pilot.press("y")
                break
            await until(pilot, lambda: not chat.generating and all(c.finished for c in chat.deck.cards))
            await pilot.press("escape", "1")
            await until(pilot, lambda: not chat.generating)
        await until(pilot, lambda: chat.session.day.id != first_day)
    with Store.open(home.store_path) as store:
        day = store.get_day(first_day)
        turns = store.turns(first_day)
        assert not day.is_open and turns[-1].source == "goodnight"
        assert [t.text for t in turns if t.source == "indicator"] == list(app.settings.indicator_lines())
        assert store.current_day().number == 2  # the next day begins on the current weights


async def test_good_night_with_the_keyboard(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, lambda: chat.session.day.number == 2)
        assert [l.source for l in chat.transcript.lines] == ["greeting"]
    with Store.open(home.store_path) as store:
        first = store.get_day(number=1)
        assert first.close_reason == "goodnight" and store.turns(first.id)[-1].source == "goodnight"


async def start_a_slow_round(pilot):
    """Send a message and return the chat once the cards begin to fill, the model still at work
    (throttled; use with SLOW sampling)."""
    chat = await ready(pilot)
    chat.throttle_s = 0.05
    chat.message_input.value = "Take your time"
    await pilot.press("enter")
    await until(pilot, lambda: any(c.text for c in chat.deck.cards))
    return chat


async def test_the_app_answers_keys_while_the_model_works(home):
    quick(home, **{"sampling.max_reply_tokens": "40", "sampling.temperature": "2.0"})
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await start_a_slow_round(pilot)
        await pilot.press("shift+tab")  # to the cards without stopping the model (Esc would stop it)
        assert chat.focused is chat.deck
        await pilot.press("r", "2")
        assert chat.generating and chat.deck.cards[0].rating == 2  # handled before generation ended
        await pilot.press("escape")
        await until(pilot, lambda: not chat.generating)
        cards = chat.deck.cards
    with Store.open(home.store_path) as store:
        cands = store.candidates(day_id=store.current_day().id)
        assert any(c.finish == "stopped" for c in cands)
        assert store.ratings(day_id=store.current_day().id) == {cards[0].candidate_id: 2}
        assert [c.text for c in cands] == [c.text for c in cards]  # what was shown is what was kept


async def test_bad_input(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        before = len(stored_turns(home))
        chat.message_input.focus()
        await pilot.press("enter")  # empty: ignored
        chat.message_input.value = "   "
        await pilot.press("enter")
        assert len(stored_turns(home)) == before and not chat.deck.cards
        from textual import events

        chat.message_input.post_message(events.Paste("x" * 5000))
        await pilot.pause(0.1)
        assert chat.message_input.value == "   "
        assert any("5,000 characters" in n.message for n in app.notices)
        chat.message_input.value = "word " * 300  # longer than any day: refused as such, no offer to end it
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChatScreen)
        assert any("longer than a whole day" in n.message and "192" in n.message for n in app.notices)
        assert len(stored_turns(home)) == before
        text = "<|owner|> \x1b[31mred\x1b[0m <|end|>"
        await send(pilot, chat, text)
        line = [l for l in chat.transcript.lines if l.source == "typed"][0]
        assert "^[[31m" in line.plain_text() and "<|owner|>" in line.plain_text()
        chat.deck.focus()
        await pilot.press("5")  # no such card: a hint, nothing changes
        assert any("no card 5" in n.message for n in app.notices)
    assert [t.text for t in stored_turns(home) if t.source == "typed"] == [text]


async def test_keys_that_need_a_selection_give_a_hint(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        chat.transcript.focus()
        for key in ("1", "r", "e", "a"):
            await pilot.press(key)
        await pilot.pause(0.05)
        messages = " ".join(n.message for n in app.notices)
        assert "send a message first" in messages and "inner line" in messages
        assert len(stored_turns(home)) == 1


async def test_a_terminal_too_small_says_so(home):
    app = app_for(home)
    async with app.run_test(size=(40, 10)) as pilot:
        chat = await ready(pilot)
        assert chat.has_class("-too-small")
        assert "too small" in chat.query_one("#too-small").render().plain


async def test_settings_are_validated_and_saved(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        chat.transcript.focus()
        await pilot.press("comma")
        await until(pilot, lambda: type(app.screen).__name__ == "SettingsScreen")
        field = app.screen.query_one("#set-sampling-temperature")
        field.value = "9"
        field.focus()
        await pilot.press("enter")
        assert "not allowed" in app.screen.query_one("#set-sampling-temperature-error").render().plain
        field.value = "0.5"
        await pilot.press("enter")
        line = app.screen.query_one("#set-day-indicators-2")
        line.value = "Noon, {companion}."
        line.focus()
        await pilot.press("enter")
        await pilot.press("escape")
        assert app.session.settings.sampling.temperature == 0.5
    saved = home.load_settings()
    assert saved.sampling.temperature == 0.5 and saved.day.indicators[1] == "Noon, {companion}."


async def test_the_theme_is_saved_and_binding_ids_can_be_remapped(home):
    update_settings_file(home.settings_path, "ui.bindings.good_night", "ctrl+g")
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        app.theme = "companion-moss"
        await pilot.press("ctrl+g")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("n")
    assert home.load_settings().ui.theme == "companion-moss"


async def test_first_run_adopts_the_seedling_and_opens_the_day(tmp_path, tokenizer, tiny_model):
    from companion.model.checkpoint import CheckpointMeta, save_checkpoint

    seedling = tmp_path / "seedling"
    seedling.mkdir()
    tokenizer.save(seedling / "tokenizer.json")
    save_checkpoint(seedling / "seedling.safetensors", tiny_model, CheckpointMeta(tiny_model.config, reason="seedling"))
    root = tmp_path / "companions"
    app = CompanionApp(root, watch_themes=False, device="cpu", seedling_dir=seedling)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        await pilot.press("ctrl+o")  # no names yet: refused, nothing written
        assert not (root / "Scout").exists()
        await pilot.press(*"Scout", "tab", *"Trey")
        await pilot.press("ctrl+o")
        chat = await ready(pilot)
        assert "Scout" in chat.transcript.lines[0].text
        assert app.lock is not None and app.lock.held
    assert (root / "Scout" / "companion.toml").is_file()


async def test_several_companions_get_a_picker(tmp_path, tokenizer):
    root = tmp_path / "companions"
    make_tiny_home(root, tokenizer, name="Scout")
    make_tiny_home(root, tokenizer, name="Wren")
    app = CompanionApp(root, watch_themes=False, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "PickerScreen")
        await pilot.press("down", "enter")
        chat = await ready(pilot)
        assert app.home.name == "Wren" and "Wren" in chat.transcript.lines[0].text


def test_a_second_app_on_the_same_companion_is_refused(tiny_home, capsys):
    from companion.app import run_app

    with tiny_home.lock():
        assert run_app(home=str(tiny_home.root), name="Scout") == 3
    assert "already open" in capsys.readouterr().err


def test_the_first_screen_needs_no_torch():
    code = ("import sys; import companion.app, companion.screens.chat, companion.screens.welcome, "
            "companion.screens.settings, companion.screens.picker, companion.messages; "
            "assert 'torch' not in sys.modules, 'torch imported on the start-up path'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
