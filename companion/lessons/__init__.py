"""Lessons: what the owner taught on purpose (corrections, written replies, replies marked "remember
this"), kept as records so that nights can teach them until the companion says them back.

The records live in the one store (``companion/store.py``); this package holds the rules about them
that are not storage: how a lesson's status follows from its recall over the nights
(``companion.lessons.status``). Nothing here imports torch."""
