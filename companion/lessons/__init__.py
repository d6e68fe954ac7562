"""Lessons: what the owner taught on purpose, taught at night until the companion says it back.

The night's side lives here: `text` (what the night needs of a lesson and the match rule),
`cards` (the contexts a lesson is trained in), `margin` (its answer against the others'),
`recall` (asking afresh and counting), `schedule` (spaced repetition) and `report` (the morning's
lines, torch-free)."""
