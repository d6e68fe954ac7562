"""The books folder: text files are queued once however often they are reported; binary, oversized
and empty files are refused with a note and left exactly as they were."""

from __future__ import annotations

import time

from textual.app import App
from textual.widgets import OptionList

from companion.night.books import BooksFolder, count_tokens
from companion.screens.books import BooksScreen
from companion.store import Store

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))


def test_a_text_file_is_queued_once_even_if_reported_several_times(tiny_home):
    novel = tiny_home.books_dir / "novel.txt"
    novel.write_text("It was a bright cold day in April.\n" * 20, encoding="utf-8")
    with Store.open(tiny_home.store_path) as store:
        books = BooksFolder(tiny_home, store)
        for _ in range(3):
            books.report([novel])
        books.scan()
        [book] = store.books()
        assert (book.path, book.status, book.bytes) == ("books/novel.txt", "queued", novel.stat().st_size)
        assert count_tokens(tiny_home, book) > 20

        novel.write_text("A different story now.\n", encoding="utf-8")  # the file changed
        books.report([novel, novel])
        old, new = store.books()
        assert new.status == "queued" and old.status == "refused" and "replaced" in old.note


def test_binary_large_and_empty_files_are_refused_and_left_untouched(tiny_home):
    folder = tiny_home.books_dir
    (folder / "photo.png").write_bytes(PNG)
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "huge.txt").write_text("x" * 5000)
    (folder / "empty.txt").write_text("  \n")
    (folder / ".hidden.txt").write_text("not a book")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    with Store.open(tiny_home.store_path) as store:
        books = BooksFolder(tiny_home, store, max_bytes=1000)
        books.scan()
        books.scan()
        notes = {b.path: (b.status, b.note) for b in store.books()}
    assert set(notes) == {"books/photo.png", "books/latin1.txt", "books/huge.txt", "books/empty.txt"}
    assert all(status == "refused" for status, _ in notes.values())
    assert notes["books/photo.png"][1].startswith("not text")
    assert notes["books/latin1.txt"][1].startswith("not UTF-8")
    assert "too large" in notes["books/huge.txt"][1] and "books.max_bytes" in notes["books/huge.txt"][1]
    assert notes["books/empty.txt"][1].startswith("empty")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_the_watcher_queues_a_dropped_file_while_running(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        seen = []
        books = BooksFolder(tiny_home, store, on_change=seen.extend)
        books.start()
        try:  # the watcher may not be watching yet when start() returns: drop the files again until seen
            deadline = time.monotonic() + 20
            while len(store.books()) < 2 and time.monotonic() < deadline:
                (tiny_home.books_dir / "notes.md").write_text("# Notes\nThe sea is grey-blue in winter.\n")
                (tiny_home.books_dir / "blob.bin").write_bytes(PNG)
                until = time.monotonic() + 1.0
                while len(store.books()) < 2 and time.monotonic() < until:
                    time.sleep(0.05)
        finally:
            books.stop()
        assert not books.watching
        status = {b.path: b.status for b in store.books()}
    assert status == {"books/notes.md": "queued", "books/blob.bin": "refused"}
    assert {b.path for b in seen} == set(status)


class Host(App):
    def __init__(self, home, store) -> None:
        super().__init__()
        self.home, self.store = home, store

    def on_mount(self) -> None:
        self.push_screen(BooksScreen(self.home, self.store))


async def test_the_books_screen_lists_tokens_status_and_notes(tiny_home):
    (tiny_home.books_dir / "poems.txt").write_text("Roses are red.\nViolets are blue.\n")
    (tiny_home.books_dir / "photo.png").write_bytes(PNG)
    with Store.open(tiny_home.store_path) as store:
        app = Host(tiny_home, store)
        async with app.run_test(size=(140, 30)) as pilot:
            for _ in range(4):
                await app.workers.wait_for_complete()
                await pilot.pause()
            option_list = app.screen.query_one("#books-list", OptionList)
            shown = "\n".join(str(option_list.get_option_at_index(i).prompt) for i in range(option_list.option_count))
            summary = str(app.screen.query_one("#books-summary").render())
    assert "poems.txt" in shown and "queued for tonight" in shown and "tokens" in shown
    assert "photo.png" in shown and "refused" in shown and "not text: it holds binary data" in shown
    assert "1 book(s) queued for tonight" in summary and "1 refused" in summary
