"""What the night needs of a lesson, and the rule that decides whether a reply says it. Torch-free.

**The match rule** (`says`). A reply says a lesson when every one of the lesson's *key words* is
among the reply's words. Words are normalised the same way on both sides: Unicode NFKC, lower case,
apostrophes and every character that is not a letter or a digit become a space, and a trailing
possessive ``'s`` is dropped ("Biscuit's" counts as "biscuit"). The key words are:

* the lesson's `key` when the owner (or a facts file) gave one: its words minus stop words;
* otherwise derived from the answer: its words that are neither stop words nor words of the question
  (the question's own words prove nothing: "What is my dog called?" -> "Your dog is called Biscuit."
  keys on "biscuit"). When that leaves nothing, all the answer's non-stop words; when even that is
  empty, all its words.

Requiring every key word, not a share, is strict on purpose: "Lisbon" said back for "Porto" is not
recall. A key of one or two words (a name, a city) is the common case.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["LessonText", "words", "key_words", "says"]

STOP_WORDS = frozenset("""
a an the and or but if then so of to in on at by for with from as into onto about over under up down out
is are was were be been being am do does did done have has had having will would shall should can could
may might must i me my mine myself you your yours yourself he him his she her hers it its we us our ours
they them their theirs this that these those what which who whom whose when where why how there here
not no yes very just also too really quite called named name s t
""".split())


def words(text: str) -> list[str]:
    """The normalised words of `text` (see the module docstring), in order."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"'s\b", " ", text)
    return re.findall(r"[^\W_]+", text)


def key_words(answer: str, question: str = "", key: str | None = None) -> frozenset[str]:
    """The words a reply must contain to say this lesson (the rule in the module docstring)."""
    if key is not None and key.strip():
        given = words(key)
        return frozenset(w for w in given if w not in STOP_WORDS) or frozenset(given)
    said = words(answer)
    asked = set(words(question))
    content = [w for w in said if w not in STOP_WORDS]
    return frozenset(w for w in content if w not in asked) or frozenset(content) or frozenset(said)


def says(reply: str, keys: Iterable[str]) -> bool:
    """Whether `reply` contains every key word (an empty key never matches)."""
    keys = frozenset(keys)
    return bool(keys) and keys <= set(words(reply))


@dataclass(frozen=True)
class LessonText:
    """A lesson as the night uses it: the owner's question, the answer taught, other phrasings of the
    question, its own day up to the answer (its context: `Store.lesson_context`), and its key words.

    `id` is the store's lesson id (None for lessons that live only in memory: tests, the bench's
    own checks)."""

    question: str
    answer: str
    phrasings: tuple[str, ...] = ()
    context: tuple = ()  # companion.transcript.Turn: its day up to the answer (the question included)
    key: str | None = None
    id: int | None = None
    learned: bool = False  # said back at the last measuring night (a night must not lower it)
    keys: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            object.__setattr__(self, "keys", key_words(self.answer, self.question, self.key))

    @property
    def asked_as(self) -> tuple[str, ...]:
        """The question and its phrasings, each once, in order."""
        seen: list[str] = []
        for q in (self.question, *self.phrasings):
            if q.strip() and q not in seen:
                seen.append(q)
        return tuple(seen)

    @property
    def label(self) -> str:
        return " ".join(sorted(self.keys))
