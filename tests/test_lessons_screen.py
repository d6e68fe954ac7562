"""The lessons screen, in the real app on a tiny real companion, driven with the keyboard (Pilot):
reached by a key and the palette, it shows each lesson's status and recall, accepts a phrasing and
retires a lesson; "remember this" in the chat keeps a picked reply as a lesson."""

from __future__ import annotations

from pathlib import Path

from companion.screens.lessons import LessonsScreen
from companion.store import Store
from tests.test_app import SIZE, app_for, quick, ready, send, until
from companion.widgets.lessons import sparkline

REPO = Path(__file__).resolve().parents[1]


def teach_and_test(home) -> int:
    """Day 1: the owner writes the answer to a question; its night is accepted and says it back 19/20."""
    with Store.open(home.store_path) as store:
        day = store.open_day(budget_tokens=192)
        prompt = store.add_turn(day.id, "owner", "What is my dog called?", "typed", tokens=8)
        lesson = store.record_reply(day.id, prompt.id, "written", "Your dog is called Biscuit.", tokens=9).lesson
        store.close_day(day.id, "goodnight")
        night = store.start_night(day.id)
        store.record_recalls(night.id, [{"lesson_id": lesson.id, "hits": 19, "samples": 20}])
        store.finish_night(night.id, "accepted")
        return lesson.id


def lines_of(screen) -> list[str]:
    from companion.screens.lessons import LessonList

    return [str(row.prompt()) for row in screen.query_one(LessonList).rows]


async def test_the_lessons_screen_shows_status_and_recall_and_accepts_a_phrasing(tiny_home):
    quick(tiny_home)
    lesson_id = teach_and_test(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, LessonsScreen))
        screen = app.screen
        await until(pilot, lambda: lines_of(screen) != [])
        [row] = lines_of(screen)
        assert "day 1" in row and "learned" in row and "What is my dog called?" in row and "Biscuit" in row
        assert sparkline([0.95]) in row and "95%" in row
        await pilot.press("p")
        await until(pilot, lambda: type(app.screen).__name__ == "TextEditScreen")
        app.screen.query_one("TextArea").text = "Who is my dog?"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, LessonsScreen))
        await until(pilot, lambda: "+1" in lines_of(screen)[0])
        detail = str(screen.query_one("#lesson-detail").render())
        assert "also: Who is my dog?" in detail
        await pilot.press("x")
        await until(pilot, lambda: "retired" in lines_of(screen)[0])
    with Store.open(tiny_home.store_path) as store:
        lesson = store.get_lesson(lesson_id)
        assert [p.text for p in lesson.phrasings] == ["Who is my dog?"] and lesson.retired


async def test_a_refused_phrasing_is_said_and_changes_nothing(tiny_home):
    quick(tiny_home)
    lesson_id = teach_and_test(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")  # the palette
        await pilot.pause(0.2)
        await pilot.press(*"Lessons")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, LessonsScreen) and lines_of(app.screen) != [])
        app.screen.add_phrasing(lesson_id, "what is my DOG called?")
        await pilot.pause()
        message = str(app.screen.query_one("#lessons-message").render())
        assert "Phrasing not added" in message and "already asked as" in message
    with Store.open(tiny_home.store_path) as store:
        assert store.phrasings(lesson_id) == []


async def test_remember_this_in_the_chat_keeps_a_picked_reply_and_the_palette_offers_it(tiny_home):
    quick(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        titles = [command.title for command in app.get_system_commands(chat)]
        assert "Remember this" in titles and "Lessons" in titles
        await send(pilot, chat, "What is my favourite colour?")
        await pilot.press("escape", "1")  # to the cards, then pick
        await until(pilot, lambda: any(line.source == "chosen" for line in chat.transcript.lines))
        chat.deck.focus()
        await pilot.press("K")
        await until(pilot, lambda: app.store.lessons() != [])
        [lesson] = app.store.lessons()
        picked = [line for line in chat.transcript.lines if line.source == "chosen"][0]
        assert (lesson.source, lesson.question, lesson.answer) == ("remember", "What is my favourite colour?",
                                                                   picked.text)


async def test_markup_and_escapes_in_a_phrasing_are_shown_as_typed(tiny_home):
    quick(tiny_home)
    lesson_id = teach_and_test(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, LessonsScreen) and lines_of(app.screen) != [])
        typed = "[bold]my dog[/] \x1b[31m?"
        app.screen.add_phrasing(lesson_id, typed)
        await until(pilot, lambda: "+1" in lines_of(app.screen)[0])
        detail = str(app.screen.query_one("#lesson-detail").render())
        assert "also: [bold]my dog[/] ^[[31m?" in detail
    with Store.open(tiny_home.store_path) as store:
        assert [p.text for p in store.phrasings(lesson_id)] == [typed]  # stored exactly as typed
