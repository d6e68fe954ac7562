"""Messages the app's workers and screens post to each other (harlequin style: work in a thread,
results posted back as messages, handled on the UI's thread).

Nothing here imports torch: engines and results travel as plain objects.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class EngineReady(Message):
    """The model finished loading in its worker; ``notes`` are fallbacks taken (said to the owner)."""

    def __init__(self, engine: Any, notes: list[str] | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.notes = notes or []


class EngineFailed(Message):
    """The model could not be loaded; ``error`` says why in words."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class WeightsReloaded(Message):
    """The engine re-read the current checkpoint (after a restore or a night)."""

    def __init__(self, checkpoint_id: int, notes: list[str] | None = None) -> None:
        super().__init__()
        self.checkpoint_id = checkpoint_id
        self.notes = notes or []


class GenerationStreamed(Message):
    """New text is waiting in the generation's buffer (coalesced: at most one in flight)."""

    def __init__(self, generation_id: int) -> None:
        super().__init__()
        self.generation_id = generation_id


class GenerationDone(Message):
    """A generation finished: ``results`` is a list of (text, finish), one per row."""

    def __init__(self, generation_id: int, kind: str, results: list[tuple[str, str]], max_tokens: int) -> None:
        super().__init__()
        self.generation_id = generation_id
        self.kind = kind
        self.results = results
        self.max_tokens = max_tokens


class GenerationFailed(Message):
    def __init__(self, generation_id: int, kind: str, error: str) -> None:
        super().__init__()
        self.generation_id = generation_id
        self.kind = kind
        self.error = error


class DayClosed(Message):
    """The day closed (good night, or full): its night may begin."""

    def __init__(self, day_id: int, reason: str) -> None:
        super().__init__()
        self.day_id = day_id
        self.reason = reason


class BirthProgress(Message):
    """A nursery progress report (``progress`` is a `companion.birth.nursery.NurseryProgress`)."""

    def __init__(self, progress: Any) -> None:
        super().__init__()
        self.progress = progress


class BirthLog(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class BirthDone(Message):
    """Birth (or adoption) finished: the companion in ``home_path`` can be opened."""

    def __init__(self, home_path: Any, notes: list[str] | None = None, cancelled: bool = False) -> None:
        super().__init__()
        self.home_path = home_path
        self.notes = notes or []
        self.cancelled = cancelled


class BirthFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class NightFinished(Message):
    """The trainer thread's night ended: ``event`` is its last NightEvent ("done" with the report, or "error")."""

    def __init__(self, day_id: int, event: Any) -> None:
        super().__init__()
        self.day_id = day_id
        self.event = event


class GrowthFinished(Message):
    """A growth run by the trainer thread ended (`event` is its last GrowthEvent, or an error event)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event
