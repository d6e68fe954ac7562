"""Textual widgets of the companion app.

They know nothing of torch, days or the store: they take plain strings, numbers and the small
dataclasses defined here, and post Textual messages for what the owner does.
"""

from companion.widgets.candidates import CandidateCard, CandidateDeck, stars_label
from companion.widgets.editor import EditorArea, MessageEditor, clean_typed
from companion.widgets.gauge import DayGauge
from companion.widgets.inner import PRESET_TAGS, AnnotationEditor, parse_tags
from companion.widgets.lists import CheckpointList, CheckpointRow, DayList, DaySummaryRow
from companion.widgets.night import NightProgress
from companion.widgets.safe_text import display_safe, one_line
from companion.widgets.text_prompt import ConfirmScreen, TextEditScreen
from companion.widgets.transcript import SelectedLine, TranscriptEntry, TranscriptLine, TranscriptView

__all__ = [
    "PRESET_TAGS",
    "AnnotationEditor",
    "CandidateCard",
    "CandidateDeck",
    "CheckpointList",
    "CheckpointRow",
    "ConfirmScreen",
    "DayGauge",
    "EditorArea",
    "MessageEditor",
    "DayList",
    "DaySummaryRow",
    "NightProgress",
    "SelectedLine",
    "TextEditScreen",
    "TranscriptEntry",
    "TranscriptLine",
    "TranscriptView",
    "clean_typed",
    "display_safe",
    "one_line",
    "parse_tags",
    "stars_label",
]
