"""The chat screen: the day's transcript, the candidate deck, the gauge and the owner's message line.

Candidates are sampled in a thread worker and stream into the cards through coalesced messages, so
the screen stays responsive: any key pressed while the model works is handled at once (Esc stops
the model and keeps what it wrote; a pick or an edit pressed mid-stream stops it and acts as soon as
the round is recorded; a rating pressed mid-stream is shown at once and recorded with the round).

Focus decides what a letter key does: in the message line letters are typed; on the deck or the
transcript they are commands. Esc moves between the message line and the deck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual import events
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from companion.day import MAX_MESSAGE_CHARS, DayError, MessageRefused
from companion.store import StoreError
from companion.messages import DayClosed, GenerationDone, GenerationFailed, GenerationStreamed
from widgets import (
    AnnotationEditor,
    CandidateCard,
    CandidateDeck,
    ConfirmScreen,
    DayGauge,
    TextEditScreen,
    TranscriptEntry,
    TranscriptView,
)
from widgets.safe_text import display_safe

MIN_WIDTH, MIN_HEIGHT = 50, 15
"""Below this the chat cannot show a transcript, cards and the message line: the screen says so."""

MAX_CANDIDATES = 8

CHAT_COMMANDS: list[tuple[str, str, str]] = [
    ("Pick the highlighted candidate", "Let the highlighted card be the companion's reply", "pick_highlighted"),
    ("Rate the highlighted candidate", "Then press 1-4 for stars, 0 to clear", "rate"),
    ("Correct the highlighted candidate", "Edit it into what it should have said", "edit"),
    ("Write the reply yourself", "Write the reply you wanted", "write"),
    ("More candidates", "Sample another round; earlier cards stay", "more"),
    ("Ask for an inner line", "The companion thinks aloud in its inner voice", "inner"),
    ("Write an inner line", "Show the companion how to reflect", "write_inner"),
    ("Annotate an inner line", "Tags and a note on the highlighted inner line", "annotate"),
    ("Remember this", "Keep the selected (or latest) reply as a lesson the nights teach", "remember"),
    ("Stop generating", "Keep what was written so far", "stop"),
    ("Good night", "Close the day with the good-night line", "good_night"),
    ("Settings", "Sampling and the shape of the day", "settings"),
]


class MessageInput(Input):
    """The owner's message line. A paste that would make the message longer than
    `MAX_MESSAGE_CHARS` is refused with its size; a multi-line paste is joined with spaces."""

    async def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()
        event.stop()
        text = event.text.replace("\r\n", "\n").replace("\n", " ")
        if not text:
            return
        total = len(self.value) + len(text)
        if total > MAX_MESSAGE_CHARS:
            self.app.notify(
                f"Paste refused: {len(event.text):,} characters; a message holds at most {MAX_MESSAGE_CHARS:,}. "
                "Longer texts can be given as books.",
                title="Too long", severity="error",
            )
            return
        self.insert_text_at_cursor(text)


class ChatScreen(Screen):
    """One day with the companion."""

    DEFAULT_CSS = """
    ChatScreen { layout: vertical; }
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #chat-header { height: 1; padding: 0 1; background: $panel; color: $text; text-style: bold; }
    ChatScreen #transcript { height: 1fr; }
    ChatScreen #deck { height: auto; max-height: 50%; }
    ChatScreen #deck.-empty { display: none; }
    ChatScreen #inner-stream { height: auto; padding: 0 4; color: $text-muted; text-style: italic; display: none; }
    ChatScreen #inner-stream.-active { display: block; }
    ChatScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    ChatScreen #status.-busy { color: $secondary; }
    ChatScreen #message { margin: 0 0; }
    ChatScreen #too-small { display: none; height: 1fr; content-align: center middle; text-style: bold; color: $warning; }
    ChatScreen.-too-small #chat-body { display: none; }
    ChatScreen.-too-small #too-small { display: block; }
    """

    BINDINGS = [
        Binding("escape", "escape", "Stop/Back", id="stop"),
        Binding("1", "digit(1)", "Pick 1-K", id="pick_1"),
        *[Binding(str(n), f"digit({n})", f"Pick {n}", show=False, id=f"pick_{n}") for n in range(2, MAX_CANDIDATES + 1)],
        Binding("0", "digit(0)", "Clear rating", show=False, id="clear_rating"),
        Binding("r", "rate", "Rate", id="rate"),
        Binding("e", "edit", "Correct", id="edit"),
        Binding("w", "write", "Write reply", id="write"),
        Binding("m", "more", "More", id="more"),
        Binding("i", "inner", "Inner line", id="inner"),
        Binding("I", "write_inner", "Write inner", id="write_inner"),
        Binding("a", "annotate", "Annotate", id="annotate"),
        Binding("ctrl+n", "good_night", "Good night", id="good_night"),
        Binding("ctrl+s,comma", "settings", "Settings", id="settings"),
        Binding("f2", "app.open_days", "Days", id="days"),
        Binding("f3", "app.open_checkpoints", "Checkpoints", id="checkpoints"),
        Binding("f4", "app.open_books", "Books", id="books"),
        Binding("f5", "app.open_lessons", "Lessons", id="lessons"),
        Binding("K", "remember", "Remember this", show=False, id="remember"),
    ]

    throttle_s: float = 0.0
    """Pause after each generated token (0 normally; demos and tests slow the model down with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.session = None
        self._generation = 0
        self.generating: str | None = None  # the kind of generation running: reply, more, inner, inner_after
        self._stop = threading.Event()
        self._buffer: dict[int, str] = {}
        self._buffer_lock = threading.Lock()
        self._stream_posted = False
        self._round_cards: list[CandidateCard] = []
        self._pending_ratings: dict[int, int | None] = {}  # card number -> stars, until the round is recorded
        self._after_generation: list[Callable[[], None]] = []
        self.rating_mode = False
        self.day_over = False

    # -- layout -----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="chat-body"):
            yield Static(id="chat-header")
            yield TranscriptView(id="transcript")
            yield Static(id="inner-stream")
            yield CandidateDeck(id="deck", classes="-empty")
            yield DayGauge(id="gauge")
            yield Static(id="status")
            yield MessageInput(placeholder="Write to your companion; enter sends", id="message")
        yield Static(id="too-small")
        yield Footer()

    @property
    def transcript(self) -> TranscriptView:
        return self.query_one("#transcript", TranscriptView)

    @property
    def deck(self) -> CandidateDeck:
        return self.query_one("#deck", CandidateDeck)

    @property
    def gauge(self) -> DayGauge:
        return self.query_one("#gauge", DayGauge)

    @property
    def message_input(self) -> MessageInput:
        return self.query_one("#message", MessageInput)

    def on_mount(self) -> None:
        settings = self.app.settings
        self.query_one("#chat-header", Static).update(Content(f"{settings.companion.name} · with {settings.companion.owner}"))
        self.set_status(f"Waking {settings.companion.name} up (loading the model)… you can read the day meanwhile.", busy=True)
        self._show_preview()
        self.message_input.focus()
        self._check_size(self.app.size.width, self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        self.set_class(small, "-too-small")
        if small:
            self.query_one("#too-small", Static).update(Content(
                f"The terminal is too small ({width}×{height}).\nThe companion needs at least {MIN_WIDTH}×{MIN_HEIGHT}."))

    def set_status(self, text: str, busy: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.update(Content(text))
        status.set_class(busy, "-busy")

    # -- showing the day --------------------------------------------------------------------------

    def _entry(self, turn, annotation=None) -> TranscriptEntry:
        names = self.app.settings.companion
        speaker = names.owner if turn.role == "owner" or turn.source == "owner_inner" else names.name
        tags = annotation.tags if annotation else ()
        note = (annotation.note or "") if annotation else ""
        return TranscriptEntry(turn.role, turn.text, turn.source, speaker, turn.id, tags, note)

    def _show_preview(self) -> None:
        """The open day as the store has it, before the model is ready."""
        store = self.app.store
        day = store.current_day()
        if day is None:
            return
        notes = {a.turn_id: a for a in store.annotations(day.id)}
        self.transcript.set_lines([self._entry(t, notes.get(t.id)) for t in store.turns(day.id)])
        self.gauge.update_usage(store.tokens_used(day.id), day.budget_tokens)

    def show_session(self, session) -> None:
        """Show the day `session` holds (a new day, or the day continued after a restart)."""
        self.session = session
        self.day_over = False
        notes = {a.turn_id: a for a in session.store.annotations(session.day.id)}
        self.transcript.set_lines([self._entry(t, notes.get(t.id)) for t in session.turns])
        self.deck.clear()
        self._round_cards = []
        name = self.app.settings.companion.name
        self.query_one("#chat-header", Static).update(Content(
            f"{name} · day {session.day.number} · with {self.app.settings.companion.owner}"))
        prompt = session.pending_prompt
        if prompt is not None:
            ratings = session.ratings()
            for cand in session.candidates():
                card = self.deck.add_card(cand.text, round_no=cand.round + 1, candidate_id=cand.id, finished=True,
                                          rating=ratings.get(cand.id))
                if cand.finish == "stopped":
                    card.finish(stopped=True)
            if self.deck.cards:
                self.deck.highlight(0)
        self._update_deck_class()
        self.update_gauge()
        self.set_status(self._idle_hint())
        if prompt is not None and not self.deck.cards:
            self.start_generation("reply")  # the app stopped before the candidates were recorded

    def update_gauge(self) -> None:
        if self.session is not None:
            self.gauge.update_usage(self.session.used, self.session.budget)

    def _update_deck_class(self) -> None:
        self.deck.set_class(not self.deck.cards, "-empty")

    def _idle_hint(self) -> str:
        if self.session is None:
            return "Waking up…"
        if not self.session.is_open:
            return "The day is over."
        if self.session.pending_prompt is not None and self.deck.cards:
            return "Esc to the cards · 1-K pick · r rate · e correct · w write · m more"
        return "Write a message and press enter · ctrl+n good night · ctrl+p all commands"

    # -- sending ----------------------------------------------------------------------------------

    @on(Input.Submitted, "#message")
    def _submitted(self, event: Input.Submitted) -> None:
        self.send_message(event.value)

    def send_message(self, text: str) -> None:
        session = self.session
        if session is None:
            self.notify("The companion is still waking up; your message is kept.", severity="warning")
            return
        if not text.strip():
            return  # an empty message is ignored
        if self.generating in ("inner", "inner_after"):
            self.stop_generation()
            self._after_generation.append(lambda: self.send_message(text))
            return
        if self.generating:
            self.notify("The companion is still answering: pick a card, or Esc to stop it.", severity="warning")
            return
        try:
            result = session.send(text)
        except MessageRefused as refused:
            self._refused(refused)
            return
        except (DayError, StoreError) as error:
            self.notify(str(error), severity="warning")
            return
        self.message_input.clear()
        self._add_turn(result.owner_turn)
        for turn in result.indicators:
            self._add_turn(turn)
        self.deck.clear()
        self._round_cards = []
        self.update_gauge()
        self.start_generation("reply")

    def _refused(self, refused: MessageRefused) -> None:
        if refused.kind == "empty":
            return
        if refused.kind == "no_room":
            def answered(yes: bool | None) -> None:
                if yes:
                    self.close_day("goodnight")

            self.app.push_screen(ConfirmScreen(
                f"{refused}. The day is nearly full.\nEnd the day now with the good-night line?",
                title="Not enough room left today", yes_label="End the day"), answered)
            return
        self.notify(str(refused), title="Refused", severity="error")

    def _add_turn(self, turn) -> None:
        self.transcript.add_line(**self._entry(turn).__dict__)
        self.transcript.scroll_end(animate=False)

    # -- generating -------------------------------------------------------------------------------

    def start_generation(self, kind: str) -> None:
        """Sample in a thread worker: 'reply' / 'more' (K cards), 'inner' / 'inner_after' (one line)."""
        from companion.engine import sampling_from_settings

        session, engine = self.session, self.app.engine
        if session is None or engine is None or not session.is_open:
            return
        settings = self.app.settings.sampling
        if kind in ("reply", "more"):
            k = max(1, min(settings.candidates, MAX_CANDIDATES))
            slots = session.next_slots(k)
            max_tokens = session.reply_tokens()
            self._round_cards = self.deck.start_round(k)
            self._pending_ratings = {}
            self._update_deck_class()
            self.deck.focus()
            role = "companion"
        else:
            k, slots, max_tokens = 1, [1000 + len(session.turns)], session.inner_tokens()
            if max_tokens < 2:
                if kind == "inner":
                    self.notify("No room left today for an inner line.", severity="warning")
                return
            role = "inner"
        sampling = sampling_from_settings(settings, max_tokens)
        self._generation += 1
        self.generating = kind
        self._stop.clear()
        self._buffer = {}
        self._stream_posted = False
        self.set_status("The companion is thinking… Esc stops and keeps what it wrote." if role == "companion"
                        else "The inner voice… Esc stops.", busy=True)
        self._generate(self._generation, kind, session.context_ids(), k, sampling, slots, role)

    @work(thread=True, group="generate")
    def _generate(self, generation_id: int, kind: str, context: list[int], k: int, sampling, slots: list[int], role: str) -> None:
        engine = self.app.engine
        try:
            if kind == "inner_after" and engine.next_speaker(context) != "inner":
                self.post_message(GenerationDone(generation_id, kind, [], sampling.max_new_tokens))
                return

            def on_text(row: int, text: str) -> None:
                with self._buffer_lock:
                    self._buffer[row] = text
                    post = not self._stream_posted
                    self._stream_posted = True
                if post:
                    self.post_message(GenerationStreamed(generation_id))
                if self.throttle_s:
                    time.sleep(self.throttle_s)

            results = engine.generate(context, k, sampling, slots, on_text=on_text,
                                      should_stop=self._stop.is_set, role=role)
            self.post_message(GenerationDone(generation_id, kind, [(g.text, g.finish) for g in results],
                                             sampling.max_new_tokens))
        except Exception as error:  # shown to the owner; the day is unchanged
            self.post_message(GenerationFailed(generation_id, kind, f"{type(error).__name__}: {error}"))

    def on_generation_streamed(self, message: GenerationStreamed) -> None:
        if message.generation_id != self._generation:
            return
        with self._buffer_lock:
            texts = dict(self._buffer)
            self._stream_posted = False
        if self.generating in ("reply", "more"):
            for row, text in texts.items():
                if row < len(self._round_cards):
                    self._round_cards[row].set_text(text)
        elif texts:
            stream = self.query_one("#inner-stream", Static)
            stream.update(Content("inner  " + display_safe(texts.get(0, ""))))
            stream.add_class("-active")

    def on_generation_done(self, message: GenerationDone) -> None:
        if message.generation_id != self._generation:
            return
        kind, session = message.kind, self.session
        self.generating = None
        self.query_one("#inner-stream", Static).remove_class("-active")
        if kind in ("reply", "more"):
            if not self._record_round([t for t, _ in message.results], [f for _, f in message.results],
                                      message.max_tokens):
                self._after_generation = []
        elif message.results:
            text, finish = message.results[0]
            try:
                turn = session.add_model_inner(text, finish)
            except (DayError, StoreError) as error:
                self.notify(f"The inner line could not be saved: {error}", title="Not saved", severity="error")
                turn = None
            if turn is not None:
                self._add_turn(turn)
            elif kind == "inner":
                self.notify("The inner voice was silent.")
            self.update_gauge()
            if session.close_if_full():
                self._day_closed()
        self.set_status(self._idle_hint())
        queued, self._after_generation = self._after_generation, []
        for action in queued:
            action()

    def _record_round(self, texts: list[str], finishes: list[str], max_tokens: int) -> bool:
        """Record the round's candidates (everything shown is recorded) and the ratings given while they
        streamed. Every way a round ends comes here: done, failed, or the app closing mid-stream."""
        session = self.session
        try:
            candidates = session.record_candidates(texts, finishes, max_tokens=max_tokens)
            for card, cand, finish in zip(self._round_cards, candidates, finishes):
                card.candidate_id = cand.id
                card.set_text(cand.text)
                card.finish(stopped=finish != "end" and finish != "length")
                if card.number in self._pending_ratings:
                    session.rate(cand.id, self._pending_ratings.pop(card.number))
        except (DayError, StoreError) as error:
            self.notify(f"The candidates could not be saved: {error}", title="Not saved", severity="error", timeout=20)
            return False
        return True

    def _partial_round(self) -> tuple[list[str], list[str]]:
        with self._buffer_lock:
            texts = [self._buffer.get(row, "") for row in range(len(self._round_cards))]
        return texts, ["stopped"] * len(texts)

    def on_unmount(self) -> None:
        """Closing mid-stream: keep what was shown, and the ratings already given."""
        if self.generating in ("reply", "more") and self.session is not None and self.session.is_open:
            self._stop.set()
            self._generation += 1  # the worker's late result is ignored
            self._record_round(*self._partial_round(), self.session.reply_tokens())
            self.generating = None

    def on_generation_failed(self, message: GenerationFailed) -> None:
        if message.generation_id != self._generation:
            return
        if message.kind in ("reply", "more") and self.session is not None and self.session.is_open:
            self._record_round(*self._partial_round(), self.session.reply_tokens())
        self.generating = None
        self._after_generation = []
        self.query_one("#inner-stream", Static).remove_class("-active")
        self.notify(f"The model failed: {message.error}", title="Generation failed", severity="error")
        self.set_status(self._idle_hint())

    def stop_generation(self) -> None:
        if self.generating:
            self._stop.set()
            self.set_status("Stopping…", busy=True)

    def _when_recorded(self, action: Callable[[], None], stop: bool = True) -> bool:
        """Run `action` now, or (True returned) once the running round of candidates is recorded."""
        if self.generating in ("reply", "more"):
            if stop:
                self.stop_generation()
            self._after_generation.append(action)
            return True
        return False

    # -- picking, rating, correcting, writing -----------------------------------------------------

    def _need_cards(self) -> bool:
        if self.session is None or not self.deck.cards:
            self.notify("No candidates yet: send a message first.", severity="information")
            return False
        return True

    def _need_prompt(self) -> bool:
        if self.session is None or not self.session.is_open:
            self.notify("The day is over.", severity="information")
            return False
        if self.session.pending_prompt is None:
            self.notify("This turn is already answered: write your next message.", severity="information")
            return False
        return True

    def action_digit(self, n: int) -> None:
        if self.rating_mode:
            self.rating_mode = False
            card = self.deck.highlighted_card
            if n > 4:
                self.notify("Ratings are 1 to 4 stars (0 clears).", severity="warning")
            elif card is not None:
                self.rate_card(card, n or None)
            self.set_status(self._idle_hint())
            return
        if n == 0:
            self.notify("0 clears a rating: press r first.", severity="information")
            return
        self.pick(n)

    def action_pick_highlighted(self) -> None:
        card = self.deck.highlighted_card
        if card is None:
            self.notify("No card is highlighted: send a message first.", severity="information")
            return
        self.pick(card.number)

    def pick(self, number: int) -> None:
        if not self._need_cards():
            return
        cards = self.deck.cards
        if number > len(cards):
            self.notify(f"There is no card {number}; there are {len(cards)}.", severity="information")
            return
        if not self._need_prompt():
            return
        if self._when_recorded(lambda: self.pick(number)):
            return
        card = cards[number - 1]
        try:
            reply = self.session.pick(card.candidate_id)
        except (DayError, StoreError) as error:
            self.notify(str(error), severity="warning")
            return
        self._replied(reply, card, "chosen")

    def action_rate(self) -> None:
        if not self._need_cards():
            return
        if self.deck.highlighted_card is None:
            self.deck.highlight(0)
        card = self.deck.highlighted_card
        self.rating_mode = True
        self.set_status(f"Rate card {card.number}: press 1-4 for stars, 0 to clear, Esc to cancel.", busy=True)

    def rate_card(self, card: CandidateCard, stars: int | None) -> None:
        if card.candidate_id is None:  # still streaming: recorded with its round, however it ends
            self._pending_ratings[card.number] = stars
        else:
            try:
                self.session.rate(card.candidate_id, stars)
            except StoreError as error:
                self.notify(f"The rating could not be saved: {error}", title="Not saved", severity="error")
                return
        card.set_rating(stars)
        self.notify(f"Card {card.number}: " + (f"{stars} of 4 stars" if stars else "rating cleared"))

    def action_edit(self) -> None:
        if not self._need_cards() or not self._need_prompt():
            return
        if self._when_recorded(self.action_edit):
            return
        card = self.deck.highlighted_card or self.deck.card(0)

        def done(text: str | None) -> None:
            if text is None:
                return
            if text == card.text:
                self.pick(card.number)
                return
            try:
                reply = self.session.correct(card.candidate_id, text)
            except (MessageRefused, DayError, StoreError) as error:
                self.notify(str(error), title="Refused", severity="error")
                return
            self._replied(reply, card, "corrected")

        self.app.push_screen(TextEditScreen(card.text, title=f"Correct candidate {card.number} into what it should say",
                                            max_chars=MAX_MESSAGE_CHARS), done)

    def action_write(self) -> None:
        if not self._need_prompt():
            return
        if self._when_recorded(self.action_write):
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                reply = self.session.write_reply(text)
            except (MessageRefused, DayError, StoreError) as error:
                self.notify(str(error), title="Refused", severity="error")
                return
            self._replied(reply, None, None)

        self.app.push_screen(TextEditScreen("", title="Write the reply you wanted", max_chars=MAX_MESSAGE_CHARS), done)

    def action_more(self) -> None:
        if not self._need_prompt():
            return
        if self.generating:
            self.notify("The companion is still answering (Esc stops it).", severity="information")
            return
        self.start_generation("more")

    def _replied(self, reply, card: CandidateCard | None, mark: str | None) -> None:
        """The reply joined the day: show it, mark the cards, and let the inner voice follow."""
        for other in self.deck.cards:
            if other is card:
                other.set_marks(chosen=mark == "chosen", corrected=mark == "corrected")
            else:
                other.set_marks(passed_over=True)
        self._add_turn(reply.turn)
        self.update_gauge()
        self.message_input.focus()
        if self.session.close_if_full():
            self._day_closed()
            return
        self.set_status(self._idle_hint())
        self.start_generation("inner_after")

    # -- the inner voice --------------------------------------------------------------------------

    def action_inner(self) -> None:
        if self.session is None or not self.session.is_open:
            self.notify("The day is over.", severity="information")
            return
        if self.generating:
            self.notify("The companion is busy (Esc stops it).", severity="information")
            return
        self.start_generation("inner")

    def action_write_inner(self) -> None:
        if self.session is None or not self.session.is_open:
            self.notify("The day is over.", severity="information")
            return

        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                turn = self.session.write_inner(text)
            except (MessageRefused, DayError, StoreError) as error:
                self.notify(str(error), title="Refused", severity="error")
                return
            self._add_turn(turn)
            self.update_gauge()
            if self.session.close_if_full():
                self._day_closed()

        self.app.push_screen(TextEditScreen("", title="Write an inner line: how should the companion reflect?",
                                            max_chars=MAX_MESSAGE_CHARS), done)

    def _annotation_target(self):
        view = self.transcript
        line = view.selected_widget
        if line is not None:
            return line if line.role == "inner" and line.turn_id is not None else None
        inner = [ln for ln in view.lines if ln.role == "inner" and ln.source in ("model_inner", "owner_inner")]
        return inner[-1] if inner else None

    def action_annotate(self) -> None:
        line = self._annotation_target()
        if line is None:
            self.notify("Select an inner line to annotate: Tab to the transcript, then ↑/↓.", severity="information")
            return
        self.annotate_line(line)

    def annotate_line(self, line) -> None:
        if self.session is None:
            return

        def done(result) -> None:
            if result is None:
                return
            tags, note = result
            try:
                self.session.annotate(line.turn_id, tags, note)
            except (DayError, StoreError) as error:
                self.notify(f"The annotation could not be saved: {error}", title="Not saved", severity="error")
                return
            self.transcript.set_annotation(line.turn_id, tags, note)
            self.notify("Annotation saved.")

        self.app.push_screen(AnnotationEditor(line.text, line.tags, line.note), done)

    @on(TranscriptView.LineActivated)
    def _line_activated(self, event: TranscriptView.LineActivated) -> None:
        if event.line is not None and event.line.role == "inner" and event.line.turn_id is not None:
            self.annotate_line(event.line)

    # -- lessons ----------------------------------------------------------------------------------

    def action_remember(self) -> None:
        """The selected companion reply (or the latest) becomes a lesson: "remember this"."""
        if self.session is None:
            return
        line = self.transcript.selected_widget
        turn_id = line.turn_id if line is not None and line.role == "companion" else None
        try:
            lesson = self.session.remember(turn_id)
        except (DayError, StoreError) as error:
            self.notify(display_safe(f"Not remembered: {error}"), title="Remember this", severity="warning",
                        markup=False)
            return
        self.notify(display_safe(f"Lesson {lesson.id}: {lesson.question!r} → {lesson.answer!r}"), title="Remembered",
                    markup=False)

    # -- the end of the day -----------------------------------------------------------------------

    def action_good_night(self) -> None:
        if self.session is None or not self.session.is_open:
            self.notify("The day is already over.", severity="information")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.close_day("goodnight")

        self.app.push_screen(ConfirmScreen(f"Say good night and close day {self.session.day.number}?",
                                           title="Good night", yes_label="Good night", focus_yes=True), answered)

    def close_day(self, reason: str) -> None:
        if self.generating:
            self.stop_generation()
            self._after_generation.append(lambda: self.close_day(reason))
            return
        if self.session is None or not self.session.is_open:
            return
        try:
            self.session.good_night(reason)
        except (DayError, StoreError) as error:
            self.notify(f"The day could not be closed: {error}", title="Not saved", severity="error")
            return
        self._day_closed()

    def _day_closed(self) -> None:
        """Show the good-night line and the day-over state, and tell the app (its night may begin)."""
        session = self.session
        shown = {line.turn_id for line in self.transcript.lines}
        for turn in session.turns:  # good night may first inject indicators still due
            if turn.id not in shown:
                self._add_turn(turn)
        self.update_gauge()
        self.day_over = True
        why = "the day is full" if session.day.close_reason == "full" else "good night"
        self.set_status(f"The day is over ({why}).")
        self.notify(f"Day {session.day.number} is over ({why}).", title="The day is over")
        self.post_message(DayClosed(session.day.id, session.day.close_reason))

    # -- moving around ----------------------------------------------------------------------------

    def action_escape(self) -> None:
        if self.rating_mode:
            self.rating_mode = False
            self.set_status(self._idle_hint())
            return
        if self.generating:
            self.stop_generation()
            return
        if self.focused is self.message_input:
            (self.deck if self.deck.cards else self.transcript).focus()
        else:
            self.message_input.focus()

    def action_stop(self) -> None:
        self.stop_generation()

    def action_settings(self) -> None:
        from companion.screens.settings import SettingsScreen

        self.app.push_screen(SettingsScreen())
