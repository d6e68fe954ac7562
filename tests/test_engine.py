"""The engine: the day's model behind one lock, streaming whole text, reading only what is new."""

from __future__ import annotations

import threading

import torch

from companion.day.request import SampleRequest, sampling_from_settings
from companion.engine import Engine
from companion.store import Store
from companion.transcript import Turn, encode_turns, reply_prompt
from companion.model.sampling import SamplingSettings, sample_candidates


def _engine(home):
    store = Store.open(home.store_path)
    return Engine.load(home, store, device="cpu"), store


def _context(tokenizer):
    return encode_turns(tokenizer, [Turn("inner", "Good morning, Scout."), Turn("owner", "Hi there, how are you?")]).ids


def _ask(ctx, k: int, settings: SamplingSettings, slots=None) -> SampleRequest:
    return SampleRequest("reply", "companion", tuple(ctx), tuple(range(k) if slots is None else slots), settings)


def test_candidates_match_the_model_sampler_for_the_same_seed_and_slots(tiny_home):
    engine, store = _engine(tiny_home)
    settings = SamplingSettings(max_new_tokens=12, seed=7)
    ctx = _context(engine.tokenizer)
    ours = engine.generate(_ask(ctx, 3, settings, slots=[0, 1, 2]))
    theirs = sample_candidates(engine.model, reply_prompt(engine.tokenizer, ctx), 3, settings,
                               engine.stop_ids(), engine.tokenizer.special_ids)
    assert [g.tokens for g in ours] == [g.tokens for g in theirs]
    assert [g.finish for g in ours] == [g.finish for g in theirs]
    store.close()


def test_a_later_round_uses_new_slots_and_gives_new_candidates(tiny_home):
    engine, store = _engine(tiny_home)
    settings = SamplingSettings(max_new_tokens=10, seed=3)
    ctx = _context(engine.tokenizer)
    first = engine.generate(_ask(ctx, 2, settings, slots=[0, 1]))
    again = engine.generate(_ask(ctx, 2, settings, slots=[0, 1]))
    more = engine.generate(_ask(ctx, 2, settings, slots=[2, 3]))
    assert [g.tokens for g in first] == [g.tokens for g in again]
    assert [g.tokens for g in more] != [g.tokens for g in first]
    store.close()


def test_the_cached_day_gives_the_same_logits_as_reading_it_whole(tiny_home):
    engine, store = _engine(tiny_home)
    tok = engine.tokenizer
    day = [Turn("inner", "Good morning."), Turn("owner", "Hello!"), Turn("companion", "Hi, nice to see you."),
           Turn("owner", "What shall we do today?")]
    short = encode_turns(tok, day[:2]).ids
    full = encode_turns(tok, day).ids
    engine._read(short)
    cache, last = engine._read(full)  # only the new turns are read
    assert cache.length == len(full)
    whole, _ = engine.model(torch.tensor([full]))
    assert torch.allclose(last, whole[:, -1, :], atol=1e-4)
    # a prompt that diverges (an inner line asked instead of a reply) rewinds to the shared prefix
    _, branch = engine._read(short + [tok.role_ids["inner"]])
    ref, _ = engine.model(torch.tensor([short + [tok.role_ids["inner"]]]))
    assert torch.allclose(branch, ref[:, -1, :], atol=1e-4)
    store.close()


def test_streaming_gives_each_rows_whole_text_so_far_and_the_final_text_matches(tiny_home):
    engine, store = _engine(tiny_home)
    seen: dict[int, list[str]] = {}
    results = engine.generate(_ask(_context(engine.tokenizer), 2, SamplingSettings(max_new_tokens=8, seed=1)),
                              on_text=lambda row, text: seen.setdefault(row, []).append(text))
    for row, generated in enumerate(results):
        if generated.tokens:
            assert seen[row][-1] == generated.text
            assert len(seen[row]) == len(generated.tokens)  # one update per token, each the whole text
    store.close()


def test_stopping_keeps_what_was_generated(tiny_home):
    engine, store = _engine(tiny_home)
    count = {"n": 0}

    def on_text(row, text):
        count["n"] += 1

    hot = SamplingSettings(max_new_tokens=50, seed=1, temperature=2.0)
    results = engine.generate(_ask(_context(engine.tokenizer), 2, hot),
                              on_text=on_text, should_stop=lambda: count["n"] >= 4)
    assert all(g.finish in ("stopped", "end") for g in results)
    assert any(g.finish == "stopped" for g in results)
    store.close()


def test_the_lock_keeps_a_night_and_the_day_apart(tiny_home):
    engine, store = _engine(tiny_home)
    started = threading.Event()
    done = threading.Event()

    def day():
        started.set()
        engine.generate(_ask(_context(engine.tokenizer), 1, SamplingSettings(max_new_tokens=4, seed=0)))
        done.set()

    with engine.lock:  # what a night does while it trains
        t = threading.Thread(target=day)
        t.start()
        started.wait(5)
        assert not done.wait(0.3)
    t.join(10)
    assert done.is_set()
    store.close()


def test_reload_reads_the_new_current_checkpoint(tiny_home):
    from companion.history.weights import Weights

    engine, store = _engine(tiny_home)
    first = engine.checkpoint_id
    torch.manual_seed(5)
    model = type(engine.model)(engine.model.config)
    Weights(tiny_home, store).save(model, "nursery")  # a night checkpoint is current only once its night is accepted
    engine.reload()
    assert engine.checkpoint_id != first
    assert torch.equal(engine.model.embed.weight, model.embed.weight)
    store.close()


def test_next_speaker_is_one_of_the_roles(tiny_home):
    engine, store = _engine(tiny_home)
    assert engine.next_speaker(_context(engine.tokenizer)) in ("owner", "companion", "inner")
    assert sampling_from_settings(tiny_home.load_settings().sampling, 5).max_new_tokens == 5
    store.close()
