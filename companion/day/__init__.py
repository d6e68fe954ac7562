"""The day, headless: the open day and every owner action on it (`session`), what to sample for it
(`request`: one `SampleRequest` the engine runs), and one generation round from request to recording
(`round`). The app only shows these; tests and benches drive them without Textual. No torch here."""

from companion.day.request import (
    CARD_KINDS,
    INNER_SLOT_BASE,
    KINDS,
    MAX_CANDIDATES,
    SampleRequest,
    recall_request,
    request_for,
    sampling_from_settings,
)
from companion.day.round import Round
from companion.day.session import (
    INNER_LINE_TOKENS,
    MAX_MESSAGE_CHARS,
    MIN_EXCHANGE_TOKENS,
    MIN_REPLY_TOKENS,
    REPLY_SOURCES,
    DayError,
    DaySession,
    MessageRefused,
    SendResult,
    quarters_begun,
)

__all__ = [
    "DaySession", "DayError", "MessageRefused", "SendResult", "MAX_MESSAGE_CHARS", "MIN_REPLY_TOKENS",
    "MIN_EXCHANGE_TOKENS", "INNER_LINE_TOKENS", "REPLY_SOURCES", "quarters_begun",
    "SampleRequest", "KINDS", "CARD_KINDS", "MAX_CANDIDATES", "INNER_SLOT_BASE", "request_for",
    "recall_request", "sampling_from_settings", "Round",
]
