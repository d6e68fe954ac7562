"""A generation round, headless: the day decides what to sample, the round samples it, and everything
shown lands in the store however the round ends (done, failed, abandoned), with the ratings given while
it streamed. No Textual here: a real store in a tmp folder, a tiny real model or scripted tokens."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, replace

import pytest

from companion.day import INNER_SLOT_BASE, DaySession, Round, SampleRequest
from companion.engine import Engine, sample
from companion.store import Store

BLOCK = 256  # tiny_home's block


@pytest.fixture()
def engine(tiny_home):
    store = Store.open(tiny_home.store_path)
    yield Engine.load(tiny_home, store, device="cpu")
    store.close()


@pytest.fixture()
def day(engine):
    return DaySession(engine.home, engine.store, engine.tokenizer, block_size=engine.block_size,
                      checkpoint_id=engine.checkpoint_id)


@dataclass
class Said:
    text: str
    finish: str


class Scripted:
    """An engine that says scripted lines, one character a step, calling `between()` after each step
    (the test acts there, as the owner would while the model works); `fail_at` raises at that step."""

    def __init__(self, lines: list[str], between=None, fail_at: int | None = None, speaker: str = "inner"):
        self.lines, self.between, self.fail_at, self.speaker = lines, between, fail_at, speaker
        self.requests: list[SampleRequest] = []

    def next_speaker(self, context_ids) -> str:
        return self.speaker

    def generate(self, request, on_text=None, should_stop=None):
        self.requests.append(request)
        lines = self.lines[: request.k]
        for step in range(max(len(line) for line in lines)):
            if step == self.fail_at:
                raise RuntimeError("the model fell over")
            if should_stop is not None and should_stop():
                return [Said(line[:step], "stopped") for line in lines]
            for row, line in enumerate(lines):
                if step < len(line) and on_text is not None:
                    on_text(row, line[: step + 1])
            if self.between is not None:
                self.between(step)
        return [Said(line, "end") for line in lines]


def test_the_day_decides_what_to_sample_and_the_screen_only_names_it(day):
    day.send("Hello, how are you?")
    reply = day.request("reply")
    assert (reply.kind, reply.role, reply.k, reply.slots) == ("reply", "companion", 3, (0, 1, 2))
    assert reply.context_ids == tuple(day.context_ids())
    assert reply.sampling.max_new_tokens == day.reply_tokens() and reply.sampling.temperature == 0.8
    Round(day, reply).finish([("a", "end"), ("b", "end"), ("c", "length")])
    more = day.request("more")
    assert more.slots == (3, 4, 5)  # "more" never repeats a candidate
    inner = day.request("inner")
    assert (inner.role, inner.slots) == ("inner", (INNER_SLOT_BASE + len(day.turns),))
    assert inner.sampling.max_new_tokens == day.inner_tokens()
    with pytest.raises(ValueError, match="does not sample 'recall'"):
        day.request("recall")


def test_a_request_with_bad_fields_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="unknown kind of sampling 'poem'"):
        SampleRequest("poem", "companion", (1, 2), (0,))
    with pytest.raises(ValueError, match="unknown role 'owner'"):
        SampleRequest("reply", "owner", (1, 2), (0,))
    with pytest.raises(ValueError, match="slots repeat"):
        SampleRequest("reply", "companion", (1, 2), (0, 0))
    with pytest.raises(ValueError, match="at least one slot"):
        SampleRequest("reply", "companion", (1, 2), ())


def test_the_same_request_gives_the_same_candidates_on_the_days_engine_and_on_the_nights_path(day, engine):
    day.send("What shall we do today?")
    request = day.request("reply")
    request = replace(request, sampling=replace(request.sampling, seed=5))  # the owner fixed the seed
    first = Round(day, request).sample(engine)
    again = Round(day, request).sample(engine)
    fresh = [(g.text, g.finish) for g in sample(engine.model, engine.tokenizer, request)]  # no day cache
    assert first == again == fresh
    assert len({text for text, _ in first}) > 1  # three slots, three draws


def test_a_round_records_what_it_sampled_with_the_settings_that_made_it(day, engine):
    prompt = day.send("Tell me about your morning.").owner_turn
    ran = Round(day, day.request("reply"))
    results = ran.sample(engine)
    ran.finish(results)
    stored = day.store.candidates(prompt_turn_id=prompt.id)
    assert [c.text for c in stored] == [t for t, _ in results] == [c.text for c in ran.candidates]
    assert [c.slot for c in stored] == [0, 1, 2] and ran.state == "done" and ran.recorded
    assert {c.max_tokens for c in stored} == {ran.request.sampling.max_new_tokens}
    assert {(c.temperature, c.top_k, c.top_p) for c in stored} == {(0.8, 50, 0.95)}


def test_ratings_given_while_the_cards_stream_are_recorded_with_the_round(day):
    prompt = day.send("hello").owner_turn
    ran = Round(day, day.request("reply"))

    def owner_rates(step: int) -> None:
        if step == 1:
            ran.rate(1, 4)  # card 2 is still being written
            ran.rate(2, 2)
            ran.rate(2, None)  # cleared again before the round ended

    assert day.store.candidates(prompt_turn_id=prompt.id) == []
    ran.finish(ran.sample(Scripted(["fine", "great", "so-so"], between=owner_rates)))
    [a, b, c] = day.store.candidates(prompt_turn_id=prompt.id)
    assert day.ratings() == {b.id: 4}
    ran.rate(0, 3)  # after the round: saved at once
    assert day.ratings() == {a.id: 3, b.id: 4}


def test_a_round_abandoned_mid_stream_keeps_what_was_shown_and_the_ratings_given(day, engine):
    prompt = day.send("Tell me a long story about the sea.").owner_turn
    ran = Round(day, day.request("reply"))
    shown = threading.Event()
    worker = threading.Thread(target=lambda: ran.finish(ran.sample(engine, wake=shown.set, pause_s=0.02)))
    worker.start()
    assert shown.wait(20)
    ran.rate(0, 3)
    ran.abandon()  # the app closes while the model writes
    worker.join(20)
    stored = day.store.candidates(prompt_turn_id=prompt.id)
    assert [c.finish for c in stored] == ["stopped"] * 3 and ran.state == "abandoned"
    assert any(c.text for c in stored)
    assert day.ratings() == {stored[0].id: 3}
    assert {c.round for c in stored} == {0}  # the late result was not recorded a second time


def test_a_failed_round_records_the_text_already_shown_as_stopped(day):
    prompt = day.send("hello").owner_turn
    ran = Round(day, day.request("reply"))
    ran.then(lambda: pytest.fail("an action queued for after the round ran although it failed"))
    with pytest.raises(RuntimeError):
        ran.sample(Scripted(["abcdef", "uvwxyz", "12"], fail_at=3))
    ran.fail()
    assert [(c.text, c.finish) for c in day.store.candidates(prompt_turn_id=prompt.id)] == [
        ("abc", "stopped"), ("uvw", "stopped"), ("12", "stopped")]
    assert ran.take_then() == []


def test_stopping_keeps_each_rows_text_and_queued_actions_run_after_recording(day):
    prompt = day.send("hello").owner_turn
    ran = Round(day, day.request("reply"))
    seen: list[int] = []
    ran.then(lambda: seen.append(len(day.store.candidates(prompt_turn_id=prompt.id))))
    ran.finish(ran.sample(Scripted(["abcdef", "uvwxyz", "12345"], between=lambda step: step == 1 and ran.stop())))
    assert [(c.text, c.finish) for c in day.store.candidates(prompt_turn_id=prompt.id)] == [
        ("ab", "stopped"), ("uv", "stopped"), ("12", "stopped")]
    for action in ran.take_then():
        action()
    assert seen == [3]


def test_an_inner_line_joins_the_day_and_is_recorded_as_an_inner_candidate(day):
    before = len(day.turns)
    ran = Round(day, day.request("inner"))
    ran.finish(ran.sample(Scripted(["I feel calm."])))
    assert ran.inner_turn is not None and ran.inner_turn.source == "model_inner"
    assert day.turns[-1].text == "I feel calm." and len(day.turns) == before + 1
    [candidate] = [c for c in day.store.candidates(day_id=day.day.id) if c.role == "inner"]
    assert candidate.max_tokens == ran.request.sampling.max_new_tokens


def test_no_inner_line_after_the_reply_when_the_model_hands_the_word_back(day):
    before = len(day.turns)
    ran = Round(day, day.request("inner_after"))
    engine = Scripted(["never said"], speaker="owner")
    ran.finish(ran.sample(engine))
    assert engine.requests == [] and ran.inner_turn is None and len(day.turns) == before
    assert day.store.candidates(day_id=day.day.id) == []


def test_a_round_on_a_closed_day_records_nothing_when_abandoned(day):
    day.send("hello")
    ran = Round(day, day.request("reply"))
    ran.sample(Scripted(["abc", "def", "ghi"], between=lambda step: step == 0 and day.good_night()))
    ran.abandon()
    assert day.store.candidates(day_id=day.day.id) == []


def test_the_day_and_its_rounds_import_neither_torch_nor_textual():
    code = ("import sys, companion.day; "
            "assert 'torch' not in sys.modules and 'textual' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_nights_recall_asks_a_lesson_as_the_day_would_and_draws_the_same_replies(day, engine):
    from companion.lessons.recall import ask

    question = "What is the name of my cat?"
    day.send(question)
    request = day.request("reply")
    request = replace(request, sampling=replace(request.sampling, seed=11, max_new_tokens=12))
    in_the_day = [text for text, _ in Round(day, request).sample(engine)]
    at_night = ask(engine.model, engine.tokenizer, day.settings, question, samples=3, seed=11, max_new_tokens=12)
    assert at_night == in_the_day
