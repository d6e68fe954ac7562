"""The chat screen: the day's transcript, the candidate deck, the gauge and the owner's message line.

Candidates are sampled in a thread worker and stream into the cards through coalesced messages, so
the screen stays responsive: any key pressed while the model works is handled at once (Esc stops
the model and keeps what it wrote; a pick or an edit pressed mid-stream stops it and acts as soon as
the round is recorded; a rating pressed mid-stream is shown at once and recorded with the round).

Typing is always safe. The message editor has the focus unless the owner moves away on purpose
(Esc to the cards, Tab to the transcript): there every printable key is text, never a command, and
finishing candidates or closing a dialog never moves the focus. On the cards (or the transcript)
letters and digits are commands; Esc goes back to the message. The footer and the status line say
what the keys do where the focus is now.

Replying continues the day: sending a message while candidates wait takes the highlighted card as the
reply, recorded as an implicit pick (a weaker signal), unless `day.reply_takes_highlighted` is off.
Until the night takes the day the last reply can be mended from the cards: a digit picks another
card, `e` corrects it again (the original shown beside), `w` rewrites it.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual import events
from textual.screen import Screen
from textual.widgets import Footer, Static

from companion.day import MAX_CANDIDATES, MAX_MESSAGE_CHARS, DayError, MessageRefused, Round
from companion.store import StoreError
from companion.messages import DayClosed, GenerationDone, GenerationFailed, GenerationStreamed
from companion.widgets import (
    AnnotationEditor,
    CandidateCard,
    CandidateDeck,
    ConfirmScreen,
    DayGauge,
    MessageEditor,
    TextEditScreen,
    TranscriptEntry,
    TranscriptView,
)
from companion.widgets.safe_text import display_safe

MIN_WIDTH, MIN_HEIGHT = 50, 15
"""Below this the chat cannot show a transcript, cards and the message line: the screen says so."""

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
    ("Go to the cards", "Move the focus to the candidate cards (Esc)", "focus_cards"),
    ("Go to the message", "Move the focus back to your message", "focus_message"),
    ("Good night", "Close the day with the good-night line", "good_night"),
    ("Settings", "Sampling and the shape of the day", "settings"),
]


#: Actions that act on the cards or the transcript: their keys are letters and digits, so they are
#: live only when the owner has moved there (in the message editor those keys are text).
CARD_ACTIONS = frozenset({"digit", "rate", "edit", "write", "more", "inner", "write_inner", "annotate", "remember"})


class ChatScreen(Screen):
    """One day with the companion."""

    DEFAULT_CSS = """
    ChatScreen { layout: vertical; }
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #chat-header { height: 1; padding: 0 1; background: $panel; color: $text; text-style: bold; }
    ChatScreen #transcript { height: 1fr; }
    ChatScreen #deck { height: auto; max-height: 50%; }
    ChatScreen #deck.-empty { display: none; }
    ChatScreen #deck.-answered { max-height: 25%; }
    ChatScreen #inner-stream { height: auto; padding: 0 4; color: $text-muted; text-style: italic; display: none; }
    ChatScreen #inner-stream.-active { display: block; }
    ChatScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    ChatScreen #status.-busy { color: $secondary; }
    ChatScreen #message { height: auto; min-height: 3; max-height: 8; border: tall $panel; }
    ChatScreen #message:focus { border: tall $accent; }
    ChatScreen #deck:focus { border-left: thick $accent; }
    ChatScreen #too-small { display: none; height: 1fr; content-align: center middle; text-style: bold; color: $warning; }
    ChatScreen.-too-small #chat-body { display: none; }
    ChatScreen.-too-small #too-small { display: block; }
    """

    BINDINGS = [
        Binding("escape", "escape", "Cards/Message", id="stop"),
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
        Binding("ctrl+s,comma", "settings", "Settings", id="settings", show=False),
        Binding("f2", "app.open_days", "Days", id="days"),
        Binding("f3", "app.open_checkpoints", "Checkpoints", id="checkpoints", show=False),
        Binding("f4", "app.open_books", "Books", id="books", show=False),
        Binding("f5", "app.show_night", "Night", id="night"),
        Binding("f6", "app.open_lessons", "Lessons", id="lessons", priority=True),  # over TextArea's f6 (select line)
        Binding("K", "remember", "Remember this", show=False, id="remember"),
    ]

    throttle_s: float = 0.0
    """Pause after each generated token (0 normally; demos and tests slow the model down with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.session = None
        self.round: Round | None = None  # the latest generation round (running or ended)
        self._round_cards: list[CandidateCard] = []  # the cards showing its rows, when it samples candidates
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
            editor = MessageEditor(id="message", max_chars=MAX_MESSAGE_CHARS,
                                   placeholder="Write to your companion · enter sends · ctrl+j new line")
            editor.border_title = "message"
            yield editor
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
    def message_input(self) -> MessageEditor:
        return self.query_one("#message", MessageEditor)

    @property
    def typing(self) -> bool:
        """The focus is in the message editor (or nowhere): printable keys are text."""
        return self.focused is None or self.focused is self.message_input

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Card keys are live only on the cards or the transcript (hidden from the footer elsewhere)."""
        if action in CARD_ACTIONS and self.typing:
            return False
        return True

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.refresh_bindings()
        self._show_hint()

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        self.refresh_bindings()

    def _show_hint(self) -> None:
        if not self.generating and not self.rating_mode:
            self.set_status(self._idle_hint())

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
        try:
            self._show_session(session)
        except NoMatches:
            return  # the app is quitting and took this screen's widgets down first (the day is in the store)

    def _show_session(self, session) -> None:
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
        elif session.amendable_reply is not None:
            self._show_answered_cards(session)
        self._update_deck_class()
        self.update_gauge()
        self.set_status(self._idle_hint())
        if prompt is not None and not self.deck.cards:
            self.start_generation("reply")  # the app stopped before the candidates were recorded

    def _show_answered_cards(self, session) -> None:
        """After a restart, the cards of the last reply come back with their marks: it can still be amended."""
        reply = session.amendable_reply
        choice = session.store.latest_choice(reply.id)
        if choice is None or choice.prompt_turn_id is None:
            return
        ratings = session.ratings()
        for cand in session.candidates_for(choice.prompt_turn_id):
            card = self.deck.add_card(cand.text, round_no=cand.round + 1, candidate_id=cand.id, finished=True,
                                      rating=ratings.get(cand.id))
            mine = cand.id == choice.candidate_id
            card.set_marks(chosen=mine and choice.kind == "pick", corrected=mine and choice.kind == "correction",
                           passed_over=not mine)
        if self.deck.cards:
            self.deck.highlight(0)
            self.deck.add_class("-answered")

    def update_gauge(self) -> None:
        if self.session is not None:
            self.gauge.update_usage(self.session.used, self.session.budget)

    def _update_deck_class(self) -> None:
        self.deck.set_class(not self.deck.cards, "-empty")

    def _idle_hint(self) -> str:
        """What the keys do now, where the focus is."""
        if self.session is None:
            return "Waking up…"
        if not self.session.is_open:
            return "The day is over · F5 the night · F2 past days"
        waiting = self.session.pending_prompt is not None and bool(self.deck.cards)
        amendable = self.session.amendable_reply is not None and bool(self.deck.cards)
        if self.typing:
            if waiting:
                card = self.deck.highlighted_card or self.deck.card(0)
                return (f"Enter replies and takes card {card.number} · Esc to the cards to pick, rate, correct")
            if amendable:
                return "Write your next message, enter sends · Esc to the cards to amend the reply"
            return ("Write a message, enter sends (ctrl+j new line) · Tab to the transcript to annotate · "
                    "ctrl+n good night · ctrl+p all commands")
        if self.focused is self.deck and waiting:
            return "Cards: 1-K pick · ←/→ move · r rate · e correct · w write · m more · Esc back to your message"
        if self.focused is self.deck and amendable:
            return "Cards: amend the reply · 1-K pick another · e correct again · w rewrite · Esc back to your message"
        if self.focused is self.transcript:
            return "Transcript: ↑/↓ lines · a or enter annotate an inner line · Esc back to your message"
        return "Esc back to your message"

    # -- sending ----------------------------------------------------------------------------------

    @on(MessageEditor.Submitted, "#message")
    def _submitted(self, event: MessageEditor.Submitted) -> None:
        self.send_message(event.text)

    def send_message(self, text: str) -> None:
        session = self.session
        if session is None:
            self.notify("The companion is still waking up; your message is kept.", severity="warning")
            return
        if not text.strip():
            return  # an empty message (a second quick enter) is ignored
        if self.generating:
            if self.generating in ("reply", "more") and not self.app.settings.day.reply_takes_highlighted:
                self.notify("The companion is still answering: pick a card, or Esc to stop it.", severity="warning")
                return
            self.stop_generation()  # the cards keep what they wrote; the reply goes once they are recorded
            self._after_round(lambda: self.send_message(text))
            return
        try:
            session.check_message_alone(text)
        except MessageRefused as refused:
            self._refused(refused)
            return
        if session.is_open and session.pending_prompt is not None and self.deck.cards:
            if not self.app.settings.day.reply_takes_highlighted:
                self.notify("Pick a card first (Esc to the cards): replying does not take the highlighted one "
                            "(day.reply_takes_highlighted is off).", severity="warning")
                return
            if not self._implicit_pick():
                return
            if not session.is_open:
                return  # the pick filled the day; the message stays in the editor
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

    def _implicit_pick(self) -> bool:
        """The owner replied without picking: the highlighted card becomes the reply (implicit)."""
        card = self.deck.highlighted_card or self.deck.card(0)
        if card is None or card.candidate_id is None:
            return False
        try:
            reply = self.session.pick(card.candidate_id, implicit=True)
        except (DayError, StoreError) as error:
            self.notify(str(error), severity="warning")
            return False
        self._replied(reply, card, "chosen", inner_after=False)
        return True

    def _refused(self, refused: MessageRefused) -> None:
        if refused.kind == "empty":
            return
        if refused.kind == "too_large_for_day":
            self.notify(f"Refused: {refused}.", title="Longer than a whole day", severity="error", timeout=12)
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

    @property
    def generating(self) -> str | None:
        """The kind of round running ('reply', 'more', 'inner', 'inner_after'), or None."""
        return self.round.kind if self.round is not None and self.round.running else None

    def start_generation(self, kind: str) -> None:
        """Start a round of what the owner asked for (`kind`): the day decides what to sample, a
        thread worker samples it, and the cards (or the inner line) show it as it streams."""
        session = self.session
        if session is None or self.app.engine is None or not session.is_open:
            return
        request = session.request(kind)
        if request is None:
            if kind == "inner":
                self.notify("No room left today for an inner line.", severity="warning")
            return
        if request.cards:
            self._round_cards = self.deck.start_round(request.k)
            self.deck.remove_class("-answered")
            self._update_deck_class()
        self.round = Round(session, request)
        self.set_status("The companion is thinking… Esc stops and keeps what it wrote." if request.cards
                        else "The inner voice… Esc stops.", busy=True)
        self._generate(self.round)

    @work(thread=True, group="generate")
    def _generate(self, round_: Round) -> None:
        try:
            results = round_.sample(self.app.engine, lambda: self.post_message(GenerationStreamed(round_)),
                                    self.throttle_s)
            self.post_message(GenerationDone(round_, results))
            for note in self.app.engine.take_notes():  # a fallback the engine took (llama.cpp off), said once
                self.app.call_from_thread(self.app.notify, note, title="Engine", severity="warning", timeout=15)
        except Exception as error:  # shown to the owner; the day is unchanged
            self.post_message(GenerationFailed(round_, f"{type(error).__name__}: {error}"))

    def _is_current(self, round_: Round) -> bool:
        return round_ is self.round and round_.running

    def on_generation_streamed(self, message: GenerationStreamed) -> None:
        if not self._is_current(message.round):
            return
        texts = message.round.take_text()
        if message.round.cards:
            for row, text in texts.items():
                if row < len(self._round_cards):
                    self._round_cards[row].set_text(text)
        elif texts:
            stream = self.query_one("#inner-stream", Static)
            stream.update(Content("inner  " + display_safe(texts.get(0, ""))))
            stream.add_class("-active")

    def on_generation_done(self, message: GenerationDone) -> None:
        round_ = message.round
        if not self._is_current(round_):
            return
        self.query_one("#inner-stream", Static).remove_class("-active")
        try:
            round_.finish(message.results)
        except (DayError, StoreError) as error:
            round_.take_then()
            what = "candidates" if round_.cards else "inner line"
            self.notify(f"The {what} could not be saved: {error}", title="Not saved", severity="error",
                        timeout=20 if round_.cards else None)
        if round_.cards:
            self._show_recorded(round_, [f for _, f in message.results])
        else:
            self._show_inner(round_)
        self.set_status(self._idle_hint())
        self.refresh_bindings()
        for action in round_.take_then():
            action()

    def _show_recorded(self, round_: Round, finishes: list[str]) -> None:
        """The round's cards now stand for their recorded candidates (rated, editable, pickable)."""
        for card, cand, finish in zip(self._round_cards, round_.candidates, finishes):
            card.candidate_id = cand.id
            card.set_text(cand.text)
            card.finish(stopped=finish != "end" and finish != "length")

    def _show_inner(self, round_: Round) -> None:
        if round_.inner_turn is not None:
            self._add_turn(round_.inner_turn)
        elif round_.kind == "inner":
            self.notify("The inner voice was silent.")
        self.update_gauge()
        if self.session.close_if_full():
            self._day_closed()

    def on_unmount(self) -> None:
        """Closing mid-stream: keep what was shown, and the ratings already given."""
        if self.round is not None and self.round.running:
            try:
                self.round.abandon()
            except (DayError, StoreError) as error:
                self.notify(f"The candidates could not be saved: {error}", title="Not saved", severity="error",
                            timeout=20)

    def on_generation_failed(self, message: GenerationFailed) -> None:
        round_ = message.round
        if not self._is_current(round_):
            return
        try:
            round_.fail()
        except (DayError, StoreError) as error:
            self.notify(f"The candidates could not be saved: {error}", title="Not saved", severity="error",
                        timeout=20)
        if round_.cards:
            self._show_recorded(round_, ["stopped"] * len(round_.candidates))
        self.query_one("#inner-stream", Static).remove_class("-active")
        self.notify(f"The model failed: {message.error}", title="Generation failed", severity="error")
        self.set_status(self._idle_hint())

    def stop_generation(self) -> None:
        if self.generating:
            self.round.stop()
            self.set_status("Stopping…", busy=True)

    def _after_round(self, action: Callable[[], None]) -> None:
        """Run `action` once the running round is done (its candidates recorded)."""
        self.round.then(action)

    def _when_recorded(self, action: Callable[[], None], stop: bool = True) -> bool:
        """Run `action` now, or (True returned) once the running round of candidates is recorded."""
        if self.generating and self.round.cards:
            if stop:
                self.stop_generation()
            self._after_round(action)
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
            self._amend_refused()
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

    def _amending(self) -> bool:
        """The cards belong to the last reply, which the owner may still amend (no message since)."""
        session = self.session
        return (session is not None and session.is_open and session.pending_prompt is None
                and session.amendable_reply is not None and bool(self.deck.cards))

    def _amend_refused(self) -> None:
        session = self.session
        if session is None or not session.is_open:
            self.notify("The day is over and the night has it: its replies can no longer be picked or amended.",
                        title="Too late to amend", severity="warning")
        else:
            self.notify("This turn is already answered and a message has followed it: only the last reply "
                        "can be amended.", severity="information")

    def _amended(self, reply, card: CandidateCard | None, mark: str | None) -> None:
        """An amendment replaced the last reply: show its new text and the cards' new marks."""
        for other in self.deck.cards:
            if other is card:
                other.set_marks(chosen=mark == "chosen", corrected=mark == "corrected", passed_over=False)
            else:
                other.set_marks(chosen=False, corrected=False, passed_over=True)
        for line in self.transcript.lines_for_turn(reply.turn.id):
            line.set_text(reply.turn.text)
        self.update_gauge()
        self.notify("The reply is amended; the night will learn the new one.", title="Amended")
        self._show_hint()

    def pick(self, number: int) -> None:
        if not self._need_cards():
            return
        cards = self.deck.cards
        if number > len(cards):
            self.notify(f"There is no card {number}; there are {len(cards)}.", severity="information")
            return
        if self._amending():
            card = cards[number - 1]
            try:
                reply = self.session.amend_pick(card.candidate_id)
            except (DayError, StoreError) as error:
                self.notify(str(error), title="Not amended", severity="warning")
                return
            self._amended(reply, card, "chosen")
            return
        if self.session is not None and self.session.pending_prompt is None and self.session.is_open:
            self._amend_refused()
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
        if card.candidate_id is None and self.round is not None and card in self._round_cards:
            self.round.rate(self._round_cards.index(card), stars)  # still streaming: recorded with its round
        else:
            try:
                self.session.rate(card.candidate_id, stars)
            except StoreError as error:
                self.notify(f"The rating could not be saved: {error}", title="Not saved", severity="error")
                return
        card.set_rating(stars)
        self.notify(f"Card {card.number}: " + (f"{stars} of 4 stars" if stars else "rating cleared"))

    def action_edit(self) -> None:
        if not self._need_cards():
            return
        if self._amending():
            self._amend_correction()
            return
        if not self._need_prompt():
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
                                            max_chars=MAX_MESSAGE_CHARS, original=card.text), done)

    def _current_reply_text(self) -> str:
        turn = self.session.amendable_reply
        return turn.text if turn is not None else ""

    def _amend_correction(self) -> None:
        card = self.deck.highlighted_card or self.deck.card(0)
        turn = self.session.amendable_reply
        start = turn.text if turn is not None and turn.candidate_id == card.candidate_id else card.text

        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                if text == card.text:
                    reply = self.session.amend_pick(card.candidate_id)
                else:
                    reply = self.session.amend_correction(card.candidate_id, text)
            except (MessageRefused, DayError, StoreError) as error:
                self.notify(str(error), title="Not amended", severity="error")
                return
            self._amended(reply, card, "chosen" if text == card.text else "corrected")

        self.app.push_screen(TextEditScreen(start, title=f"Amend the reply: correct candidate {card.number} again",
                                            max_chars=MAX_MESSAGE_CHARS, original=card.text), done)

    def action_write(self) -> None:
        if self._amending():
            def rewritten(text: str | None) -> None:
                if text is None:
                    return
                try:
                    reply = self.session.amend_written(text)
                except (MessageRefused, DayError, StoreError) as error:
                    self.notify(str(error), title="Not amended", severity="error")
                    return
                self._amended(reply, None, None)

            current = self._current_reply_text()
            self.app.push_screen(TextEditScreen(current, title="Amend the reply: write it as you wanted it",
                                                max_chars=MAX_MESSAGE_CHARS, original=current), rewritten)
            return
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

    def _replied(self, reply, card: CandidateCard | None, mark: str | None, inner_after: bool = True) -> None:
        """The reply joined the day: show it, mark the cards, and let the inner voice follow
        (not after an implicit pick: the owner's message follows at once)."""
        for other in self.deck.cards:
            if other is card:
                other.set_marks(chosen=mark == "chosen", corrected=mark == "corrected")
            else:
                other.set_marks(passed_over=True)
        self.deck.add_class("-answered")  # the answered cards give the room back to the transcript
        self._add_turn(reply.turn)
        self.update_gauge()
        self.message_input.focus()
        if self.session.close_if_full():
            self._day_closed()
            return
        self.set_status(self._idle_hint())
        if inner_after:
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
        """Annotate an inner line, or edit its annotation (the editor opens with the current one),
        until the night takes the day."""
        if self.session is None:
            return
        if not self.session.is_open:
            self.notify("The night has taken this day: its annotations can no longer be changed here.",
                        title="Too late to annotate", severity="warning")
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
            self._after_round(lambda: self.close_day(reason))
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
        if self.typing:
            self.action_focus_cards()
        else:
            self.message_input.focus()

    def action_focus_cards(self) -> None:
        (self.deck if self.deck.cards else self.transcript).focus()

    def action_focus_message(self) -> None:
        self.message_input.focus()

    def action_stop(self) -> None:
        self.stop_generation()

    def action_settings(self) -> None:
        from companion.screens.settings import SettingsScreen

        self.app.push_screen(SettingsScreen())
