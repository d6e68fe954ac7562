"""The morning's lines about lessons, lesson by lesson: what the companion now says back. Torch-free:
it reads the night report's `lessons` entry (`companion.lessons.teaching.Teaching.summary`)."""

from __future__ import annotations

from typing import Any

__all__ = ["lesson_lines"]


def _short(text: str, most: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def lesson_lines(summary: dict[str, Any] | None) -> list[str]:
    """Plain lines for the morning screen and `companion sleep`: each lesson asked afresh, said back
    in how many replies before -> after the night (all its phrasings), then cross-talk and intrusion."""
    if not summary or not summary.get("lessons"):
        return []
    lines = ["What it says back, asked afresh in a new day (replies that say the answer, before -> after):"]
    for row in summary["lessons"]:
        before = "—" if row.get("before") is None else str(row["before"])
        mark = "" if row.get("taught") else " (resting, checked)"
        lines.append(f"  \u201c{_short(row['question'])}\u201d -> \u201c{_short(row['answer'])}\u201d: "
                     f"{before} -> {row['after']} of {row['asked']}{mark}")
        if row.get("after", 0) < row.get("asked", 0) and row.get("reply"):
            lines.append(f"      e.g. it said \u201c{_short(row['reply'], 60)}\u201d")
    ct, it = summary.get("crosstalk", {}), summary.get("intrusion", {})
    if ct.get("samples"):
        lines.append(f"  another lesson's answer instead (cross-talk): {ct['before']} -> {ct['after']} of {ct['samples']}")
    if it.get("samples"):
        lines.append(f"  lessons said to ordinary lines (intrusion): {it['before']} -> {it['after']} of {it['samples']}")
    return lines
