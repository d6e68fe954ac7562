"""Other ways to ask a lesson's question, made from the question's own wording. Torch-free.

Why: a lesson trained only on the owner's wording (and small variations of its frame, `cards.vary`)
is learned as that wording: asked "What do I call my dog?" instead of "What is my dog's name?", the
seedling said "Biscuit" in few replies, and fewer as the taught wording sharpened over the nights. A
small model keys on whatever tells the taught contexts apart; training the answer after many frames
that share only the question's *subject* ("dog's name", "dog") makes the subject the thing it keys on.

Only questions of the shape "... is my X?" (or "are/was", "your", "'s") get them: the subject is X —
"What is my favourite colour?" -> "favourite colour" — its head is X's content words, without stop
words and possessives ("dog's name" -> "dog"), and its last content word ("colour") is asked about
too. Other questions ("Where does my sister live?", "How old am I?") get none: cutting them into a
subject would change their meaning. The frames are fixed and generic (`FRAMES`, `HEAD_FRAMES`) and
keep the question's own possessive ("my" or "your"): none brings a word that is not already in the
question except the frame's own small words, so no new meaning is ever taught.
"""

from __future__ import annotations

import re
from functools import lru_cache

from companion.lessons.text import STOP_WORDS, words

__all__ = ["askings", "subject", "FRAMES", "HEAD_FRAMES"]

FRAMES = (
    "What's {my} {x}?", "Tell me {my} {x}.", "Do you remember {my} {x}?", "Do you know {my} {x}?", "{x}?",
    "{my} {x}?", "And {my} {x}?", "Can you remind me of {my} {x}?", "Remember {my} {x}?", "Say {my} {x}.",
)
"""Frames around the whole subject ("dog's name")."""

HEAD_FRAMES = ("What about {my} {x}?", "Tell me about {my} {x}.", "{x}?", "{my} {x}, remember?",
               "Do you know about {my} {x}?")
"""Frames around the subject's head ("dog") and its last content word ("colour"), when they differ
from the subject."""

_SHAPE = re.compile(r"(?:\b(?:is|are|was)\s+|'s\s+)(my|your)\s+([^?.!,;:]+?)\s*[?.!]*\s*$", re.IGNORECASE)


def subject(question: str) -> tuple[str, str, tuple[str, ...]]:
    """(possessive, subject, heads) of `question` (see the module docstring); ("", "", ()) when it
    is not of the shape "... is my X?" or X has no content word."""
    found = _SHAPE.search(question.strip())
    if not found:
        return "", "", ()
    mine, phrase = found.group(1).lower(), found.group(2).strip()
    content = [w for w in words(phrase) if w not in STOP_WORDS]
    if not content:
        return "", "", ()
    heads = [" ".join(content), content[-1]]
    return mine, phrase, tuple(h for i, h in enumerate(heads) if h.lower() != phrase.lower() and h not in heads[:i])


@lru_cache(maxsize=4096)
def askings(question: str) -> tuple[str, ...]:
    """The generated phrasings of `question`, in a fixed order, without the question itself."""
    mine, phrase, heads = subject(question)
    if not phrase:
        return ()
    made = [frame.format(my=mine, x=phrase) for frame in FRAMES]
    made += [frame.format(my=mine, x=head) for head in heads for frame in HEAD_FRAMES]
    out: list[str] = []
    for text in made:
        text = text[:1].upper() + text[1:]
        if text != question and text not in out:
            out.append(text)
    return tuple(out)
