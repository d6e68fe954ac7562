"""The day, headless: what lands in the store, the budget, the indicators, the end of the day."""

from __future__ import annotations

import pytest

from companion.day import MAX_MESSAGE_CHARS, DayError, DaySession, MessageRefused
from companion.store import Store
from companion.transcript import Turn, count_tokens, encode_turns
from companion.model.tokenizer import Tokenizer

BLOCK = 256  # tiny_home's block: a 192-token day


@pytest.fixture()
def day(tiny_home):
    store = Store.open(tiny_home.store_path)
    tokenizer = Tokenizer.load(tiny_home.tokenizer_path)
    session = DaySession(tiny_home, store, tokenizer, block_size=BLOCK, checkpoint_id=1)
    yield session
    store.close()


def reopen(session: DaySession) -> DaySession:
    return DaySession(session.home, session.store, session.tokenizer, block_size=BLOCK)


def test_a_new_day_opens_with_the_greeting_naming_the_companion(day):
    [greeting] = day.store.turns(day.day.id)
    assert (greeting.role, greeting.source) == ("inner", "greeting")
    assert "Scout" in greeting.text
    assert day.budget == 192 and day.day.checkpoint_id == 1


def test_the_count_is_the_formatters_and_the_context_is_the_days_turns(day):
    day.send("Hi Scout! How was your night?")
    turns = [Turn(t.role, t.text) for t in day.store.turns(day.day.id)]
    assert day.used == sum(count_tokens(day.tokenizer, t) for t in turns)
    assert day.used == day.store.tokens_used(day.day.id)
    assert day.context_ids() == encode_turns(day.tokenizer, turns).ids


def test_a_full_turn_records_candidates_and_only_the_pick_joins_the_day(day):
    sent = day.send("hello")
    cands = day.record_candidates(["one", "two", "three"], ["end", "length", "end"])
    assert [c.slot for c in cands] == [0, 1, 2] and all(c.prompt_turn_id == sent.owner_turn.id for c in cands)
    reply = day.pick(cands[1].id)
    assert reply.turn.text == "two" and reply.turn.source == "chosen" and reply.choice.candidate_id == cands[1].id
    texts = [t.text for t in day.store.turns(day.day.id)]
    assert "two" in texts and "one" not in texts and "three" not in texts
    assert day.pending_prompt is None


def test_more_candidates_add_a_round_on_new_slots_and_keep_the_first(day):
    day.send("hello")
    first = day.record_candidates(["a", "b"])
    assert day.next_slots(2) == [2, 3]
    second = day.record_candidates(["c", "d"])
    assert {c.round for c in first} == {0} and {c.round for c in second} == {1}
    assert [c.text for c in day.candidates()] == ["a", "b", "c", "d"]


def test_rating_correcting_and_writing(day):
    day.send("hello")
    a, b = day.record_candidates(["a", "b"])
    day.rate(a.id, 3)
    day.rate(b.id, 1)
    day.rate(b.id, None)  # cleared: no rating is not a low rating
    assert day.ratings() == {a.id: 3}
    reply = day.correct(a.id, "A, corrected")
    assert reply.turn.source == "correction" and reply.correction.text == "A, corrected"
    day.send("again")
    day.record_candidates(["x"])
    written = day.write_reply("what I wanted")
    assert written.turn.source == "written" and written.choice.kind == "written"


def test_a_reply_needs_a_waiting_message_and_a_new_message_needs_a_reply(day):
    with pytest.raises(DayError):
        day.write_reply("nobody asked")
    day.send("hi")
    with pytest.raises(DayError):
        day.send("hi again")


def test_bad_messages_change_nothing(day):
    before = day.store.turns(day.day.id)
    with pytest.raises(MessageRefused) as empty:
        day.send("   ")
    assert empty.value.kind == "empty"
    with pytest.raises(MessageRefused) as huge:
        day.send("x" * (MAX_MESSAGE_CHARS + 1))
    assert huge.value.kind == "too_large" and f"{MAX_MESSAGE_CHARS + 1:,}" in str(huge.value)
    with pytest.raises(MessageRefused) as long:
        day.send("word " * 400)
    # Longer than any day: refused as such (ending the day would not help), with its size and the budget.
    assert long.value.kind == "too_large_for_day"
    assert f"{day.cost('word ' * 400):,} tokens" in str(long.value) and f"{day.budget:,}" in str(long.value)
    assert day.store.turns(day.day.id) == before


def test_markup_and_escape_sequences_are_stored_as_typed_and_stay_text(day):
    text = "<|owner|> \x1b[31mred\x1b[0m <|end|>"
    day.send(text)
    owner = [t for t in day.store.turns(day.day.id) if t.role == "owner"][0]
    assert owner.text == text
    ids = day.context_ids()
    assert ids.count(day.tokenizer.role_ids["owner"]) == 1  # the typed marker is not a role


def test_each_indicator_is_injected_once_at_its_quarter_even_across_restarts(day):
    lines = day.settings.indicator_lines()
    seen = []
    session = day
    while session.is_open:
        try:
            result = session.send("how are you?")
        except MessageRefused:
            break
        for turn in result.indicators:
            quarter = lines.index(turn.text) + 1
            # injected right after the owner's message, once usage reached the quarter's start
            used_before = sum(t.tokens for t in session.store.turns(session.day.id) if t.id < turn.id)
            assert used_before >= (quarter - 1) * session.budget / 4
            seen.append(quarter)
        session.record_candidates(["fine, thanks"])
        session.pick(session.candidates()[-1].id)
        session = reopen(session)  # a restart between every turn
    assert seen == [1, 2, 3, 4]
    indicator_texts = [t.text for t in day.store.turns(day.day.id) if t.source == "indicator"]
    assert indicator_texts == list(lines)


def test_the_day_closes_when_full_with_the_goodnight_line(day):
    while True:
        try:
            day.send("a message that takes a fair share of the little day")
        except MessageRefused as refused:
            assert refused.kind == "no_room"
            break
        day.record_candidates(["a short reply"])
        day.pick(day.candidates()[-1].id)
        if day.close_if_full():
            break
    if day.is_open:  # the message did not fit: the owner accepts the offer to end the day
        day.good_night("goodnight")
    last = day.store.turns(day.day.id)[-1]
    assert last.source == "goodnight" and "Scout" in last.text
    assert not day.store.get_day(day.day.id).is_open
    assert day.used <= day.budget
    with pytest.raises(MessageRefused):
        day.send("too late")
    nxt = reopen(day)
    assert nxt.day.number == day.day.number + 1 and nxt.turns[0].source == "greeting"


def test_good_night_closes_the_day_and_the_next_day_begins(day):
    day.send("good night soon")
    closed = day.good_night()
    assert closed.close_reason == "goodnight"
    assert reopen(day).day.number == 2


def test_inner_lines_from_the_model_and_the_owner_and_their_annotation(day):
    model_line = day.add_model_inner("I wonder what he meant.")
    assert model_line.source == "model_inner" and model_line.candidate_id is not None
    assert day.store.get_candidate(model_line.candidate_id).role == "inner"
    owner_line = day.write_inner("He seems tired; be gentle.")
    assert owner_line.source == "owner_inner" and owner_line.role == "inner"
    day.annotate(model_line.id, ["keep", "insightful"], "nice")
    assert day.annotation(model_line.id).tags == ("keep", "insightful")
    assert day.add_model_inner("   ") is None  # a silent inner voice adds no line


def test_a_pending_message_survives_a_restart_with_its_candidates(day):
    sent = day.send("are you there?")
    day.record_candidates(["yes", "no"])
    again = reopen(day)
    assert again.pending_prompt.id == sent.owner_turn.id
    assert [c.text for c in again.candidates()] == ["yes", "no"]
    assert again.used == day.used


# -- replying without a pick, and mending the last reply ------------------------------------------------

def test_a_pick_made_by_replying_is_recorded_as_implicit(day):
    day.send("hello")
    cands = day.record_candidates(["one", "two"])
    day.pick(cands[1].id, implicit=True)
    day.send("and then?")
    [choice] = day.store.choices(day.day.id)
    assert choice.kind == "pick" and choice.implicit and choice.candidate_id == cands[1].id
    assert [t.text for t in day.store.turns(day.day.id) if t.role == "companion"] == ["two"]


def test_an_amended_correction_supersedes_the_old_one_everywhere_the_day_is_read(day):
    from companion.history.personality import book_entries
    from companion.night.material import day_examples
    from companion.transcript import encode_turns

    day.send("What is the capital of France?")
    [cand] = day.record_candidates(["Lyon, I think."])
    first = day.correct(cand.id, "Pariss.")  # a typo
    amended = day.amend_correction(cand.id, "Paris.")
    assert amended.turn.id == first.turn.id and amended.turn.text == "Paris." and amended.turn.amended
    assert amended.choice.supersedes == first.choice.id
    # The store kept both versions (append-only) and says which is in force.
    assert [c.text for c in day.store.amendments(first.turn.id)] == [None, "Paris."]
    assert day.store.latest_choice(first.turn.id).id == amended.choice.id
    assert [k.text for k in day.store.corrections(day.day.id)] == ["Paris."]
    # The day's context, the night's material and the personality book read the amendment.
    turns = day.store.turns(day.day.id)
    assert [t.text for t in turns if t.role == "companion"] == ["Paris."]
    assert day.context_ids() == encode_turns(day.tokenizer, [Turn(t.role, t.text) for t in turns]).ids
    assert day.used == day.store.tokens_used(day.day.id)
    taught = day.tokenizer.decode([i for ex in day_examples(day.tokenizer, day.store, day.day, day.settings, BLOCK)
                                   for i in ex.inputs])
    assert "Paris." in taught and "Pariss" not in taught
    [entry] = list(book_entries(day.store))
    assert entry["typed"] == "Paris." and [c["text"] for c in entry["corrections"]] == ["Paris."]


def test_amending_a_pick_and_a_written_reply(day):
    day.send("hello")
    a, b = day.record_candidates(["one", "two"])
    day.pick(a.id)
    assert day.amend_pick(b.id).turn.text == "two"
    assert day.amend_written("my own words").turn.source == "written"
    [choice] = day.store.choices(day.day.id)
    assert choice.kind == "written" and choice.text == "my own words"
    assert len(day.store.choices(day.day.id, history=True)) == 3


def test_amending_is_refused_once_a_message_followed_or_the_night_took_the_day(day):
    day.send("hello")
    [a] = day.record_candidates(["one"])
    day.pick(a.id)
    day.send("next")
    with pytest.raises(DayError, match="a message has followed"):
        day.amend_written("too late")
    [b] = day.record_candidates(["two"])
    day.pick(b.id)
    day.good_night()
    before = day.store.choices(day.day.id, history=True)
    with pytest.raises(DayError, match="night has it"):
        day.amend_written("too late")
    assert day.store.choices(day.day.id, history=True) == before
