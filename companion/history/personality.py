"""The personality book: every reply the owner let into a day, the one record a lost model can be
taught again from.

``export_book(store, path)`` writes JSON lines, one per turn that got a reply, in the order they were
lived::

    {"step": 7, "day": 2, "date": "2024-05-02", "prompt_role": "owner", "prompt": "How are you?",
     "role": "companion", "responses": ["Fine.", "Tired."], "selected": 0,
     "ratings": [4, null], "corrections": [], "annotations": []}

A picked candidate gives ``"selected"`` (its index in ``responses``); a correction or a reply the owner
wrote gives ``"typed"`` (the text that entered the day; a correction also names the response it
corrected in ``"corrected"``). ``responses`` holds every candidate shown for that prompt, every round;
``ratings`` is parallel to it (null: not rated). ``corrections`` lists every edit made of a response;
``annotations`` the owner's tags and notes on the prompt and on the reply. A reply that is a lesson
(every correction and written reply, and any reply marked "remember this") carries
``"lesson": {"source": "written", "phrasings": ["Who is my dog?"], "retired": false}``; lessons
that came from an earlier book (no day of their own) open the book as entries with ``"day": null``.

Beside it, an SFT-ready text file (``sft_path(path)``) holds every day's whole transcript in the one
transcript format (``companion.transcript.render_text``), one day after another.

``book_documents(path)`` reads a book back as training documents for ``companion birth --from-book``:
one document per day holding exactly the book's prompts and chosen or typed replies;
``book_lessons(path)`` and ``add_book_lessons(store, path)`` read its lessons back into the new
companion's store (source 'book', with their phrasings, retired ones retired), so that its nights
test and teach them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from companion.store import ROLES
from companion.store import LESSON_SOURCES, Annotation, Candidate, Lesson, Store, StoreError
from companion.transcript import Turn, render_text
from companion.model.atomic import atomic_write_bytes

__all__ = ["BookError", "ExportResult", "sft_path", "export_book", "book_entries", "read_book", "book_documents",
           "book_lessons", "add_book_lessons"]



class BookError(Exception):
    """A book that cannot be written or read; the message names the file (and line)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    text_path: Path
    entries: int
    days: int
    corrections: int


def sft_path(path: str | os.PathLike[str]) -> Path:
    """The SFT text file beside a book: ``book.jsonl`` -> ``book.txt``; any other name gets ``.txt``
    appended (``book`` -> ``book.txt``, ``my.book`` -> ``my.book.txt``)."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        return path.with_suffix(".txt")
    return path.with_name(path.name + ".txt")


def _annotation(a: Annotation, on: str) -> dict[str, Any]:
    return {"on": on, "tags": list(a.tags), "note": a.note}


def _lesson(lesson: Lesson) -> dict[str, Any]:
    return {"source": lesson.source, "phrasings": [p.text for p in lesson.phrasings], "retired": lesson.retired}


def book_entries(store: Store) -> Iterator[dict[str, Any]]:
    """Every turn that got a reply, as a book entry, day by day in the order of the replies; lessons
    with no day of their own (from an earlier book) first."""
    step = 0
    lessons = store.lessons(history=0)
    by_reply = {x.reply_turn_id: x for x in lessons if x.reply_turn_id is not None}
    for lesson in lessons:
        if lesson.day_id is None:
            step += 1
            yield {"step": step, "day": None, "date": lesson.created_at[:10], "prompt_role": "owner",
                   "prompt": lesson.question, "role": "companion", "responses": [], "typed": lesson.answer,
                   "ratings": [], "corrections": [], "annotations": [], "lesson": _lesson(lesson)}
    for day in store.days():
        turns = {t.id: t for t in store.turns(day.id)}
        candidates = store.candidates(day.id)
        ratings = store.ratings(day.id)
        corrections_by_candidate: dict[int, list[str]] = {}
        for k in store.corrections(day.id):
            corrections_by_candidate.setdefault(k.candidate_id, []).append(k.text)
        notes = {a.turn_id: a for a in store.annotations(day.id) if a.turn_id is not None}
        for choice in store.choices(day.id):
            reply = turns.get(choice.turn_id)
            if reply is None:
                continue
            prompt = turns.get(choice.prompt_turn_id) if choice.prompt_turn_id is not None else None
            shown = _shown(candidates, choice.prompt_turn_id, choice.candidate_id)
            index = {c.id: i for i, c in enumerate(shown)}
            step += 1
            entry: dict[str, Any] = {
                "step": step, "day": day.number, "date": reply.created_at[:10] or day.opened_at[:10],
                "prompt_role": prompt.role if prompt else None, "prompt": prompt.text if prompt else "",
                "role": reply.role, "responses": [c.text for c in shown],
            }
            if choice.kind == "pick" and choice.candidate_id in index:
                entry["selected"] = index[choice.candidate_id]
            else:
                entry["typed"] = reply.text
                if choice.kind == "correction" and choice.candidate_id in index:
                    entry["corrected"] = index[choice.candidate_id]
            entry["ratings"] = [ratings.get(c.id) for c in shown]
            entry["corrections"] = [{"response": index[c.id], "text": text}
                                    for c in shown for text in corrections_by_candidate.get(c.id, [])]
            entry["annotations"] = ([_annotation(notes[prompt.id], "prompt")] if prompt and prompt.id in notes else []) \
                + ([_annotation(notes[reply.id], "reply")] if reply.id in notes else [])
            if reply.id in by_reply:
                entry["lesson"] = _lesson(by_reply[reply.id])
            yield entry


def _shown(candidates: list[Candidate], prompt_turn_id: int | None, candidate_id: int | None) -> list[Candidate]:
    """The candidates shown for one prompt, every round, in order. Candidates answering no turn are
    grouped by the round of the one chosen."""
    if prompt_turn_id is not None:
        shown = [c for c in candidates if c.prompt_turn_id == prompt_turn_id]
    else:
        chosen = next((c for c in candidates if c.id == candidate_id), None)
        if chosen is None:
            return []
        shown = [c for c in candidates if c.prompt_turn_id is None and c.round == chosen.round]
    return sorted(shown, key=lambda c: (c.round, c.slot))


def export_book(store: Store, path: str | os.PathLike[str], *, overwrite: bool = False) -> ExportResult:
    """Write the book and its SFT text file, atomically; an existing file is refused unless
    ``overwrite``."""
    path = Path(path)
    text_path = sft_path(path)
    if not overwrite:
        for p in (path, text_path):
            if p.exists():
                raise BookError(f"{p} already exists; choose another path or overwrite it")
    for p in (path, text_path):
        if p.is_dir():
            raise BookError(f"{p} is a folder, not a file")
    entries = list(book_entries(store))
    lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
    days = store.days()
    text = "".join(render_text(Turn(t.role, t.text) for t in store.turns(d.id)) for d in days)
    try:
        atomic_write_bytes(path, lines.encode("utf-8"))
        atomic_write_bytes(text_path, text.encode("utf-8"))
    except OSError as exc:
        raise BookError(f"cannot write the book to {path}: {exc.strerror or exc}") from None
    corrections = sum(1 for e in entries if "corrected" in e)
    return ExportResult(path, text_path, len(entries), len({e["day"] for e in entries}), corrections)


def _check_entry(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise BookError(f"{where}: expected a JSON object")
    prompt, responses = entry.get("prompt"), entry.get("responses", [])
    if not isinstance(prompt, str):
        raise BookError(f"{where}: \"prompt\" must be text")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise BookError(f"{where}: \"responses\" must be a list of texts")
    for key, allowed in (("prompt_role", (None, *ROLES)), ("role", (None, *ROLES))):
        if entry.get(key) not in allowed:
            raise BookError(f"{where}: \"{key}\" must be one of {', '.join(ROLES)}")
    if ("selected" in entry) == ("typed" in entry):
        raise BookError(f"{where}: needs exactly one of \"selected\" or \"typed\"")
    if "selected" in entry:
        sel = entry["selected"]
        if isinstance(sel, bool) or not isinstance(sel, int) or not 0 <= sel < len(responses):
            raise BookError(f"{where}: \"selected\" must index \"responses\" (0 to {len(responses) - 1})")
    elif not isinstance(entry["typed"], str):
        raise BookError(f"{where}: \"typed\" must be text")
    if "lesson" in entry:
        lesson = entry["lesson"]
        if not isinstance(lesson, dict) or lesson.get("source") not in LESSON_SOURCES:
            raise BookError(f"{where}: \"lesson\" must be an object whose \"source\" is one of "
                            f"{', '.join(LESSON_SOURCES)}")
        phrasings = lesson.get("phrasings", [])
        if not isinstance(phrasings, list) or not all(isinstance(p, str) for p in phrasings):
            raise BookError(f"{where}: \"lesson\".\"phrasings\" must be a list of texts")
        if not isinstance(lesson.get("retired", False), bool):
            raise BookError(f"{where}: \"lesson\".\"retired\" must be true or false")
        if not entry["prompt"].strip() or not reply_text(entry).strip():
            raise BookError(f"{where}: a lesson needs its question (\"prompt\") and its answer")
    return entry


def read_book(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every entry of a book, checked; a damaged line is a ``BookError`` naming the line."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BookError(f"{path}: not a personality book (not UTF-8 text)") from None
    except OSError as exc:
        raise BookError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BookError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        entries.append(_check_entry(entry, f"{path}, line {number}"))
    if not entries:
        raise BookError(f"{path}: the book is empty")
    return entries


def reply_text(entry: dict[str, Any]) -> str:
    """The reply that entered the day: the selected response, or what was typed."""
    return entry["responses"][entry["selected"]] if "selected" in entry else entry["typed"]


def book_documents(path: str | os.PathLike[str]) -> list[list[Turn]]:
    """Training documents from a book: one per day, holding exactly each entry's prompt (when it has
    one) and its chosen or typed reply, in order. Passed-over responses are not taught."""
    documents: list[list[Turn]] = []
    last_day: object = object()
    for entry in read_book(path):
        if entry.get("day") != last_day or not documents:
            documents.append([])
            last_day = entry.get("day")
        if entry["prompt"]:
            documents[-1].append(Turn(entry.get("prompt_role") or "owner", entry["prompt"]))
        documents[-1].append(Turn(entry.get("role") or "companion", reply_text(entry)))
    return documents


def book_lessons(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lessons of a book, in order: ``{"question", "answer", "phrasings", "retired", "line"}``."""
    lessons = []
    for number, entry in enumerate(read_book(path), 1):
        if "lesson" in entry:
            lesson = entry["lesson"]
            lessons.append({"question": entry["prompt"], "answer": reply_text(entry),
                            "phrasings": list(lesson.get("phrasings", [])), "retired": lesson.get("retired", False),
                            "entry": number})
    return lessons


def add_book_lessons(store: Store, path: str | os.PathLike[str]) -> int:
    """Record a book's lessons in a (new) companion's store as lessons of source 'book', with their
    phrasings; retired ones stay retired. Returns how many were recorded. A lesson the store refuses
    is a ``BookError`` naming the book's entry."""
    count = 0
    for item in book_lessons(path):
        try:
            lesson = store.add_lesson(item["question"], item["answer"], "book")
            for text in item["phrasings"]:
                try:
                    store.add_phrasing(lesson.id, text)
                except StoreError:
                    pass  # the same phrasing twice in a book: once is enough
            if item["retired"]:
                store.retire_lesson(lesson.id)
        except StoreError as exc:
            raise BookError(f"{path}, entry {item['entry']}: {exc}") from None
        count += 1
    return count
