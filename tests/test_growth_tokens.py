"""Adding tokens (`companion grow --add-tokens`): old ids and old logits never change, old text encodes as
before, the new tokenizer is kept beside the weights that read with it, a restore across the growth and
back loads the right one, and a kill at any moment leaves the old weights (and tokenizer) current."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
import torch

from companion.day import DaySession
from companion.engine import Engine
from companion.growth.grow import run_growth
from companion.growth.plan import GrowthError, checkpoint_size, plan_growth
from companion.growth.tokens import choose_tokens, read_entries
from companion.night.pipeline import run_night
from companion.history.restore import restore
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import read_meta
from companion.model.transformer import Transformer
from companion.model.vocab import add_tokens
from tests.conftest import tiny_config
from tests.test_growth import current_state, quick_settings
from tests.test_night import script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WORDS = ["Pemberton", "Zanzibar", "okapi"]


@pytest.fixture(scope="module")
def trained(tokenizer, tiny_texts) -> Transformer:
    """A tiny model trained a few steps on real starter lines, so its logits are not those of noise."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(vocab_size=tokenizer.vocab_size))
    stream = torch.tensor([i for text in tiny_texts for i in tokenizer.encode(text)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(8):
        rows = stream[step * 600:(step + 1) * 600][:5 * 120].view(5, 120)
        _, loss = model(rows[:, :-1], rows[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def grow_tokens(home, store, words, **kwargs):
    plan = plan_growth(home, store, tokens=list(words), memory=None)
    return run_growth(home, store, plan, quick_settings(home), probe_windows=4, **kwargs)


def test_adding_tokens_keeps_every_old_logit_and_round_trips_all_old_text(trained, tokenizer, tiny_texts):
    choice = choose_tokens(tokenizer, WORDS)
    assert choice.add == (" Pemberton", "Pemberton", " Zanzibar", "Zanzibar", " okapi", "okapi")
    old_ids = [tokenizer.encode(text) for text in tiny_texts]
    windows = torch.tensor([i for ids in old_ids[:40] for i in ids][:4 * 100]).view(4, 100)
    with torch.no_grad():
        before = trained(windows)[0]
    model = Transformer(trained.config)
    model.load_state_dict(trained.state_dict())
    added = add_tokens(model.eval(), tokenizer, list(choice.add), special=False)
    with torch.no_grad():
        after = added.model(windows)[0]
    old = tokenizer.vocab_size
    assert after.shape[-1] == old + 6 and added.ids == {t: old + i for i, t in enumerate(choice.add)}
    assert (after[..., :old] - before).abs().max() <= 1e-5  # measured 0.0
    from companion.model.tokenizer import Tokenizer

    new = Tokenizer(added.tokenizer)
    for text, ids in zip(tiny_texts, old_ids):
        assert new.decode(new.encode(text)) == text
        assert new.encode(text) == ids, text  # none of the starter lines holds the new words
    day = "Trey met a Pemberton at Zanzibar, and an okapi. Pembertons!"
    ids = new.encode(day)
    assert {old, old + 2, old + 4} <= set(ids) and new.decode(ids) == day
    # each new row starts as the mean of the rows of the pieces it replaces
    pieces = tokenizer.encode(" Zanzibar")
    expected = trained.embed.weight[torch.tensor(pieces)].mean(0)
    assert torch.allclose(added.model.embed.weight[old + 2], expected)


def test_an_add_tokens_growth_is_a_checkpoint_with_its_own_tokenizer(tiny_home):
    legacy = tiny_home.tokenizer_path.read_bytes()
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        small = weights.current()
        result = grow_tokens(tiny_home, store, WORDS)
        assert result.status == "grown", result.reason
        assert result.max_logit_change <= 1e-5 and result.texts_checked > 0
        grown = weights.current()
        assert grown.id == result.checkpoint.id and grown.parent_id == small.id and grown.reason == "growth"
        meta = read_meta(weights.path_of(grown))
        name = meta.extra["tokenizer"]
        assert meta.extra["growth"] == "tokens" and json.loads(meta.extra["tokens"])[:2] == [" Pemberton", "Pemberton"]
        path = tiny_home.checkpoints_dir / name
        assert weights.tokenizer_path(grown) == path and weights.tokenizer_path(small) == tiny_home.tokenizer_path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert checkpoint_size(weights.path_of(grown)) == ("w64 ctx256 v518", "added 6 tokens: vocabulary 512 -> 518")
        assert checkpoint_size(weights.path_of(small)) == ("w64 ctx256", "")
        loaded = weights.load_current()
        assert loaded.model.config.vocab_size == 518 and loaded.tokenizer().vocab_size == 518
    assert tiny_home.tokenizer_path.read_bytes() == legacy  # the older checkpoints keep theirs
    assert "Grown: 6 tokens added" in result.lines()[0]


def _a_day_works(home, store, word_id=None):
    """Open the day on the current weights and sample a reply: what the app does each morning."""
    engine = Engine.load(home, store, device="cpu")
    session = DaySession(home, store, engine.tokenizer, block_size=engine.block_size,
                         checkpoint_id=engine.checkpoint_id)
    session.send("Did you see the Pemberton today?")
    if word_id is not None:
        assert word_id in session.context_ids()
    replies = engine.generate(session.request("reply"))  # what the chat screen asks for
    assert len(replies) == session.settings.sampling.candidates and all(t < engine.model.config.vocab_size for r in replies for t in r.tokens)
    session.write_reply("I did, by the river.")
    return engine


def test_restore_across_the_add_tokens_growth_and_back_loads_the_right_tokenizer_and_the_day_works(
        tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        small = weights.current()
        grown = grow_tokens(tiny_home, store, WORDS).checkpoint
        back = restore(tiny_home, store, small.id)
        engine = _a_day_works(tiny_home, store)
        assert engine.tokenizer.vocab_size == 512 and engine.model.config.vocab_size == 512
        restore(tiny_home, store, back.saved.id)  # undo: the grown weights, with their tokenizer
        engine = _a_day_works(tiny_home, store, word_id=512)
        assert engine.tokenizer.vocab_size == 518 and engine.checkpoint.checksum == grown.checksum
        # a night on the grown weights keeps their tokenizer for the weights it saves
        store.close_day(store.current_day().id, "goodnight")
        day, _ = script_day(tiny_home, store, engine.tokenizer)
        report = run_night(tiny_home, store, day.id, quick_settings(tiny_home), "cpu", probe_windows=4, lessons=[])
        assert report.status == "accepted", report.reason
        after = weights.current()
        assert after.reason == "night" and weights.tokenizer_path(after) == weights.tokenizer_path(grown)
        assert weights.load_current().tokenizer().encode(" Pemberton") == [512]


def test_tokens_that_already_exist_are_named_and_skipped(tiny_home, tokenizer):
    single = next(t for t in ("the", " the", "a", " a") if len(tokenizer.encode(t)) == 1)
    before = current_state(tiny_home)
    with Store.open(tiny_home.store_path) as store:
        with pytest.raises(GrowthError, match=r"nothing to add: .*already one token .*role token"):
            plan_growth(tiny_home, store, tokens=[" " + single.strip(), "<|owner|>"], memory=None)
        assert current_state(tiny_home) == before
        plan = plan_growth(tiny_home, store, tokens=["Pemberton", "<|inner|>", "Pemberton"], memory=None)
        assert plan.tokens == (" Pemberton", "Pemberton")
        assert plan.skipped == (("<|inner|>", "a role token (id 4); it is never text"),)
        run_growth(tiny_home, store, plan, quick_settings(tiny_home), probe_windows=4)
        again = plan_growth(tiny_home, store, tokens=["Pemberton", "okapi"], memory=None)
        assert again.tokens == (" okapi", "okapi")
        assert [why for _, why in again.skipped] == ["already in the vocabulary (id 512)",
                                                     "already in the vocabulary (id 513)"]


def test_words_come_from_the_command_line_or_from_files(tmp_path):
    listing = tmp_path / "names.txt"
    listing.write_text("# names\nPemberton\n\n  okapi\nZanzibar  \n", encoding="utf-8")
    assert read_entries(["Trey", str(listing)]) == ["Trey", "Pemberton", "  okapi", "Zanzibar"]


def _cli(home, *args):
    from companion.cli import main

    return main(["--home", str(home.path.parent), "grow", "--add-tokens", *args])


def test_the_cli_refuses_bad_tokens_in_one_line_and_changes_nothing(tiny_home, tmp_path, capsys):
    binary = tmp_path / "bad.txt"
    binary.write_bytes(b"ok\n\xff\xfe\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    before = current_state(tiny_home)
    for args, words in [([str(binary)], "bad.txt: not UTF-8 text"),
                        ([str(tmp_path)], "is a folder"),
                        (["./missing.txt"], "./missing.txt: no such file"),
                        ([str(empty)], "no tokens given"),
                        (["   "], "only spaces"),
                        (["x" * 65], "at most 64"),
                        (["tab\there"], "control character (U+0009)"),
                        (["<|owner|>"], "nothing to add: \"<|owner|>\" a role token"),
                        (["Pemberton"], "not confirmed")]:
        code = _cli(tiny_home, *args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("companion grow: ") and words in err and err.count("\n") == 1, (args, err)
    assert current_state(tiny_home) == before


def test_the_cli_adds_tokens_with_a_preview_naming_each_one(tiny_home, capsys):
    code = _cli(tiny_home, "Pemberton", "<|owner|>", "--yes")
    out = capsys.readouterr().out
    assert code == 0, out
    assert '+ " Pemberton"  id 512, was' in out and 'skipped "<|owner|>": a role token' in out
    assert "Grown: 2 tokens added, vocabulary 512 -> 514" in out


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    from companion.home import Home
    from companion.store import Store
    from companion.growth.plan import plan_growth
    from companion.growth.grow import run_growth
    import companion.history.weights as weights_module
    import companion.model.checkpoint as checkpoint_module

    where = sys.argv[2]
    if where == "tokenizer written":  # after the new tokenizer, before its checkpoint
        weights_module.Weights.save = lambda *a, **k: os._exit(9)
    elif where == "checkpoint half written":  # the kill lands inside the checkpoint's write
        checkpoint_module.atomic_write_bytes = lambda path, data, **k: (
            open(str(path.parent / ('.' + path.name + '.x.tmp')), 'wb').write(data[: len(data) // 2]), os._exit(9))
    elif where == "checkpoint recorded":  # whole and recorded, CURRENT not yet moved
        weights_module.Weights.set_current = lambda *a, **k: os._exit(9)
    home = Home(sys.argv[1])
    with Store.open(home.store_path) as store:
        plan = plan_growth(home, store, tokens=["Pemberton", "okapi"], memory=None)
        run_growth(home, store, plan, probe_windows=4)
    os._exit(0)
""")


@pytest.mark.parametrize("where", ["tokenizer written", "checkpoint half written", "checkpoint recorded"])
def test_a_kill_during_the_growth_leaves_the_old_weights_and_tokenizer_current(tiny_home, where):
    before = current_state(tiny_home)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_home.path), where], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 9, done.stderr
    assert current_state(tiny_home)[0] == before[0] and current_state(tiny_home)[2] == before[2]
    kept = [p for p in tiny_home.checkpoints_dir.iterdir() if p.name.startswith("tokenizer-")]
    assert len(kept) == 1  # the kill came after the new tokenizer was written: it lies unused
    with Store.open(tiny_home.store_path) as store:
        engine = Engine.load(tiny_home, store, device="cpu")
        assert engine.checkpoint_id == before[0] and not engine.notes
        assert engine.tokenizer.vocab_size == engine.model.config.vocab_size == 512
        assert engine.tokenizer.encode(" Pemberton") != [512]


def test_a_companion_with_added_tokens_exports_with_its_own_tokenizer(tiny_home, tmp_path, capsys):
    from transformers import AutoTokenizer

    from companion.cli import main
    from companion.model.interop.gguf import read_gguf
    from companion.model.tokenizer import Tokenizer

    with Store.open(tiny_home.store_path) as store:
        small = Weights(tiny_home, store).current()
        grow_tokens(tiny_home, store, WORDS)
    root = str(tiny_home.path.parent)
    assert main(["--home", root, "export", "--format", "hf", str(tmp_path / "hf")]) == 0
    assert main(["--home", root, "export", "--format", "gguf", str(tmp_path / "m.gguf")]) == 0
    assert main(["--home", root, "export", "--format", "hf", "--checkpoint", str(small.id), str(tmp_path / "old")]) == 0
    capsys.readouterr()
    text = "Trey saw an okapi near Pemberton, and <|owner|> typed."
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert 512 in theirs(text)["input_ids"] and theirs.decode(theirs(text)["input_ids"]) == text
    config, state, raw = read_gguf(tmp_path / "m.gguf")
    assert config.vocab_size == 518 and state["embed.weight"].shape[0] == 518
    assert Tokenizer(raw).encode(text) == theirs(text)["input_ids"]
    assert AutoTokenizer.from_pretrained(tmp_path / "old").vocab_size == 512  # an older checkpoint: its own


def test_a_backup_holds_the_tokenizer_the_current_weights_read_with(tiny_home):
    from companion.history.backup import make_backup, verify_backup

    with Store.open(tiny_home.store_path) as store:
        grow_tokens(tiny_home, store, WORDS)
        name = Weights(tiny_home, store).tokenizer_path(Weights(tiny_home, store).current()).name
        info = make_backup(tiny_home, store)
    assert f"checkpoints/{name}" in info.files and "tokenizer.json" in info.files
    verify_backup(info.folder)
