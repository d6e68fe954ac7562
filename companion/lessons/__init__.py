"""Lessons: what the owner taught on purpose (corrections, written replies, replies marked "remember
this"), kept as records so that nights can teach them until the companion says them back.

The records live in the one store (``companion/store.py``); this package holds the rules about them
that are not storage: how a lesson's status follows from its recall over the nights
(``companion.lessons.status``). Nothing here imports torch.

The night's side: `text` (what the night needs of a lesson, and the rule that decides whether a reply
says it), `morning` (a fresh day as the day builds it), `cards` (the contexts a lesson is trained in),
`asking` (other ways to ask, made from the question's subject), `margin` (its answer against the others'), `recall` (asking afresh and counting), `schedule` (spaced
repetition), `teaching` (a night's lessons and its verdict) and `report` (the morning's lines).
`text`, `asking`, `morning`, `schedule`, `status` and `report` are torch-free; the others are the night's."""
