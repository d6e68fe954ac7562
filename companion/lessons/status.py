"""A lesson's status, read from its recall over the nights. Torch-free: the store, the lessons screen
and the night all use this one rule.

Statuses, in the order a lesson usually passes through them:

* **new**: no accepted night has measured it yet (just taught, or every night since was rolled back).
* **learning**: measured, but the companion has never yet said it back reliably.
* **learned**: at the latest measuring night it was said back in at least ``LEARNED_RECALL`` of the
  samples (all its phrasings together).
* **fading**: it was learned at some earlier night, but the latest measurement fell below
  ``LEARNED_RECALL``: it needs teaching again.
* **retired**: the owner retired it; nights no longer teach or test it. Retirement wins over anything
  the history says.

Only nights whose weights the companion still lives on count: a rolled-back night's weights were
thrown away, and so were a night's that a restore went back before; what they said is not what the
companion says now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = ["LESSON_STATUSES", "LEARNED_RECALL", "lesson_status", "recall_rate"]

LESSON_STATUSES = ("new", "learning", "learned", "fading", "retired")

LEARNED_RECALL = 0.9
"""The share of samples that must carry the answer for a night to count the lesson as said back
(18 of 20). High, because a fact said back one time in three is not a fact the owner can rely on."""


class NightRecall(Protocol):
    """One night's measurement of one lesson, all phrasings summed (``companion.store.LessonNight``).
    ``in_weights`` is optional (taken as True when absent)."""
    hits: int
    samples: int
    accepted: bool


def recall_rate(hits: int, samples: int) -> float:
    """Hits over samples; 0.0 when nothing was sampled."""
    return hits / samples if samples > 0 else 0.0


def lesson_status(history: Iterable[NightRecall], *, retired: bool = False,
                  learned_recall: float = LEARNED_RECALL) -> str:
    """The lesson's status from its per-night recall, oldest night first (see the module docstring).

    Nights that were not accepted, that a restore went back before (``in_weights`` False), and
    that sampled nothing, are skipped."""
    if retired:
        return "retired"
    rates = [recall_rate(n.hits, n.samples) for n in history
             if n.accepted and getattr(n, "in_weights", True) and n.samples > 0]
    if not rates:
        return "new"
    if rates[-1] >= learned_recall:
        return "learned"
    if any(rate >= learned_recall for rate in rates[:-1]):
        return "fading"
    return "learning"
