"""Textual widgets of the companion app.

They know nothing of torch, days or the store: they take plain strings, numbers and the small
dataclasses defined here, and post Textual messages for what the owner does.
"""

from widgets.candidates import CandidateCard, CandidateDeck, stars_label
from widgets.editor import EditorArea, MessageEditor, clean_typed
from widgets.gauge import DayGauge
from widgets.inner import PRESET_TAGS, AnnotationEditor, parse_tags
from widgets.lists import CheckpointList, CheckpointRow, DayList, DaySummaryRow
from widgets.night import NightProgress
from widgets.safe_text import display_safe, one_line
from widgets.text_prompt import ConfirmScreen, TextEditScreen
from widgets.transcript import SelectedLine, TranscriptEntry, TranscriptLine, TranscriptView

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
