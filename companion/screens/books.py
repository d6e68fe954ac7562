"""The books screen: what is in the books folder, what will be read tonight, what was refused and why.

On opening it scans the folder (idempotent: nothing is queued twice) and it re-reads the store every two
seconds, so files the app's watcher queues appear while the screen is open. Token counts are computed
in a thread worker with the companion's tokenizer and cached per content.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from companion.night.books import BooksFolder, book_file, count_tokens
from companion.home import Home
from companion.store import Book, Store
from companion.widgets.lists import format_bytes
from companion.widgets.safe_text import display_safe, one_line

__all__ = ["BooksScreen", "book_line"]

_STATUS = {"queued": "queued for tonight", "read": "read", "refused": "refused"}


def book_line(book: Book, tokens: int | None, exists: bool) -> Content:
    """One book as the list shows it: name, status, tokens, size, and a refused book's note."""
    name = one_line(book.path.removeprefix("books/"), 40)
    tok = f"{tokens:,} tokens" if tokens is not None else "— tokens"
    status = _STATUS.get(book.status, book.status)
    if book.status == "read" and book.read_at:
        status = f"read {book.read_at[:10]}"
    parts: list = [(f"{name:<40}", "bold"), f"  {status:<18}", f"  {tok:>14}", f"  {format_bytes(book.bytes):>9}"]
    if book.status == "refused" and book.note:
        parts += ["\n    ", (display_safe(book.note), "italic")]
    if not exists and book.status != "read":
        parts += ["  ", ("file gone", "reverse")]
    return Content.assemble(*parts)


class BooksScreen(Screen):
    """Every book record, newest first; ``s`` rescans the folder."""

    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back"), Binding("s", "scan", "Rescan")]
    DEFAULT_CSS = """
    BooksScreen #books-summary { height: auto; padding: 0 1; }
    BooksScreen #books-list { height: 1fr; }
    """

    class _Listed(Message):
        def __init__(self, lines: list[Content], summary: str) -> None:
            super().__init__()
            self.lines, self.summary = lines, summary

    def __init__(self, home: Home, store: Store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.books: list[Book] = []

    def compose(self) -> ComposeResult:
        yield Static(Content(f"Books: drop text files in {display_safe(str(self.home.books_dir))}"), id="books-summary")
        yield OptionList(id="books-list", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.action_scan()
        self.set_interval(2.0, self._list)

    def action_scan(self) -> None:
        self._scan()

    @work(thread=True, exclusive=True, group="scan")
    def _scan(self) -> None:
        BooksFolder(self.home, self.store).scan()
        self._list_now()

    @work(thread=True, exclusive=True, group="list")
    def _list(self) -> None:
        self._list_now()

    def _list_now(self) -> None:
        books = list(reversed(self.store.books()))
        lines, queued_tokens, queued = [], 0, 0
        for b in books:
            exists = book_file(self.home, b).is_file()
            tokens = count_tokens(self.home, b) if b.status != "refused" else None
            if b.status == "queued":
                queued += 1
                queued_tokens += tokens or 0
            lines.append(book_line(b, tokens, exists))
        refused = sum(1 for b in books if b.status == "refused")
        summary = (f"{queued} book(s) queued for tonight ({queued_tokens:,} tokens) · {refused} refused · "
                   f"drop text files in {self.home.books_dir}")
        self.books = books
        self.post_message(self._Listed(lines, summary))

    @on(_Listed)
    def _fill(self, message: _Listed) -> None:
        self.query_one("#books-summary", Static).update(Content(display_safe(message.summary)))
        option_list = self.query_one(OptionList)
        highlighted = option_list.highlighted
        option_list.set_options([Option(line) for line in message.lines] or
                                [Option(Content("no books yet"), disabled=True)])
        if highlighted is not None and message.lines:
            option_list.highlighted = min(highlighted, len(message.lines) - 1)
