"""The personality book: exported, every turn, choice and correction is in it; read back, a new
companion is taught exactly the chosen and typed replies with their prompts."""

from __future__ import annotations

import json

import pytest

from companion.history.personality import BookError, book_documents, export_book, read_book, sft_path
from companion.history.cli import cmd_book_export
from companion.store import Store
from companion.transcript import Turn, parse_text
from tests.test_history import THREE_DAYS, live_three_days


def test_export_then_parse_holds_every_turn_choice_and_correction(tiny_home, tmp_path):
    path = tmp_path / "scout.jsonl"
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        result = export_book(store, path)
        all_turns = [t for d in store.days() for t in store.turns(d.id)]
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert (result.entries, result.days, result.corrections) == (4, 3, 1)
    assert [e["step"] for e in lines] == [1, 2, 3, 4]
    first, second, third, fourth = lines
    assert first == {"step": 1, "day": 1, "date": first["date"], "prompt_role": "owner", "prompt": "Do you like the sea?",
                     "role": "companion", "responses": ["I love the sea.", "Not much."], "selected": 0,
                     "ratings": [4, 1], "corrections": [],
                     "annotations": [{"on": "reply", "tags": ["keep"], "note": "lovely"}]}
    assert second["typed"] == "Grey-blue in winter." and second["corrected"] == 0 and "selected" not in second
    assert second["corrections"] == [{"response": 0, "text": "Grey-blue in winter."}]
    assert third["typed"] == "They are just words." and third["prompt"].startswith("Tell me about AND")
    assert fourth["selected"] == 1 and fourth["day"] == 3
    # every exchange scripted is in the book
    scripted = [ex for spec in THREE_DAYS for ex in spec["exchanges"]]
    assert [e["prompt"] for e in lines] == [ex.say for ex in scripted]
    assert [e["responses"] for e in lines] == [list(ex.options) for ex in scripted]
    # the SFT file is the whole of every day in the one transcript format
    assert parse_text(sft_path(path).read_text(encoding="utf-8")) == [Turn(t.role, t.text) for t in all_turns]


def test_a_book_teaches_exactly_its_chosen_and_typed_replies(tiny_home, tmp_path):
    path = tmp_path / "scout.jsonl"
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        export_book(store, path)
    documents = book_documents(path)
    assert documents == [
        [Turn("owner", "Do you like the sea?"), Turn("companion", "I love the sea."),
         Turn("owner", "What colour is it?"), Turn("companion", "Grey-blue in winter.")],
        [Turn("owner", 'Tell me about AND OR NOT "quotes"*'), Turn("companion", "They are just words.")],
        [Turn("owner", "Where is the lighthouse?"), Turn("companion", "Far away.")],
    ]
    taught = {t.text for doc in documents for t in doc}
    assert not taught & {"Not much.", "Green.", "Blue, mostly.", "On the cliff.", "Operators?"}


def test_an_existing_path_is_refused_unless_overwrite(tiny_home, tmp_path, capsys):
    path = tmp_path / "book.jsonl"
    path.write_text("keep me")
    with Store.open(tiny_home.store_path) as store:
        live_three_days(tiny_home, store)
        with pytest.raises(BookError, match="already exists"):
            export_book(store, path)
        assert path.read_text() == "keep me" and not sft_path(path).exists()

    class Args:
        home, name, overwrite = str(tiny_home.path), None, False

    Args.path = str(path)
    assert cmd_book_export(Args) == 2
    assert "already exists" in capsys.readouterr().err and path.read_text() == "keep me"
    Args.overwrite = True
    assert cmd_book_export(Args) == 0
    assert "wrote 4 replies from 3 days" in capsys.readouterr().out
    assert len(read_book(path)) == 4


def test_a_damaged_book_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"step": 1, "prompt": "hi", "responses": ["a"], "selected": 0}\n{"prompt": "x", "responses": []}\n')
    with pytest.raises(BookError, match="line 2: needs exactly one of"):
        book_documents(path)
    path.write_text('{"prompt": "hi", "responses": ["a"], "selected": 3}\n')
    with pytest.raises(BookError, match="line 1"):
        read_book(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(BookError, match="not UTF-8"):
        read_book(path)
