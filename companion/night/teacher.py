"""An optional teacher: an OpenAI-compatible chat endpoint that may write the night's dream.

Off by default. When the owner enables it (`[teacher] enabled = true` with a `url`), this is the only
network connection the app ever makes: one POST per night, with the day's transcript, to the address
the owner gave (a local server, say). Standard library only (urllib): no client library to audit.

Anything short of a well-formed answer (no server, a timeout, an HTTP error, not JSON, no lines in the
expected shape) is a `TeacherError`; the night then falls back to the model's own dream and says so.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence

from companion.settings import TeacherSettings
from companion.transcript import Turn

MAX_ANSWER_BYTES = 1_000_000
_LINE = re.compile(r"^\s*[-*]?\s*\**\s*(inner|outer|companion)\s*\**\s*[:\-]\s*\**\s*(.+?)\s*$", re.IGNORECASE)


class TeacherError(Exception):
    """The teacher could not be asked, or its answer was not a dream."""


def endpoint(url: str) -> str:
    """The chat completions address: `url` itself if it names one, else `url` + /chat/completions."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


def _transcript(turns: Sequence[Turn], companion: str, owner: str) -> str:
    who = {"owner": owner, "companion": companion, "inner": f"{companion} (inner voice)", "text": "text"}
    return "\n".join(f"{who[t.role]}: {t.text}" for t in turns)


def dream_messages(turns: Sequence[Turn], companion: str, owner: str, max_lines: int) -> list[dict[str, str]]:
    system = (
        f"You write the dream of {companion}, a companion who has just lived a day with {owner}. "
        f"The dream goes on from the end of the day as an inner dialogue: {companion}'s inner voice and "
        f"{companion}'s outer voice take turns, reflecting on the day. Answer with at most {max_lines} lines, "
        "each starting with INNER: or OUTER:, nothing else."
    )
    return [{"role": "system", "content": system},
            {"role": "user", "content": "The day:\n" + _transcript(turns, companion, owner)}]


def parse_dream(text: str) -> list[Turn]:
    """Lines of the form `INNER: ...` / `OUTER: ...` as inner and companion turns; other lines are dropped."""
    turns = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m and m.group(2).strip():
            role = "inner" if m.group(1).lower() == "inner" else "companion"
            turns.append(Turn(role, m.group(2).strip()))
    return turns


def chat(settings: TeacherSettings, messages: list[dict[str, str]]) -> str:
    """One chat completion; the answer's text, or TeacherError."""
    body = {"model": settings.model, "messages": messages, "temperature": 0.8}
    request = urllib.request.Request(endpoint(settings.url), data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            raw = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise TeacherError(f"the teacher at {settings.url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TeacherError(f"the teacher at {settings.url} could not be reached ({reason})") from exc
    if len(raw) > MAX_ANSWER_BYTES:
        raise TeacherError(f"the teacher's answer is larger than {MAX_ANSWER_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise TeacherError("the teacher's answer is not an OpenAI-style chat completion") from exc
    if not isinstance(content, str):
        raise TeacherError("the teacher's answer has no text")
    return content


def teacher_dream(settings: TeacherSettings, turns: Sequence[Turn], companion: str, owner: str,
                  max_lines: int = 12) -> list[Turn]:
    """The teacher's dream as turns (inner and companion), or TeacherError."""
    if not settings.enabled or not settings.url:
        raise TeacherError("the teacher is off")
    lines = parse_dream(chat(settings, dream_messages(turns, companion, owner, max_lines)))
    if not lines:
        raise TeacherError("the teacher's answer held no INNER:/OUTER: lines")
    return lines[:max_lines]
