"""Bad input at night: books that vanished or changed, a teacher that is down or answers garbage."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from companion.night.dream import dream, dream_lines
from companion.night.pipeline import run_night
from companion.store import Store
from companion.night.teacher import TeacherError, parse_dream, teacher_dream
from companion.transcript import Turn
from companion.history.weights import Weights
from tests.test_night import PROBE, night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def queue(store, path, text):
    path.write_text(text, encoding="utf-8")
    data = path.read_bytes()
    return store.queue_book(str(path), hashlib.sha256(data).hexdigest(), len(data))


def test_books_that_vanished_or_changed_are_skipped_and_named_and_the_good_one_is_read(tiny_home, tokenizer):
    books = tiny_home.books_dir
    with Store.open(tiny_home.store_path) as store:
        good = queue(store, books / "sea.txt", "The sea is wide and grey.\n\nGulls cry over the harbour.")
        gone = queue(store, books / "gone.txt", "This file will vanish.")
        changed = queue(store, books / "changed.txt", "The first version.")
        (books / "gone.txt").unlink()
        (books / "changed.txt").write_text("A different text now.", encoding="utf-8")
        day, _ = script_day(tiny_home, store, tokenizer)
        # the day's correction makes it a lesson night, whose few steps take a shuffled share of the
        # material: enough steps that the book's piece is among them wherever the shuffle puts it
        settings = night_settings(tiny_home, **{"night.lessons.steps": 12})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE)

        assert report.status == "accepted", report.reason
        assert any("gone.txt" in n and "vanished" in n for n in report.notes)
        assert any("changed.txt" in n and "changed" in n for n in report.notes)
        assert report.books_read == [good.path] and report.material["books"] > 0
        assert store.get_book(good.id).status == "read" and store.get_book(good.id).night_id == report.night_id
        assert store.get_book(gone.id).status == "refused" and store.get_book(changed.id).status == "refused"


def test_a_rolled_back_night_leaves_its_books_queued(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        book = queue(store, tiny_home.books_dir / "sea.txt", "The sea is wide and grey.")
        day, _ = script_day(tiny_home, store, tokenizer)
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", probe_windows=PROBE,
                           loss_hook=lambda step, loss: loss * float("nan"))
        assert report.status == "rolled_back"
        assert store.get_book(book.id).status == "queued"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Teacher:
    """A tiny OpenAI-style server on 127.0.0.1 answering whatever `answer` holds."""

    def __init__(self, answer: bytes) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append((self.path, json.loads(self.rfile.read(length))))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(outer.answer)

            def log_message(self, *args):
                pass

        self.answer, self.requests = answer, []
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def chat_answer(content: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


def teacher_settings(home, url):
    settings = night_settings(home)
    for key, value in [("teacher.url", url), ("teacher.enabled", True), ("teacher.timeout_s", 2),
                       ("teacher.model", "local")]:
        settings = settings.with_value(key, value)
    return settings


DAY = [Turn("inner", "Good morning, Scout. Trey is here."), Turn("owner", "Hi!"), Turn("companion", "Hello.")]


def test_a_teacher_that_is_down_falls_back_to_the_models_own_dream(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = teacher_settings(tiny_home, f"http://127.0.0.1:{closed_port()}/v1")
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE)
        assert report.status == "accepted"
        assert report.dream_source == "model" and store.dreams(day_id=day.id)[0].source == "model"
        assert any("could not be reached" in n and "dreamt on its own" in n for n in report.notes)


@pytest.mark.parametrize("answer", [b"<html>not json</html>", b'{"choices": []}',
                                    chat_answer("I am sorry, I cannot help with that.")])
def test_a_teacher_answering_garbage_falls_back_to_the_models_own_dream(tiny_home, tokenizer, answer):
    with Teacher(answer) as teacher, Store.open(tiny_home.store_path) as store:
        model = Weights(tiny_home, store).load_current().model
        result = dream(model, tokenizer, DAY, teacher_settings(tiny_home, teacher.url), seed=1)
        assert result.source == "model" and result.turns
        assert "dreamt on its own" in result.notes[0]
        assert len(teacher.requests) == 1


def test_a_teacher_that_answers_writes_the_dream_within_the_budget(tiny_home, tokenizer):
    lines = "\n".join(["INNER: What a day it was.", "OUTER: I liked talking with Trey.", "noise line"] * 40)
    with Teacher(chat_answer(lines)) as teacher, Store.open(tiny_home.store_path) as store:
        model = Weights(tiny_home, store).load_current().model
        result = dream(model, tokenizer, DAY, teacher_settings(tiny_home, teacher.url))
        assert result.source == "teacher"
        assert [t.role for t in result.turns[:2]] == ["inner", "companion"]
        assert sum(len(tokenizer.encode(t.text)) + 2 for t in result.turns) <= result.budget
        path, body = teacher.requests[0]
        assert path == "/v1/chat/completions" and body["model"] == "local"
        assert "Trey" in body["messages"][1]["content"]
        assert dream_lines(result.text) == result.turns


def test_the_teacher_is_never_asked_when_it_is_off(tiny_home):
    with pytest.raises(TeacherError):
        teacher_dream(tiny_home.load_settings().teacher, DAY, "Scout", "Trey")
    assert parse_dream("**INNER:** quiet.\n- OUTER: yes\nrandom") == [Turn("inner", "quiet."), Turn("companion", "yes")]


def test_companion_sleep_runs_the_night_headless_and_prints_the_morning(tiny_home, tokenizer, capsys):
    from companion.cli import main

    with Store.open(tiny_home.store_path) as store:
        script_day(tiny_home, store, tokenizer)
    tiny_home.save_settings(night_settings(tiny_home))
    assert main(["--home", str(tiny_home.path), "sleep", "--day", "1"]) == 0
    out = capsys.readouterr().out
    assert "Night of day 1: accepted" in out and "What it taught" in out and "What it cost" in out
    assert main(["--home", str(tiny_home.path), "sleep", "--day", "7"]) == 2
    assert "there is no day 7" in capsys.readouterr().err
    assert main(["--home", str(tiny_home.path), "sleep"]) == 2  # day 1 already slept: nothing pending
    assert "already had its night (accepted)" in capsys.readouterr().err
