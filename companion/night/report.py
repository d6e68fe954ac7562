"""The night's report and events, without torch: what the night screen, the morning and `companion
sleep` show. The pipeline (`companion.night.pipeline`) fills these in; a screen can import this module
without loading the network."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from companion.lessons.report import lesson_lines
from companion.progress import format_duration, plural

PHASES = ("dreaming", "probing", "recalling", "preparing", "training", "checking", "saving")
LR_FLOOR = 0.1  # the cosine decays to this fraction of the peak


class NightError(Exception):
    """The night cannot run at all (no such day, the day is still open, no weights)."""


@dataclass(frozen=True)
class NightEvent:
    """One report from the night. `kind`:

    * "phase": a new phase began (`phase`; `text` says what);
    * "step": a training step ended (`step` of `total`, `loss`, `lr`, `eta_s`, `tokens` trained so far);
    * "progress": how far a phase without training steps has got (`phase`, `step` of `total`, `eta_s`);
    * "note": something the owner should know (`text`), e.g. the teacher fell back;
    * "done": the night ended (`report`: its NightReport, whatever the status);
    * "error": the night failed with an exception (`text`; the weights are untouched).
    """

    kind: str
    phase: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    tokens: int = 0
    text: str = ""
    report: "NightReport | None" = None


@dataclass
class NightReport:
    """What the morning shows, and what is stored in the night's row (`to_dict`)."""

    night_id: int
    day_id: int
    day_number: int
    status: str = "running"
    reason: str = ""
    duration_s: float = 0.0
    steps: int = 0
    total_steps: int = 0
    learning_rate: float = 0.0
    probe_bound: float = 0.0
    probe_before: dict[str, Any] | None = None
    probe_after: dict[str, Any] | None = None
    taught: dict[str, dict[str, Any]] = field(default_factory=dict)
    material: dict[str, int] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    dream_id: int | None = None
    dream_source: str = ""
    dream_text: str = ""
    books_read: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pre_checkpoint_id: int | None = None
    post_checkpoint_id: int | None = None
    checksum_before: str = ""
    checksum_after: str = ""
    anchor: dict[str, Any] | None = None  # {"checkpoint_id", "ppl", "after", "bound"}: total drift
    lessons: dict[str, Any] | None = None  # what is said back, before -> after (companion.lessons.report)
    precision: str = ""  # what the training steps computed in: "bfloat16" or "float32" (companion.compute.precision)

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NightReport":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One line: the outcome and, when there was one, what it taught and what it cost."""
        head = OUTCOMES.get(self.status, self.status)
        parts = [f"night of day {self.day_number}: {head}"]
        if self.reason and self.status != "accepted":
            parts.append(self.reason)
        taught = self.taught.get("all")
        if taught and taught.get("after") is not None:
            parts.append(f"taught: log-prob {taught['before']:.2f} -> {taught['after']:.2f}")
        if self.probe_before and self.probe_after:
            b = self.probe_before.get("starter_ppl") or self.probe_before["ppl"]
            a = self.probe_after.get("starter_ppl") or self.probe_after["ppl"]
            parts.append(f"probe ppl {b:.2f} -> {a:.2f}")
        return "; ".join(parts)


OUTCOMES = {"accepted": "accepted", "rolled_back": "rolled back", "interrupted": "interrupted",
            "nothing": "nothing to learn", "failed": "failed"}


def _num(value: Any, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def _change(before: float | None, after: float | None) -> str:
    return f" ({after / before - 1:+.1%})" if before and after else ""


def _cost_lines(before: dict[str, Any], after: dict[str, Any], bound: float) -> list[str]:
    """The probe's figures: the starter probe first (the number every checkpoint is listed with), then,
    when there are probe days, the whole probe the verdict is on and the days alone."""
    starter_b, starter_a = before.get("starter_ppl"), after.get("starter_ppl")
    if starter_b is None:  # no starter windows: the whole probe is the checkpoint's figure
        starter_b, starter_a = before.get("ppl"), after.get("ppl")
    lines = [f"What it cost: probe perplexity {_num(starter_b)} -> {_num(starter_a)}{_change(starter_b, starter_a)}"
             f" on the starter probe (the figure in the checkpoints list)"]
    if before.get("days_ppl") is not None:
        lines.append(f"  with probe days {_num(before.get('ppl'))} -> {_num(after.get('ppl'))}"
                     f"{_change(before.get('ppl'), after.get('ppl'))}; probe days alone "
                     f"{_num(before.get('days_ppl'))} -> {_num(after.get('days_ppl'))}")
    lines.append(f"  bound: {bound:.0%} worse at most, on the whole probe")
    return lines


def report_lines(report: NightReport) -> list[str]:
    """The morning report as plain lines: the outcome and why, what the night taught, what it cost,
    how long it took, what it read. The morning screen and `companion sleep` both show these."""
    lines = [f"Night of day {report.day_number}: {OUTCOMES.get(report.status, report.status)}"
             + (f": {report.reason}" if report.reason else "")]
    names = {"chosen": "chosen replies", "corrected": "corrected replies", "written": "written replies",
             "all": "all taught replies"}
    if report.taught:
        lines.append("What it taught (mean log-probability of each reply given its context, before -> after):")
        for key, label in names.items():
            row = report.taught.get(key)
            if row:
                lines.append(f"  {label:<20} {_num(row.get('before')):>9} -> {_num(row.get('after')):>9}"
                             f"   ({plural(row.get('n', 0), 'reply')}, {plural(row.get('tokens', 0), 'token')})")
    before, after = report.probe_before or {}, report.probe_after or {}
    if before:
        lines += _cost_lines(before, after, report.probe_bound)
    if report.anchor and report.anchor.get("ppl") and report.anchor.get("after"):
        a = report.anchor
        lines.append(f"  since the anchor (checkpoint {a['checkpoint_id']}, {a.get('reason', '')}): "
                     f"{a['ppl']:.2f} -> {a['after']:.2f} ({a['after'] / a['ppl'] - 1:+.1%}; bound {a['bound']:.0%})")
    lines += lesson_lines(report.lessons)
    lines.append(f"How long: {format_duration(report.duration_s)}, {report.steps} of {plural(report.total_steps, 'step')}"
                 f" at a peak learning rate of {report.learning_rate:.1e}"
                 + (f", in {report.precision}" if report.precision else ""))
    if report.material:
        drawn = ", ".join(f"{k} {v:,}" for k, v in report.material.items() if v)
        lines.append(f"Material (tokens): {drawn or 'none'}")
    if report.books_read:
        lines.append("Books read: " + ", ".join(report.books_read))
    for note in report.notes:
        lines.append("Note: " + note)
    return [" ".join(line.split()) if "\n" in line else line for line in lines]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _downsample(values: list[float], most: int = 400) -> list[float]:
    if len(values) <= most:
        return list(values)
    stride = len(values) / most
    return [values[int(i * stride)] for i in range(most)]
