"""Messages the app's workers and screens post to each other (harlequin style: work in a thread,
results posted back as messages, handled on the UI's thread).

Nothing here imports torch: engines and results travel as plain objects, named for the type checker
only (the modules that make them are imported only when checking types).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from companion.day.round import Round
    from companion.engine import Engine
    from companion.growth.grow import GrowthEvent
    from companion.night.report import NightEvent
    from companion.birth.nursery import NurseryProgress


class EngineReady(Message):
    """The model finished loading in its worker; ``notes`` are fallbacks taken (said to the owner)."""

    def __init__(self, engine: Engine, notes: list[str] | None = None) -> None:
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
    """New text waits in the round (`Round.take_text`); coalesced: at most one in flight."""

    def __init__(self, round: Round) -> None:
        super().__init__()
        self.round = round


class GenerationDone(Message):
    """A round's sampling finished: ``results`` is a list of (text, finish), one per row (none when
    an inner line after the reply was not what the model wanted next)."""

    def __init__(self, round: Round, results: list[tuple[str, str]]) -> None:
        super().__init__()
        self.round = round
        self.results = results


class GenerationFailed(Message):
    """A round's sampling failed; ``error`` says why in words."""

    def __init__(self, round: Round, error: str) -> None:
        super().__init__()
        self.round = round
        self.error = error


class DayClosed(Message):
    """The day closed (good night, or full): its night may begin."""

    def __init__(self, day_id: int, reason: str) -> None:
        super().__init__()
        self.day_id = day_id
        self.reason = reason


class BirthProgress(Message):
    """A nursery progress report (``progress`` is a `companion.birth.nursery.NurseryProgress`)."""

    def __init__(self, progress: NurseryProgress) -> None:
        super().__init__()
        self.progress = progress


class BirthLog(Message):
    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class BirthDone(Message):
    """Birth (or adoption) finished: the companion in ``home_path`` can be opened."""

    def __init__(self, home_path: Path, notes: list[str] | None = None, cancelled: bool = False) -> None:
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

    def __init__(self, day_id: int, event: NightEvent) -> None:
        super().__init__()
        self.day_id = day_id
        self.event = event


class GrowthFinished(Message):
    """A growth run by the trainer thread ended (`event` is its last GrowthEvent, or the trainer's error NightEvent)."""

    def __init__(self, event: GrowthEvent | NightEvent) -> None:
        super().__init__()
        self.event = event
