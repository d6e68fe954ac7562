"""Protection inside the app: the books folder is watched, and the weekly backup is made and verified."""

from __future__ import annotations

from companion.history.backup import last_backup
from companion.store import Store
from tests.test_app import app_for, quick, ready, until


def queued_books(home):
    with Store.open(home.store_path) as store:
        return [(b.path, b.status) for b in store.books()]


async def test_a_text_dropped_in_the_books_folder_while_the_app_runs_is_queued_and_a_binary_refused(tiny_home):
    quick(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=(110, 40)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: app.books is not None and app.books.watching)
        (tiny_home.books_dir / "walden.txt").write_text("I went to the woods because I wished to live deliberately.")
        (tiny_home.books_dir / "photo.txt").write_bytes(b"\x89PNG\x00\x00\x01")
        await until(pilot, lambda: len(queued_books(tiny_home)) == 2, timeout=20)
    assert sorted(queued_books(tiny_home)) == [("books/photo.txt", "refused"), ("books/walden.txt", "queued")]
    assert (tiny_home.books_dir / "photo.txt").read_bytes() == b"\x89PNG\x00\x00\x01"  # left untouched


async def test_the_first_open_makes_a_verified_backup(tiny_home):
    quick(tiny_home)
    app = app_for(tiny_home)
    async with app.run_test(size=(110, 40)) as pilot:
        await ready(pilot)
        await until(pilot, lambda: last_backup(tiny_home) is not None, timeout=30)
    info = last_backup(tiny_home)
    assert info.verified_at is not None and info.folder.is_dir()


async def test_closing_the_app_mid_stream_keeps_the_cards_shown_and_the_rating_given(tiny_home):
    quick(tiny_home, **{"sampling.max_reply_tokens": "60", "sampling.temperature": "2.0"})
    app = app_for(tiny_home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await ready(pilot)
        chat.throttle_s = 0.05
        chat.message_input.value = "Tell me a long story"
        await pilot.press("enter")
        await until(pilot, lambda: any(c.text for c in chat.deck.cards))
        await pilot.press("shift+tab", "r", "3")  # to the cards (Esc would stop the model), rate card 1
        assert chat.generating
    with Store.open(tiny_home.store_path) as store:
        day = store.current_day()
        candidates = store.candidates(day_id=day.id)
        assert len(candidates) == 3 and all(c.finish == "stopped" for c in candidates)
        assert store.ratings(day_id=day.id) == {candidates[0].id: 3}
