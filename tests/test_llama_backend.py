"""The day's generation on llama.cpp (`[engine] backend = "llama.cpp"`): a tiny model trained a few steps
on formatted conversations, exported to GGUF and run by llama.cpp, against the same weights in PyTorch.

The tests that need llama.cpp skip, saying why, where the optional wheel is not installed or will not
load (CI); the setting's check and the fall-back to PyTorch run everywhere.
"""

from __future__ import annotations

import stat
import sys
from dataclasses import replace

import pytest
import torch

from companion.birth.corpus import starter_documents
from companion.day.request import SampleRequest
from companion.engine import Engine
from companion.history.weights import Weights
from companion.llamacpp import binding, unavailable
from companion.llamacpp.gguf_cache import CACHE_DIR
from companion.llamacpp.runner import LlamaRunner
from companion.model.sampling import SamplingSettings, sample_candidates, sample_steps
from companion.model.transformer import Transformer
from companion.settings import SettingsError, load_settings, update_settings_file
from companion.store import Store
from companion.transcript import Turn, encode_turns
from tests.conftest import GOODNIGHT, GREETING, make_tiny_home, trained_tiny

WHY_NOT = unavailable()
needs_llama = pytest.mark.skipif(WHY_NOT is not None, reason=f"llama.cpp cannot run here: {WHY_NOT}")

GREEDY = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0, max_new_tokens=24)
SAMPLED = SamplingSettings(max_new_tokens=24, seed=7)  # the defaults: temperature 0.8, top-k 50, top-p 0.95, penalty 1.1
OWNER_SAYS = [Turn("owner", "Hey, did you sleep well? I had a long day at work.")]


@pytest.fixture(scope="module")
def trained(tokenizer):
    """A 2-layer model that has read 300 formatted starter conversations for 120 steps (its turns end)."""
    docs = starter_documents(held_out=False, greeting=GREETING, goodnight=GOODNIGHT, limit=300)
    ids = torch.tensor([i for doc in docs for i in encode_turns(tokenizer, doc).ids])
    return trained_tiny(ids, tokenizer.vocab_size, 256, 120), ids


@pytest.fixture()
def home(tmp_path, tokenizer, trained, one_torch_thread):
    """A companion living on the trained weights (its current checkpoint)."""
    home = make_tiny_home(tmp_path / "companions", tokenizer, block_size=256)
    with Store.open(home.store_path) as store:
        Weights(home, store).save(trained[0], "nursery", step=120)
    return home


def reply(engine: Engine, slots, sampling: SamplingSettings):
    ctx = encode_turns(engine.tokenizer, OWNER_SAYS).ids
    return [(g.tokens, g.finish) for g in engine.generate(SampleRequest("reply", "companion", ctx, tuple(slots), sampling))]


# -- everywhere ------------------------------------------------------------------------------------


def test_the_backend_setting_is_torch_or_llama_cpp_and_anything_else_is_refused_naming_it(tiny_home):
    assert load_settings(tiny_home.settings_path).engine.backend == "torch"
    before = tiny_home.settings_path.read_bytes()
    for bad in ("llama", "LLAMA.CPP", "", 3):
        with pytest.raises(SettingsError, match=r"engine\.backend = .*torch or llama\.cpp"):
            update_settings_file(tiny_home.settings_path, "engine.backend", bad)
    assert tiny_home.settings_path.read_bytes() == before
    assert update_settings_file(tiny_home.settings_path, "engine.backend", "llama.cpp").engine.backend == "llama.cpp"
    assert load_settings(tiny_home.settings_path).engine.backend == "llama.cpp"


def not_installed(monkeypatch) -> None:
    """As if the wheel had never been installed: importing it fails as it would."""
    monkeypatch.setitem(sys.modules, "llama_cpp_py_sync", None)
    monkeypatch.setitem(sys.modules, "llama_cpp_py_sync._cffi_bindings", None)
    monkeypatch.setattr(binding, "_library", None)


def test_without_llama_cpp_the_engine_generates_with_pytorch_and_says_why_once(tiny_home, monkeypatch, one_torch_thread):
    not_installed(monkeypatch)
    update_settings_file(tiny_home.settings_path, "engine.backend", "llama.cpp")
    with Store.open(tiny_home.store_path) as store:
        engine = Engine.load(tiny_home, store, device="cpu")
        assert engine.backend == "llama.cpp"
        [note] = [n for n in engine.notes if "llama.cpp" in n]
        assert "not installed" in note and "pip install llama-cpp-py-sync" in note and "PyTorch" in note
        assert len(reply(engine, [0, 1], SAMPLED)) == 2  # it generates all the same
        assert engine.reload() == [] and engine.prepare_backend() == []  # said once, not at every reload
        assert not (tiny_home.path / CACHE_DIR).exists()  # nothing exported for a runner that cannot run


# -- with llama.cpp --------------------------------------------------------------------------------


@needs_llama
def test_greedy_tokens_on_llama_cpp_equal_ours(trained, tokenizer, tmp_path, one_torch_thread):
    from companion.model.interop.gguf import export_gguf

    model, ids = trained
    path = export_gguf(model.state_dict(), model.config, tokenizer, tmp_path / "t.gguf", dtype="f16",
                       eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
    runner = LlamaRunner(path, model.config.block_size, threads=1)
    try:
        for start in (0, 5000, 20000, 40000):
            prompt = ids[start : start + 40].tolist()
            [ours] = sample_candidates(model, prompt, 1, GREEDY, stop_ids=set())
            last, step = runner.start(prompt, 1, GREEDY.max_new_tokens)
            [theirs] = sample_steps(step, last, prompt, 1, GREEDY.max_new_tokens, GREEDY, stop_ids=set())
            assert theirs.tokens == ours.tokens and len(ours.tokens) == GREEDY.max_new_tokens
            with torch.no_grad():
                logits = model(torch.tensor([prompt]))[0][0, -1]
            assert (runner.read(prompt)[0] - logits).abs().max() < 0.05  # f16 weights: the stated drift
    finally:
        runner.close()


@needs_llama
def test_k_candidates_on_llama_cpp_are_ours_slot_for_slot_and_a_reply_stops_at_the_end_of_turn(home):
    update_settings_file(home.settings_path, "engine.backend", "llama.cpp")
    with Store.open(home.store_path) as store:
        ours = Engine.load(home, store, device="cpu", backend="torch")
        engine = Engine.load(home, store, device="cpu")
        assert engine.backend == "llama.cpp" and engine._llama is not None and not engine.notes
        rows = reply(engine, [0, 1, 2], SAMPLED)
        assert rows == reply(ours, [0, 1, 2], SAMPLED)  # same seeds, same penalty, same stops
        assert len({tuple(tokens) for tokens, _ in rows}) == 3  # three different candidates
        assert reply(engine, [1], SAMPLED) == [rows[1]]  # slot 1 alone is slot 1 of the batch
        assert reply(engine, [3, 4, 5], SAMPLED) != rows  # "more": new slots, new candidates
        assert {finish for _, finish in rows} <= {"end", "length"} and any(f == "end" for _, f in rows)
        to_the_end = replace(GREEDY, max_new_tokens=40)  # this model ends its greedy reply after 28 tokens
        [(tokens, finish)] = reply(engine, [0], to_the_end)
        assert finish == "end" and len(tokens) < 40 and not set(tokens) & set(engine.stop_ids())
        assert [(tokens, finish)] == reply(ours, [0], to_the_end)
        ctx = encode_turns(engine.tokenizer, OWNER_SAYS).ids
        assert engine.next_speaker(ctx) == ours.next_speaker(ctx)


@needs_llama
def test_the_export_is_private_keyed_by_the_checkpoint_and_replaced_when_the_weights_change(home, trained):
    with Store.open(home.store_path) as store:
        engine = Engine.load(home, store, device="cpu", backend="llama.cpp")
        folder = home.path / CACHE_DIR
        [first] = list(folder.iterdir())
        assert first.name.startswith(f"checkpoint-{engine.checkpoint_id}-") and first.suffix == ".gguf"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(first.stat().st_mode) == 0o600
        mtime = first.stat().st_mtime_ns
        engine.reload()  # the same checkpoint: the cached file is used, not written again
        assert list(folder.iterdir()) == [first] and first.stat().st_mtime_ns == mtime

        changed = Transformer(trained[0].config)
        changed.load_state_dict(trained[0].state_dict())
        with torch.no_grad():
            changed.embed.weight.mul_(1.5)  # tied: the output head changes too
        Weights(home, store).save(changed, "nursery", step=240)  # new current weights, as a night or a restore makes
        engine.reload()
        [second] = list(folder.iterdir())
        assert second != first and second.name.startswith(f"checkpoint-{engine.checkpoint_id}-")
        ours = Engine.load(home, store, device="cpu", backend="torch")
        assert reply(engine, [0, 1], SAMPLED) == reply(ours, [0, 1], SAMPLED)  # the new weights run

        engine.use_backend("torch")  # the settings screen's save: the runner goes, PyTorch generates
        reply(engine, [0], SAMPLED)
        assert engine._llama is None


@needs_llama
def test_llama_cpp_decodes_on_the_engine_threads_setting(home):
    update_settings_file(home.settings_path, "engine.threads", 2)
    with Store.open(home.store_path) as store:
        engine = Engine.load(home, store, device="cpu", backend="llama.cpp")
        ctx = engine._llama.ctx
        reply(engine, [0], SAMPLED)
        assert ctx.lib.llama_n_threads(ctx._ctx) == 2
        engine.threads = 1  # the settings screen's save
        reply(engine, [0], SAMPLED)
        assert ctx.lib.llama_n_threads(ctx._ctx) == 1




@needs_llama
def test_a_step_llama_cpp_refuses_falls_back_to_pytorch_for_that_reply_and_says_so_once(tiny_home, tiny_texts, one_torch_thread):
    with Store.open(tiny_home.store_path) as store:
        engine = Engine.load(tiny_home, store, device="cpu", backend="llama.cpp")
        ours = Engine.load(tiny_home, store, device="cpu", backend="torch")
        runner = engine._llama
        runner.block_size = 1  # its cache may not grow: 256 cells, llama.cpp's least
        runner.ctx.resize(16)
        turns = [Turn("owner", text) for text in tiny_texts[:40]]
        ctx = encode_turns(engine.tokenizer, turns).ids[:150]
        request = SampleRequest("reply", "companion", ctx, (0, 1, 2), SamplingSettings(max_new_tokens=64, seed=3))
        out = engine.generate(request)  # 150 + 3 rows x 64 tokens do not fit: llama_decode refuses a step
        assert [g.tokens for g in out] == [g.tokens for g in ours.generate(request)]  # PyTorch made them
        [note] = engine.take_notes()
        assert "llama_decode failed" in note and "generating with PyTorch" in note
        assert engine._llama is None and engine.take_notes() == []


async def test_the_app_on_llama_cpp_without_it_tells_the_owner_once_and_replies_with_pytorch(tiny_home, monkeypatch):
    from tests.test_app import app_for, quick, ready, send

    not_installed(monkeypatch)
    quick(tiny_home, **{"engine.backend": "llama.cpp"})
    app = app_for(tiny_home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello Scout, how are you?")
        assert len(chat.deck.cards) == 3
        said = [n.message for n in app.notices if "llama.cpp" in n.message]
        assert len(said) == 1 and "not installed" in said[0] and "PyTorch" in said[0]
        settings = app.settings
        app.apply_settings(settings.with_value("engine.backend", "torch"))  # the settings screen's saves
        app.apply_settings(settings.with_value("engine.backend", "llama.cpp"))
        await app.workers.wait_for_complete()  # the worker that makes the runner, and says why not
        await pilot.pause(0.2)
        assert app.engine.backend == "llama.cpp" and app.engine._llama is None
        assert len([n for n in app.notices if "llama.cpp" in n.message]) == 1  # said once


@needs_llama
async def test_the_app_replies_on_llama_cpp(home):
    from tests.test_app import app_for, quick, ready, send

    quick(home, **{"engine.backend": "llama.cpp"})
    app = app_for(home)
    async with app.run_test(size=(110, 40)) as pilot:
        chat = await ready(pilot)
        await send(pilot, chat, "Hello Scout, how are you?")
        assert len(chat.deck.cards) == 3 and app.engine._llama is not None
        assert not [n for n in app.notices if "llama.cpp" in n.message]
    assert [p.suffix for p in (home.path / CACHE_DIR).iterdir()] == [".gguf"]
