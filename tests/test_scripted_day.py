"""Scripted days (`companion/day/scripted.py`): a script of exchanges lived through the real DaySession
leaves in a real store what the app leaves there: the indicators, the reserved room, the good-night line,
candidates recorded with the reply length asked for, picks, corrections, written replies, stars, notes
and the model's inner line. No model is needed."""

from __future__ import annotations

import pytest

from companion.day import DayError, MessageRefused
from companion.day.scripted import Exchange, ScriptedDay, fill_day, live_day
from companion.store import Store
from companion.transcript import Turn, count_tokens

SEA = Exchange("Do you like the sea?", ("I love the sea.", "Not much."), pick=0, rate={0: 4, 1: 1}, note="lovely",
               tags=("keep",))
COLOUR = Exchange("What colour is it?", ("Green.", "Blue, mostly."), correct=(0, "Grey-blue in winter."),
                  inner="He seems cheerful today.", inner_tags=("keep",))
LIGHTHOUSE = Exchange("Where?", ("Here.",), write="By the pier.")


def test_a_scripted_day_is_recorded_as_the_app_records_one(tiny_home, tokenizer):
    settings = tiny_home.load_settings()
    with Store.open(tiny_home.store_path) as store:
        day, lived = live_day(tiny_home, store, [SEA, COLOUR, LIGHTHOUSE], tokenizer, block_size=256)
        turns = store.turns(day.id)
        sources = [t.source for t in turns]
        assert sources[0] == "greeting" and sources[-1] == "goodnight" and not day.is_open
        assert turns[0].text == settings.greeting_line() and turns[-1].text == settings.goodnight_line()
        # the first indicator comes after the owner's first message, before the companion speaks
        assert sources[1:3] == ["typed", "indicator"] and turns[2].text == settings.indicator_lines()[0]
        assert [t.text for t in lived[0].indicators] == [settings.indicator_lines()[0]]
        assert all(t.tokens == count_tokens(tokenizer, Turn(t.role, t.text)) for t in turns)
        assert sum(t.tokens for t in turns) <= day.budget_tokens == 192

        sea, colour, lighthouse = lived
        assert [c.text for c in sea.candidates] == ["I love the sea.", "Not much."]
        assert sea.candidates[0].max_tokens == settings.sampling.max_reply_tokens
        assert store.ratings(day_id=day.id) == {sea.candidates[0].id: 4, sea.candidates[1].id: 1}
        assert sea.reply.turn.source == "chosen" and sea.reply.turn.text == "I love the sea."
        note = store.annotation(turn_id=sea.reply.turn.id)
        assert list(note.tags) == ["keep"] and note.note == "lovely"
        assert colour.reply.turn.source == "correction" and colour.reply.turn.text == "Grey-blue in winter."
        assert colour.inner.source == "model_inner" and colour.inner.candidate_id is not None
        assert list(store.annotation(turn_id=colour.inner.id).tags) == ["keep"]
        assert lighthouse.reply.turn.source == "written" and lighthouse.reply.turn.text == "By the pier."


def test_filling_a_day_stops_at_the_gauge_and_passes_every_quarter(tiny_home, tokenizer):
    settings = tiny_home.load_settings()
    endless = (Exchange(f"Question number {i}?", ("An answer.", "Another answer."), pick=i % 2) for i in range(10**6))
    with Store.open(tiny_home.store_path) as store:
        day, lived = fill_day(tiny_home, store, endless, tokenizer, block_size=256)
        turns = store.turns(day.id)
    assert not day.is_open and 3 <= len(lived) < 40
    assert [t.text for t in turns if t.source == "indicator"] == list(settings.indicator_lines())
    used = sum(t.tokens for t in turns)
    assert used <= day.budget_tokens
    spare = day.budget_tokens - used  # what is left cannot hold one more exchange
    assert spare < count_tokens(tokenizer, Turn("owner", "Question number 99?")) + \
        count_tokens(tokenizer, Turn("companion", "Another answer."))


def test_a_message_left_waiting_can_be_answered_later(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, [waiting] = live_day(tiny_home, store, [Exchange("Are you there?", ("Yes.", "No."))], tokenizer,
                                  block_size=256, close=False)
        assert day.is_open and waiting.reply is None
        scripted = ScriptedDay(tiny_home, store, tokenizer, block_size=256)  # the open day, continued
        assert scripted.session.pending_prompt.id == waiting.prompt.id
        reply = scripted.session.pick(waiting.candidates[1].id)
        assert reply.turn.text == "No."


class Said:
    """An engine that says fixed lines (the `Sampler` the chat screen's round uses), and the inner voice
    after a reply: what a bench's model would do, without a model."""

    def __init__(self, lines):
        self.lines, self.requests = lines, []

    def next_speaker(self, context_ids) -> str:
        return "inner"

    def generate(self, request, on_text=None, should_stop=None):
        from companion.engine import Generated

        self.requests.append(request)
        lines = ["He is curious."] if request.role == "inner" else self.lines[: request.k]
        return [Generated(text, "length" if text.endswith("cut") else "end", []) for text in lines]


def test_candidates_can_come_from_an_engine_through_a_round(tiny_home, tokenizer):
    engine = Said(["Sampled one.", "Sampled two, cut", "Sampled three."])
    with Store.open(tiny_home.store_path) as store:
        scripted = ScriptedDay(tiny_home, store, tokenizer, block_size=256, engine=engine)
        lived = scripted.live(Exchange("Say something.", pick=1))
        recorded = store.candidates(day_id=scripted.day.id)
    assert [r.kind for r in engine.requests] == ["reply", "inner_after"]
    assert [(c.text, c.finish) for c in lived.candidates][:2] == [("Sampled one.", "end"), ("Sampled two, cut", "length")]
    assert lived.reply.turn.text == "Sampled two, cut" and lived.inner.text == "He is curious."
    assert [c.text for c in recorded if c.role == "inner"] == ["He is curious."]


def test_a_script_the_app_could_not_produce_is_refused_with_what_is_wrong(tiny_home, tokenizer):
    with pytest.raises(ValueError, match="at most one of pick, correct and write"):
        Exchange("Hi", ("Hello.",), pick=0, write="Hey.")
    settings = tiny_home.load_settings().with_value("sampling.max_reply_tokens", 8)
    long_candidate = "This candidate goes on and on for far more tokens than the day asks for."
    with Store.open(tiny_home.store_path) as store:
        scripted = ScriptedDay(tiny_home, store, tokenizer, settings, block_size=256)
        with pytest.raises(ValueError, match="longer than the 8 tokens"):
            scripted.live(Exchange("Hi", (long_candidate,), pick=0))
        with pytest.raises(ValueError, match="candidate 3 is not among its 2 options"):
            scripted.live(Exchange("Hi", ("Hello.", "Hey."), rate={3: 4}))
        with pytest.raises(MessageRefused) as refused:
            scripted.live(Exchange("word " * 300))
        assert refused.value.kind == "too_large_for_day"
        scripted.good_night()
        with pytest.raises(DayError):
            scripted.live(SEA)
        assert store.candidates(day_id=scripted.day.id) == []  # nothing of the refused scripts recorded
        assert [t.source for t in store.turns(scripted.day.id)] == ["greeting", "indicator", "goodnight"]
