"""Birth from the command line: a real (short) birth, and bad input that changes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from companion.birth.create import BirthError, adopt_seedling, check_birth_input, create_home
from companion.cli import main
from companion.birth.corpus import read_owner_texts
from companion.home import Home, HomeError
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import save_checkpoint, CheckpointMeta

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "companion", *args, "--home", str(home)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def test_birth_leaves_a_home_with_tokenizer_checkpoint_settings_and_store_and_learns(tmp_path):
    proc = run_cli("birth", "--name", "Scout", "--owner", "Trey", "--preset", "seedling",
                   "--steps", "4", "--vocab-size", "1024", "--batch-size", "2", "--eval-every", "1000", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    home = tmp_path / "Scout"
    assert (home / "tokenizer.json").is_file() and (home / "companion.toml").is_file() and (home / "companion.db").is_file()
    before, after = map(float, re.search(r"held-out loss ([\d.]+) -> ([\d.]+)", proc.stdout).groups())
    assert after < before
    with Store.open(home / "companion.db") as store:
        [checkpoint] = store.checkpoints()
        assert checkpoint.reason == "birth" and checkpoint.step == 4
        loaded = Weights(Home(home), store).load_current()
    assert loaded.model.config.vocab_size == 1024
    assert (home / "checkpoints" / "nursery-optimizer.safetensors").is_file()
    # One probe, one number: the nursery's report and the checkpoints list say the same figure.
    figure = re.search(r"probe perplexity ([\d.]+) \(the starter probe\)", proc.stdout).group(1)
    assert f"{checkpoint.probe_ppl:.2f}" == figure
    listed = run_cli("checkpoints", home=tmp_path)
    assert figure in listed.stdout, listed.stdout


def test_the_command_lists_its_commands():
    proc = subprocess.run([sys.executable, "-m", "companion", "--help"], capture_output=True, text=True, cwd=REPO)
    for command in ("birth", "nursery", "sleep", "days", "checkpoints", "restore", "book"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "giant"], "unknown preset 'giant'"),
        (["--corpus", "/no/such/place"], "/no/such/place does not exist"),
    ],
)
def test_bad_birth_input_is_refused_and_writes_nothing(tmp_path, capsys, args, message):
    code = main(["birth", "--name", "Scout", "--owner", "Trey", "--home", str(tmp_path / "root"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "root" / "Scout").exists()


@pytest.mark.parametrize("name", ["a/b", "..", "bad\x1b[31m", "", "x\\y"])
def test_names_with_separators_or_control_characters_are_refused(tmp_path, name):
    with pytest.raises(HomeError):
        check_birth_input(tmp_path, name, "Trey", "seedling", [])


def test_an_existing_companion_is_never_overwritten(tiny_home):
    before = tiny_home.settings_path.read_bytes()
    with pytest.raises(BirthError, match="already exists"):
        check_birth_input(tiny_home.root, "Scout", "Trey", "seedling", [])
    with pytest.raises(HomeError, match="already exists"):
        Home.create(tiny_home.root, "Scout", owner="Someone")
    assert tiny_home.settings_path.read_bytes() == before


def test_a_home_that_is_not_writable_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main(["birth", "--name", "Scout", "--owner", "Trey", "--home", str(blocker / "inside")])
    assert code == 2
    assert "a-file" in capsys.readouterr().err


def test_binary_and_non_utf8_owner_files_are_skipped_and_named(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "diary.txt").write_text("Dear diary, today I planted tomatoes.", encoding="utf-8")
    (folder / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    texts = read_owner_texts([folder])
    assert [Path(p).name for p, _ in texts.texts] == ["diary.txt"]
    assert any("photo.txt" in n and "binary" in n for n in texts.notes)
    assert any("latin1.md" in n and "UTF-8" in n for n in texts.notes)


def test_a_folder_with_no_text_is_refused(tmp_path):
    (tmp_path / "only.bin").write_bytes(b"\x00\x01")
    with pytest.raises(BirthError, match="holds no readable"):
        check_birth_input(tmp_path / "root", "Scout", "Trey", "seedling", [str(tmp_path)])


def test_the_owner_texts_are_kept_in_the_home_for_the_nursery(tmp_path):
    (tmp_path / "notes.md").write_text("# My notes\nI like rivers.", encoding="utf-8")
    home, notes = create_home(tmp_path / "root", "Scout", "Trey", "seedling", [str(tmp_path / "notes.md")])
    [kept] = list((home.path / "corpus").iterdir())
    assert kept.read_text(encoding="utf-8") == "# My notes\nI like rivers."


def test_adopting_a_seedling_gives_a_loadable_companion(tmp_path, tokenizer, tiny_model):
    seedling = tmp_path / "seedling"
    seedling.mkdir()
    tokenizer.save(seedling / "tokenizer.json")
    import torch

    save_checkpoint(seedling / "seedling.safetensors", tiny_model, CheckpointMeta(tiny_model.config, reason="seedling", step=99), dtype=torch.float16)
    home, _ = create_home(tmp_path / "root", "Scout", "Trey", "seedling", [])
    with Store.open(home.store_path) as store:
        adopt_seedling(home, store, seedling)
        loaded = Weights(home, store).load_current()
    assert loaded.checkpoint.reason == "seedling" and loaded.meta.step == 99
    assert (home.tokenizer_path).read_bytes() == (seedling / "tokenizer.json").read_bytes()


def test_a_missing_seedling_is_a_clear_error(tmp_path):
    home, _ = create_home(tmp_path / "root", "Scout", "Trey", "seedling", [])
    with Store.open(home.store_path) as store, pytest.raises(BirthError, match="seedling is missing"):
        adopt_seedling(home, store, tmp_path / "nowhere")


def test_a_companion_born_from_a_book_learns_exactly_its_chosen_and_typed_replies(tmp_path):
    import json

    from companion.birth.create import corpus_documents
    from companion.transcript import Turn

    book = tmp_path / "book.jsonl"
    book.write_text("\n".join(json.dumps(e) for e in [
        {"step": 1, "day": 1, "prompt": "What's your name?", "responses": ["Bob", "Scout"], "selected": 1},
        {"step": 2, "day": 1, "prompt": "Favourite colour?", "responses": ["red"], "typed": "Green, like moss."},
    ]), encoding="utf-8")
    home, _ = create_home(tmp_path / "root", "Scout", "Trey", "seedling", [], str(book))
    train, _ = corpus_documents(home.load_settings(), home)
    assert train[-1] == [Turn("owner", "What's your name?"), Turn("companion", "Scout"),
                         Turn("owner", "Favourite colour?"), Turn("companion", "Green, like moss.")]


def test_a_damaged_book_is_refused_before_anything_is_written(tmp_path):
    book = tmp_path / "book.jsonl"
    book.write_text('{"prompt": "hi"}\n', encoding="utf-8")
    with pytest.raises(BirthError, match="line 1"):
        create_home(tmp_path / "root", "Scout", "Trey", "seedling", [], str(book))
    assert not (tmp_path / "root" / "Scout").exists()
