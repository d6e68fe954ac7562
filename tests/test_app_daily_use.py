"""The day as a daily user lives it (issue 11), driven with the keyboard through Pilot on a tiny real
companion: typing is never eaten by a binding, replying takes the highlighted card, the last reply can
be mended, the message editor holds several lines, and each finding of the issue has its test here (the
night's findings are in test_app_night.py and test_night_screen.py)."""

from __future__ import annotations

import html

from textual import events

from companion.history.personality import book_entries
from companion.night.material import day_examples
from companion.screens.chat import ChatScreen
from companion.store import Store
from companion.model.tokenizer import Tokenizer
from tests.test_app import SIZE, app_for, home, quick, ready, send, start_a_slow_round, stored_turns, to_cards, until  # noqa: F401


def screen_text(app) -> str:
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


def typed(home) -> list[str]:
    return [t.text for t in stored_turns(home) if t.source == "typed"]


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[("space" if c == " " else c) for c in text])


async def test_typing_after_the_candidates_finish_goes_to_the_message_whole(home):
    """Finding 1: `well` no longer opens "write the reply", `r` no longer rates, digits do not pick."""
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello Scout")
        message = "well, really: lol 1 2 3 <|owner|> ok?"
        await type_text(pilot, message)
        assert isinstance(app.screen, ChatScreen) and not chat.rating_mode
        assert chat.message_input.text == message
        assert all(card.rating is None and not card.chosen for card in chat.deck.cards)
        await pilot.press("enter")
        await until(pilot, lambda: not chat.generating and len(typed(home)) == 2)
        assert any(line.source == "typed" and line.text == message for line in chat.transcript.lines)
        assert message in screen_text(app)
    assert typed(home) == ["Hello Scout", message]


async def test_typing_after_a_dialog_goes_to_the_message(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello")
        await pilot.press("ctrl+n")  # the good-night question, answered no
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is chat)
        assert chat.focused is chat.message_input
        await type_text(pilot, "<|owner|> ok? lr")
        assert chat.message_input.text == "<|owner|> ok? lr" and not chat.rating_mode
        assert isinstance(app.screen, ChatScreen)


async def test_keys_pressed_while_the_model_works_are_typed_not_obeyed(home):
    quick(home, **{"sampling.max_reply_tokens": "40", "sampling.temperature": "2.0"})
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await start_a_slow_round(pilot)
        await type_text(pilot, "we 2m")
        assert chat.generating and chat.message_input.text == "we 2m"
        assert isinstance(app.screen, ChatScreen) and len(chat.deck.cards) == 3
        await pilot.press("escape")  # Esc stops the model; what it wrote is kept
        await until(pilot, lambda: not chat.generating)


async def test_the_focus_is_plain_and_the_footer_says_what_the_keys_do_there(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello")
        text = screen_text(app)
        assert "Enter replies and takes card 1" in text and "Esc to the cards" in text
        assert " Rate " not in text and "Correct" not in text  # card keys are not live while typing
        await to_cards(pilot, chat)
        text = screen_text(app)
        assert "Rate" in text and "Correct" in text and "Esc back to your message" in text
        await pilot.press("escape")
        assert chat.focused is chat.message_input
        await pilot.press("tab")  # the transcript, where inner lines are annotated
        assert chat.focused is chat.transcript
        assert "annotate an inner line" in screen_text(app)


async def test_replying_without_a_pick_takes_the_highlighted_card_as_an_implicit_pick(home):
    """Finding 2: SillyTavern keeps the swipe you are looking at when you simply reply."""
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Tell me something")
        await to_cards(pilot, chat)
        await pilot.press("right", "escape")  # look at card 2, then go back to writing
        highlighted = chat.deck.cards[1]
        await type_text(pilot, "I see")
        await pilot.press("enter")
        await until(pilot, lambda: not chat.generating and len(typed(home)) == 2)
        assert highlighted.chosen and chat.deck.cards  # the new round's cards are up
        chosen = [line for line in chat.transcript.lines if line.source == "chosen"]
        assert [line.text for line in chosen] == [highlighted.text]
    with Store.open(home.store_path) as store:
        [choice] = store.choices(store.current_day().id)
        assert choice.kind == "pick" and choice.implicit and choice.candidate_id == highlighted.candidate_id
    assert [t.source for t in stored_turns(home)].count("chosen") == 1


async def test_a_setting_keeps_replying_from_picking(home):
    quick(home, **{"day.reply_takes_highlighted": "false"})
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Tell me something")
        await type_text(pilot, "I see")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert chat.message_input.text == "I see"  # kept, not sent
        assert any("Pick a card first" in n.message for n in app.notices)
    assert typed(home) == ["Tell me something"]


async def test_a_correction_amended_once_is_what_the_night_and_the_book_get(home):
    """Finding 5: a typo in a correction is mended before the night; ctrl+a selects all."""
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "What is the capital of France?")
        await to_cards(pilot, chat)
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        original = chat.deck.cards[0].text
        assert app.screen.query_one("#text-edit-original").render().plain.strip() == original.strip()
        await pilot.press("ctrl+a")
        await type_text(pilot, "Pariss.")  # typed over the whole selection
        assert app.screen.text == "Pariss."
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any(l.source == "correction" for l in chat.transcript.lines))
        assert chat.focused is chat.message_input
        await until(pilot, lambda: not chat.generating)
        await to_cards(pilot, chat)
        assert "amend the reply" in screen_text(app)
        await pilot.press("e")  # amend: the editor starts from the correction, the original beside it
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        assert app.screen.text == "Pariss."
        await pilot.press("ctrl+a")
        await type_text(pilot, "Paris.")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ChatScreen))
        [line] = [l for l in chat.transcript.lines if l.source == "correction"]
        await until(pilot, lambda: line.text == "Paris.")
        assert any(n.title == "Amended" for n in app.notices)
    with Store.open(home.store_path) as store:
        day = store.current_day()
        [reply] = [t for t in store.turns(day.id) if t.role == "companion"]
        assert reply.text == "Paris." and reply.amended
        assert store.recorded_turn(reply.id).text == "Pariss."  # append-only: the first version is kept
        assert store.latest_choice(reply.id).text == "Paris."
        assert [k.text for k in store.corrections(day.id)] == ["Paris."]
        [entry] = list(book_entries(store))
        assert entry["typed"] == "Paris."
        tokenizer = Tokenizer.load(home.tokenizer_path)
        examples = day_examples(tokenizer, store, day, home.load_settings(), 256)
        taught = tokenizer.decode([i for ex in examples for i in ex.inputs])
        assert "Paris." in taught and "Pariss" not in taught


async def test_another_card_can_be_picked_instead_until_a_message_follows(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hi")
        await to_cards(pilot, chat)
        await pilot.press("1")
        await until(pilot, lambda: any(l.source == "chosen" for l in chat.transcript.lines))
        await until(pilot, lambda: not chat.generating)
        await to_cards(pilot, chat)
        await pilot.press("3")
        third = chat.deck.cards[2]
        [line] = [l for l in chat.transcript.lines if l.source == "chosen"]
        await until(pilot, lambda: line.text == third.text)
        assert third.chosen and chat.deck.cards[0].passed_over
        await pilot.press("escape")
        await send(pilot, chat, "Next")
        assert any(n.title == "Amended" for n in app.notices)
    with Store.open(home.store_path) as store:
        [choice] = store.choices(store.current_day().id)
        assert choice.candidate_id == third.candidate_id and choice.supersedes is not None


async def test_the_message_editor_holds_lines_and_refuses_what_no_day_can_hold(home):
    """Finding 6: a multi-line editor with a clear send key; too long for any day is said as such."""
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await type_text(pilot, "first line")
        await pilot.press("ctrl+j")
        await type_text(pilot, "second")
        assert chat.message_input.text == "first line\nsecond"
        chat.message_input.post_message(events.Paste("\x1b[31mred\x1b[0m\r\nthird\x00 line"))
        await pilot.pause(0.1)
        assert chat.message_input.text == "first line\nsecond[31mred[0m\nthird line"
        chat.message_input.post_message(events.Paste("y" * 10_000))  # refused whole, with its size
        await pilot.pause(0.1)
        assert "yyy" not in chat.message_input.text
        assert any("10,000 characters" in n.message for n in app.notices)
        await pilot.press("enter", "enter")  # two quick enters: one message
        await until(pilot, lambda: not chat.generating and chat.deck.cards
                    and all(c.finished for c in chat.deck.cards))
        assert typed(home) == ["first line\nsecond[31mred[0m\nthird line"]
        [line] = [l for l in chat.transcript.lines if l.source == "typed"]
        assert "second" in line.plain_text() and "third line" in line.plain_text()

        chat.message_input.value = "word " * 600  # 3,000 characters on an empty day
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChatScreen)  # no offer to end the day
        [said] = [n.message for n in app.notices if "longer than a whole day" in n.message]
        assert "tokens" in said and f"{chat.session.budget:,}" in said
        assert chat.message_input.text == "word " * 600  # kept, to shorten
    assert len(typed(home)) == 1


async def test_notifications_stack_away_from_the_message_editor(home):
    """Finding 10: one toast per event, stacked where they hide nothing the owner types into."""
    app = app_for(home)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello")
        for _ in range(2):  # the same event told twice: one toast
            app.notify("Book refused: notes.pdf is not text", title="Books")
        app.notify("Another thing")
        await pilot.pause(0.3)
        toasts = list(app.screen.query("Toast"))
        assert len([n for n in app.notices if n.title == "Books"]) == 1 and len(toasts) >= 2
        assert all(not toast.region.overlaps(chat.message_input.region) for toast in toasts)
        assert all(not toast.region.overlaps(chat.deck.region) for toast in toasts)


async def test_answered_cards_leave_the_transcript_room_at_80x24(home):
    """Finding 10: at 80x24 the answered cards gave the transcript four lines."""
    app = app_for(home)
    async with app.run_test(size=(80, 24)) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello")
        await to_cards(pilot, chat)
        await pilot.press("1")
        await until(pilot, lambda: any(l.source == "chosen" for l in chat.transcript.lines))
        await pilot.pause(0.2)
        assert chat.transcript.region.height >= 8
        assert chat.message_input.region.height >= 3


async def test_after_a_restart_the_last_reply_can_still_be_amended(home):
    app = app_for(home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hi")
        await to_cards(pilot, chat)
        await pilot.press("1")
        await until(pilot, lambda: any(l.source == "chosen" for l in chat.transcript.lines) and not chat.generating)
    again = app_for(home)
    async with again.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        assert len(chat.deck.cards) == 3 and chat.deck.cards[0].chosen and chat.deck.cards[1].passed_over
        await to_cards(pilot, chat)
        await pilot.press("2")
        await until(pilot, lambda: chat.deck.cards[1].chosen)
        second = chat.deck.cards[1].candidate_id
    with Store.open(home.store_path) as store:
        [choice] = store.choices(store.current_day().id)
        assert choice.supersedes is not None and choice.candidate_id == second
