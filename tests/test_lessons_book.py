"""The personality book carries lessons (with their phrasings and whether retired), and a companion
born from the book (`companion birth --from-book`) has them again as lessons its nights will test."""

from __future__ import annotations

import json

import pytest

from companion.birth.create import BirthError, create_home
from companion.history.personality import BookError, book_documents, export_book, read_book
from companion.day.scripted import Exchange
from companion.store import Store
from tests.test_history import live_day


def lived(home, store):
    day = live_day(home, store, [
        Exchange("What is my dog called?", ("A cat.",), correct=(0, "Your dog is called Biscuit.")),
        Exchange("Where do I live?", ("Here.",), write="You live in Lisbon."),
        Exchange("How are you?", ("Fine, thanks.",), pick=0),
        Exchange("What is my job?", ("You work as a nurse.",), pick=0),
    ], block_size=512)  # a 384-token day: four exchanges and the lines the day reserves
    lessons = store.lessons()
    picked = [t for t in store.turns(day.id) if t.text == "You work as a nurse."][0]
    remembered = store.remember(picked.id)
    store.add_phrasing(lessons[0].id, "Who is my dog?")
    store.retire_lesson(lessons[1].id)
    return remembered


def test_the_book_carries_lessons_and_a_companion_born_from_it_has_them_back(tiny_home, tmp_path):
    path = tmp_path / "scout.jsonl"
    with Store.open(tiny_home.store_path) as store:
        lived(tiny_home, store)
        export_book(store, path)
    entries = read_book(path)
    assert [e.get("lesson") for e in entries] == [
        {"source": "correction", "phrasings": ["Who is my dog?"], "retired": False},
        {"source": "written", "phrasings": [], "retired": True},
        None,
        {"source": "remember", "phrasings": [], "retired": False},
    ]

    home, notes = create_home(tmp_path / "reborn", "Sprout", "Trey", "seedling", [], str(path))
    assert "3 lessons read back from the book" in notes
    with Store.open(home.store_path) as store:
        back = store.lessons()
        assert [(x.source, x.question, x.answer, x.retired) for x in back] == [
            ("book", "What is my dog called?", "Your dog is called Biscuit.", False),
            ("book", "Where do I live?", "You live in Lisbon.", True),
            ("book", "What is my job?", "You work as a nurse.", False),
        ]
        assert back[0].questions == ("What is my dog called?", "Who is my dog?")
        assert all(x.day_id is None and x.status in ("new", "retired") for x in back)
        # and exported again, the next generation keeps them (as day-less entries first)
        again = tmp_path / "sprout.jsonl"
        export_book(store, again)
    assert [e["lesson"]["source"] for e in read_book(again)] == ["book", "book", "book"]
    assert book_documents(again)[0][1].text == "Your dog is called Biscuit."


@pytest.mark.parametrize("lesson, message", [
    ({"source": "gossip"}, "\"source\" is one of"),
    ({"source": "written", "phrasings": "Who?"}, "must be a list of texts"),
    ({"source": "written", "retired": "yes"}, "true or false"),
])
def test_a_book_with_a_damaged_lesson_is_refused_naming_the_line_and_no_companion_is_made(tmp_path, lesson, message):
    path = tmp_path / "bad.jsonl"
    entry = {"day": 1, "prompt": "What is my name?", "responses": [], "typed": "Trey.", "lesson": lesson}
    path.write_text(json.dumps({"day": 1, "prompt": "Hi", "responses": ["Hello"], "selected": 0}) + "\n"
                    + json.dumps(entry) + "\n", encoding="utf-8")
    with pytest.raises(BookError, match=f"line 2: .*{message}"):
        read_book(path)
    with pytest.raises(BirthError, match="line 2"):
        create_home(tmp_path / "root", "Sprout", "Trey", "seedling", [], str(path))
    assert not (tmp_path / "root" / "Sprout").exists()
