"""The night, headless: dream, probe, learn, check, then accept the new weights or leave the old ones.

`run_night` is the one pipeline; the trainer thread (`companion.trainer`) runs it inside the app and
`companion sleep` runs it from the command line. Its promises (design invariant 3):

* The pre-night weights are the current checkpoint; their file is never touched. Training runs on a
  copy loaded from that file, with a **fresh optimizer** (`make_optimizer`) and the night's own
  schedule: nothing is ever loaded from the nursery or an earlier night.
* A night is **accepted** (a `night` checkpoint, parent = the pre-night one, is saved and made current)
  only when every loss was finite and unspiked and the probe perplexity stayed within `night.probe_bound`.
  Otherwise it is **rolled back**: the current checkpoint stays the pre-night one, and the report
  carries the file's checksum, re-read after the night, to show it is unchanged.
* A stop request (`should_stop`) ends the night at the next step boundary: it is recorded
  `interrupted` and the weights are untouched. `pending_night` finds such a night at the next start,
  and `run_night` on that day starts again from the untouched pre-night weights (keeping the dream).
* A day with no words from the owner has nothing to teach: the night is recorded `nothing`, no dream,
  no checkpoint.

Every step of the way is reported through `on_event` as `NightEvent`s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from companion.dream import day_context
from companion.dream import dream as make_dream
from companion.guards import (PROBE_WINDOWS, LossWatch, ProbeSet, Stopped, build_probe, checkpoint_figure,
                              drift_verdict, find_anchor, probe_score, probe_set_name, probe_verdict)
from companion.home import Home
from companion.lessons.keeping import read_lessons, write_lessons
from companion.lessons.report import lesson_lines
from companion.lessons.teaching import Teaching, freeze_embeddings
from companion.lessons.text import LessonText
from companion.night_material import drawn_tokens, gather, mean, plan_steps, step_loss
from companion.preferences import Preferences, collect_preferences, dream_verdicts, score, set_references
from companion.progress import format_duration, plural
from companion.settings import Settings
from companion.store import Checkpoint, Day, Store, StoreError
from companion.training import best_device, lr_at, make_optimizer, train_step
from companion.transcript import Turn
from companion.weights import Weights
from model.checkpoint import CheckpointError, load_tensors, tensors_checksum
from model.tokenizer import Tokenizer

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
                 f" at a peak learning rate of {report.learning_rate:.1e}")
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


# ---------------------------------------------------------------------------------------------------
# Finding the night to run.

def pending_night(store: Store) -> Day | None:
    """At start-up: the closed day whose night still has to run, or None.

    A night left `running` (the app was killed, or crashed) is first recorded `interrupted`. Then the
    last closed day is pending when it has no night yet, or its latest night was interrupted, and no
    newer day has been opened since. Call this only when no trainer thread is running."""
    running = store.running_night()
    if running is not None:
        store.finish_night(running.id, "interrupted",
                           reason="the app stopped during the night; it resumes from the pre-night weights")
    if store.current_day() is not None:
        return None
    closed = [d for d in store.days() if d.closed_at is not None]
    if not closed:
        return None
    nights = store.nights(closed[-1].id)
    if not nights or nights[-1].status == "interrupted":
        return closed[-1]
    return None


def night_day(store: Store, number: int | None = None) -> Day:
    """The day a night should run for: day `number`, else the pending one (NightError when there is none)."""
    if number is not None:
        day = store.get_day(number=number)
        if day is None:
            raise NightError(f"there is no day {number}")
        if day.closed_at is None:
            raise NightError(f"day {number} is still open; close it before its night")
        return day
    day = pending_night(store)
    if day is not None:
        return day
    closed = [d for d in store.days() if d.closed_at is not None]
    if not closed:
        raise NightError("no day has been closed yet: there is nothing to sleep on")
    last = closed[-1]
    if not store.nights(last.id):  # a newer day was opened before its night ran
        opened = store.current_day()
        after = f"day {opened.number} was opened before it ran" if opened is not None else "it never ran"
        raise NightError(f"day {last.number}, the last closed day, has had no night ({after}); "
                         f"run `companion sleep --day {last.number}` to sleep on it now")
    status = store.nights(last.id)[-1].status
    raise NightError(f"day {last.number}, the last closed day, already had its night ({OUTCOMES.get(status, status)}); "
                     f"name a day (--day N) to sleep on it again")


def _pre_night(weights: Weights, store: Store, day: Day) -> Checkpoint:
    """The weights the night starts from: the current checkpoint, once the pointer is settled (a
    checkpoint a crash left under CURRENT without an accepted night is never started from)."""
    weights.settle()
    current = weights.current()
    if current is None:
        raise NightError("the companion has no weights yet (it is not born)")
    return current


def _room_problem(home: Home, weights: Weights, pre: Checkpoint) -> str | None:
    """Whether the disk has room for the night's checkpoint and rows (asked before the night's hours)."""
    from companion.safety.room import room_problem

    try:
        size = weights.path_of(pre).stat().st_size
    except OSError:
        size = pre.size_bytes
    return room_problem(home.checkpoints_dir, home.store_path, size)


def _commit(weights: Weights, post: Checkpoint) -> None:
    """The last step of an accepted night, after the store records it: only now is CURRENT moved."""
    weights.set_current(post)


# ---------------------------------------------------------------------------------------------------
# The pipeline.

PROGRESS_EVERY_S = 0.25
"""The most often a phase's progress is reported (the UI needs no more)."""


class PhaseMeter:
    """Real progress and time left for the phases that are not training steps.

    The night already checks `should_stop` once per sampled token while dreaming and once per batch
    while scoring the probe; the meter counts those checks against the phase's known total (the
    dream's token budget, the probe's batches) and reports them as "progress" events, at most every
    `every_s` seconds, so the bar and the time left move in every phase."""

    def __init__(self, emit: Callable[[NightEvent], None], t0: float, every_s: float | None = None) -> None:
        self.emit, self.t0 = emit, t0
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.phase, self.total, self.done, self.started, self.last = "", 0, 0, 0.0, 0.0

    def begin(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done = phase, max(1, int(total)), 0
        self.started = self.last = time.monotonic()

    def tick(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last < self.every_s or not self.phase:
            return
        self.last = now
        done = min(self.done, self.total)
        spent = now - self.started
        eta = spent / done * (self.total - done) if done else None
        self.emit(NightEvent("progress", phase=self.phase, step=done, total=self.total, eta_s=eta,
                             elapsed_s=now - self.t0))


def _batches(count: int, size: int = 8) -> int:
    return -(-count // size)


def run_night(
    home: Home,
    store: Store,
    day_id: int,
    settings: Settings | None = None,
    device: str | torch.device | None = None,
    on_event: Callable[[NightEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    learning_rate: float | None = None,
    loss_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    before_step: Callable[[int, torch.optim.Optimizer, float], None] | None = None,
    probe_windows: int = PROBE_WINDOWS,
    seed: int | None = None,
    lessons: "Sequence[LessonText] | None" = None,
) -> NightReport:
    """Run the night of the closed day `day_id` and return its report (also stored in the night's row).

    `learning_rate` overrides `night.learning_rate` (benchmarks and sabotage tests); `loss_hook(step,
    loss)` may replace each step's loss before it is guarded and stepped; `before_step(step, optimizer,
    lr)` sees the optimizer before each step. `lessons` replaces the store's lessons (tests: those not
    `learned` are taught, the learned ones only checked; the store's are read, recorded and scheduled
    only when it is None). Exceptions are recorded as a
    `failed` night and re-raised.
    """
    settings = settings or home.load_settings()
    device = torch.device(device) if device is not None else best_device()
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    t0 = time.monotonic()

    day = store.get_day(day_id)
    if day is None:
        raise NightError(f"there is no day with id {day_id}")
    if day.closed_at is None:
        raise NightError(f"day {day.number} is still open; close it before its night")
    weights = Weights(home, store)
    pre = _pre_night(weights, store, day)
    try:
        night = store.start_night(day.id, pre.id)
    except StoreError as exc:
        raise NightError(str(exc)) from exc
    report = NightReport(night.id, day.id, day.number, pre_checkpoint_id=pre.id, checksum_before=pre.checksum,
                         learning_rate=learning_rate or settings.night.learning_rate,
                         probe_bound=settings.night.probe_bound)

    def phase(name: str, text: str = "") -> None:
        if stop():
            raise Stopped()
        emit(NightEvent("phase", phase=name, text=text, elapsed_s=time.monotonic() - t0))

    meter = PhaseMeter(emit, t0)

    def metered_stop() -> bool:
        meter.tick()
        return stop()

    def note(text: str) -> None:
        report.notes.append(text)
        emit(NightEvent("note", text=text, elapsed_s=time.monotonic() - t0))

    def end(status: str, reason: str, post: Checkpoint | None = None) -> NightReport:
        report.status, report.reason = status, reason
        report.duration_s = time.monotonic() - t0
        if post is None:
            if (weights.current() or pre).id != pre.id:
                weights.set_current(pre)
            report.checksum_after = _file_checksum(weights, pre)
            if report.checksum_after != pre.checksum:  # never expected: say it loudly rather than hide it
                report.notes.append(f"WARNING: the pre-night weights file {pre.path} no longer matches its checksum")
        store.finish_night(night.id, status, reason=reason or None, report=report.to_dict(),
                           post_checkpoint_id=post.id if post is not None else None)
        if post is not None:
            _commit(weights, post)
        emit(NightEvent("done", text=report.summary(), report=report, elapsed_s=report.duration_s))
        return report

    try:
        turns = store.turns(day.id)
        if not any(t.role == "owner" for t in turns):
            return end("nothing", f"nothing to learn: {settings.companion.owner} said nothing on day {day.number}")
        room = _room_problem(home, weights, pre)  # before the night's hours, not found out at their end
        if room is not None:
            return end("interrupted", room)
        tokenizer = Tokenizer.load(home.tokenizer_path)
        model = weights.load(pre, device).model
        if _model_checksum(model) != pre.checksum:
            raise CheckpointError(f"{pre.path}: the loaded weights do not match the recorded checksum")
        seed = day.number if seed is None else seed
        block = model.config.block_size
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else contextlib.nullcontext())

        # 1. The dream (kept from an interrupted night of the same day).
        phase("dreaming")
        earlier = store.dreams(day_id=day.id)
        if earlier:
            kept = earlier[-1]
            report.dream_id, report.dream_source, report.dream_text = kept.id, kept.source, kept.text
            note("the day's dream from an earlier night is kept")
        else:
            day_turns = [Turn(t.role, t.text) for t in turns]
            goodnight = turns[-1].text if turns[-1].source == "goodnight" else settings.goodnight_line()
            meter.begin("dreaming", block - len(day_context(tokenizer, day_turns, goodnight, block)))
            with autocast:
                dreamt = make_dream(model, tokenizer, day_turns, settings, seed=seed, should_stop=metered_stop,
                                    goodnight=turns[-1].text if turns[-1].source == "goodnight" else None)
            for text in dreamt.notes:
                note(text)
            if stop():
                raise Stopped()
            if dreamt.turns:
                saved = store.add_dream(day.id, dreamt.text, dreamt.source, night.id)
                report.dream_id, report.dream_source, report.dream_text = saved.id, saved.source, saved.text
            else:
                note("the dream was empty")

        # 2. The probe, before.
        phase("probing")
        probe = build_probe(tokenizer, store, settings.day.greeting, settings.day.goodnight, block, probe_windows)
        probe_batches = _batches(len(probe.starter)) + _batches(len(probe.days))
        meter.begin("probing", probe_batches)
        with autocast:
            before = probe_score(model, probe, metered_stop)
        report.probe_before = before.to_dict()

        # 2b. The lessons: which are taught tonight, and what the companion says back before it.
        cfg = settings.night.lessons
        if lessons is None:
            taught, checked = read_lessons(store, day.number, night.id, cfg.most)
        else:
            taught = [x for x in lessons if not x.learned][: cfg.most]  # the learned ones rest, checked
            checked = taught + [x for x in lessons if x.learned and x not in taught][: max(0, cfg.most - len(taught))]
        teaching = Teaching(taught, checked, settings, tokenizer, block, seed) if checked else None
        recall_before = None
        if teaching is not None:
            phase("recalling", f"asking {len(checked)} lessons afresh")
            with autocast:
                recall_before = teaching.recall(model, stop)
        lesson_night = bool(taught)

        # 3. The material, with the reference log-probabilities of the pre-night weights.
        phase("preparing")
        recent = store.dreams(last=settings.night.dreams_kept) if settings.night.dreams_kept else []
        verdicts = dream_verdicts(store, [d.id for d in recent])
        prefs = collect_preferences(tokenizer, store, day.id, block, [d.id for d in recent])
        meter.begin("preparing", _batches(len(prefs.taught) + 2 * len(prefs.pairs) + len(prefs.unpaired)))
        with autocast:
            references = set_references(model, prefs, metered_stop)
        material = gather(home, store, tokenizer, day, settings, block, prefs,
                          [(d.text, v) for d, (_, _, v) in zip(recent, verdicts)], seed)
        for text in material.notes:
            note(text)
        if lesson_night:  # the lessons' own steps, the usual material spread over them (see companion.lessons)
            count = teaching.steps(recall_before)
            teaching.focus(recall_before)
            steps = (plan_steps(material, _lesson_plan(settings, count), seed) if cfg.material_tokens > 0
                     else [[] for _ in range(count)])
        else:
            steps = plan_steps(material, settings, seed)
        report.material = drawn_tokens(steps)
        report.total_steps = len(steps)
        taught_before = [references[id(r)] for r in prefs.taught]

        # 4. Training: a fresh optimizer, the night's own schedule, every loss guarded.
        phase("training", plural(len(steps), "step"))
        if lesson_night and learning_rate is None:
            report.learning_rate = cfg.learning_rate
        lr_peak = report.learning_rate
        if lesson_night and cfg.freeze_embeddings:
            freeze_embeddings(model)
        anchor = find_anchor(store, pre, settings.night.anchor)
        pull_to = _pull_target(weights, anchor, pre, model, device) if lesson_night and cfg.pull > 0 else None
        optimizer = make_optimizer(model, lr_peak)
        watch = LossWatch(settings.night.spike_factor)
        model.train()
        t_train = time.monotonic()
        tokens = 0
        for step, batch in enumerate(steps):
            if stop():
                raise Stopped()
            lr = lr_at((step + 1) / len(steps), lr_peak, settings.night.warmup_fraction, LR_FLOOR)
            if before_step is not None:
                before_step(step, optimizer, lr)
            with autocast:
                loss = step_loss(model, batch, settings)
                if lesson_night:
                    loss = loss + teaching.loss(model)
            if loss_hook is not None:
                loss = loss_hook(step, loss)
            value = train_step(model, optimizer, loss, lr, settings.night.grad_clip)
            if pull_to is not None:
                with torch.no_grad():
                    for p, target in pull_to:
                        p.lerp_(target, cfg.pull)
            report.losses.append(value)
            report.steps = step + 1
            tokens += sum(len(item) for item in batch)
            spent = time.monotonic() - t_train
            emit(NightEvent("step", phase="training", step=step + 1, total=len(steps), loss=value, lr=lr,
                            eta_s=spent / (step + 1) * (len(steps) - step - 1), elapsed_s=time.monotonic() - t0,
                            tokens=tokens))
            why = watch.check(step, value)
            if why is not None:
                del optimizer, model
                report.losses = _downsample(report.losses)
                return end("rolled_back", why)
        del optimizer
        report.losses = _downsample(report.losses)

        # 5. The probe, after, and what the night taught.
        phase("checking")
        meter.begin("checking", probe_batches + _batches(len(prefs.taught)))
        with autocast:
            after = probe_score(model, probe, metered_stop)
            report.taught = _taught(prefs, taught_before, score(model, prefs.taught, should_stop=metered_stop))
        report.probe_after = after.to_dict()
        why = probe_verdict(before, after, settings.night.probe_bound)
        if why is None and anchor is not None and probe.starter:
            with autocast:
                anchor_ppl = _anchor_ppl(weights, anchor, pre, before, probe, device, stop)
            report.anchor = {"checkpoint_id": anchor.id, "reason": anchor.reason, "ppl": anchor_ppl,
                             "after": after.starter_ppl, "bound": settings.night.drift_bound}
            why = drift_verdict(anchor_ppl, after.starter_ppl, settings.night.drift_bound, anchor.id)
        recall_after = None
        if why is None and teaching is not None:
            phase("recalling", f"asking {len(checked)} lessons afresh after the night")
            with autocast:
                recall_after = teaching.recall(model, stop)
            report.lessons = teaching.summary(recall_before, recall_after)
            why = teaching.verdict(recall_before, recall_after)
        if why is not None:
            if recall_after is not None and lessons is None:
                write_lessons(store, night.id, day.number, taught, recall_after, accepted=False)
            return end("rolled_back", why)

        # 6. Accept: save the night's checkpoint, record the night accepted, then make it current
        # (`end` -> `_commit`): a stop anywhere before that leaves CURRENT on the pre-night weights.
        phase("saving")
        post = weights.save(model, "night", step=pre.step + report.steps, day_id=day.id, day_number=day.number,
                            parent_id=pre.id, probe_ppl=checkpoint_figure(after),
                            probe_set=probe_set_name(block, probe_windows), make_current=False)
        report.post_checkpoint_id, report.checksum_after = post.id, post.checksum
        if recall_after is not None and lessons is None:
            write_lessons(store, night.id, day.number, taught, recall_after, accepted=True)
        for book, tokens in material.books:
            store.mark_book_read(book.id, night_id=night.id, tokens=tokens)
            report.books_read.append(book.path)
        accepted = end("accepted", "the probe stayed within its bound", post)
        try:  # retention is housekeeping after the night is recorded: it never fails a night
            from companion.retention import prune

            prune(home, store)
        except Exception as exc:
            emit(NightEvent("note", text=f"old checkpoints were not pruned this time: {exc}"))
        return accepted
    except Stopped:
        report.losses = _downsample(report.losses)
        return end("interrupted", "stopped before the night was done; it resumes from the pre-night weights")
    except BaseException as exc:
        if _disk_full(exc) and (store.get_night(night.id) or night).status == "running":
            report.losses = _downsample(report.losses)  # a full disk ends in a sentence, not a traceback
            return end("failed", _disk_full_reason(exc, home))
        if (store.get_night(night.id) or night).status == "running":
            report.status, report.reason = "failed", f"{type(exc).__name__}: {exc}"
            report.duration_s = time.monotonic() - t0
            with contextlib.suppress(Exception):
                if (weights.current() or pre).id != pre.id:
                    weights.set_current(pre)
                store.finish_night(night.id, "failed", reason=report.reason[:2000], report=report.to_dict())
        raise


def _disk_full(exc: BaseException) -> bool:
    from companion.safety.room import is_disk_full

    return is_disk_full(exc) or is_disk_full(exc.__cause__ or exc)


def _disk_full_reason(exc: BaseException, home: Home) -> str:
    from companion.safety.room import disk_full_sentence

    return disk_full_sentence(getattr(exc, "filename", None) or home.checkpoints_dir)


def _lesson_plan(settings: Settings, steps: int) -> Settings:
    """The night's settings with the lessons' `steps`, and their share of other material per step."""
    cfg = settings.night.lessons
    night = dataclasses.replace(settings.night, steps=steps, batch_tokens=max(64, cfg.material_tokens))
    return dataclasses.replace(settings, night=night)


def _pull_target(weights: Weights, anchor: Checkpoint | None, pre: Checkpoint, model: torch.nn.Module,
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, where it is pulled back to) for each trained parameter: the anchor's weights when
    they have the model's shape, else the pre-night weights. The feasibility study pulled toward the
    seedling at 0.03 a step: drift +2.0% instead of +3.9%, full recall a night later. With this
    night's other material and ordinary cards 0.03 held recall at 0 after a night; 0.01 is the
    default (measured in the README)."""
    source = dict(model.named_parameters())
    targets = {name: p.detach().clone() for name, p in source.items() if p.requires_grad}
    if anchor is not None and anchor.checksum != pre.checksum:
        try:
            held = dict(weights.load(anchor, device).model.named_parameters())
            if all(name in held and held[name].shape == t.shape for name, t in targets.items()):
                targets = {name: held[name].detach().clone() for name in targets}
        except CheckpointError:
            pass
    return [(source[name], t) for name, t in targets.items()]


_ANCHOR_PPL: dict[tuple[str, int, int], float] = {}  # (anchor checksum, windows, block) -> starter ppl


def _anchor_ppl(weights: Weights, anchor: Checkpoint, pre: Checkpoint, before, probe: ProbeSet,
                device: torch.device, stop: Callable[[], bool]) -> float | None:
    """The anchor's perplexity on the probe's starter windows: the pre-night's when they are the same
    weights, else read once from the anchor's file (and remembered for the process)."""
    if anchor.checksum == pre.checksum:
        return before.starter_ppl
    block = len(probe.starter[0]) - 1 if probe.starter else 0
    if anchor.probe_ppl is not None and anchor.probe_set == probe_set_name(block, len(probe.starter)):
        return anchor.probe_ppl  # one probe, one number: the figure stored with the anchor
    key = (anchor.checksum, len(probe.starter), len(probe.starter[0]))
    if key not in _ANCHOR_PPL:
        try:
            model = weights.load(anchor, device).model
        except CheckpointError:
            return None
        score = probe_score(model, ProbeSet(starter=probe.starter), stop)
        del model
        if score.starter_ppl is None:
            return None
        _ANCHOR_PPL[key] = score.starter_ppl
    return _ANCHOR_PPL[key]


def _model_checksum(model: torch.nn.Module) -> str:
    return tensors_checksum({k: v.detach().cpu() for k, v in model.state_dict().items()})


def _file_checksum(weights: Weights, checkpoint: Checkpoint) -> str:
    """The checksum of the checkpoint's file as it is on disk now (the proof of an untouched rollback)."""
    try:
        tensors, _ = load_tensors(weights.path_of(checkpoint))
    except CheckpointError as exc:
        return f"unreadable: {exc}"
    return tensors_checksum(tensors)


def _taught(prefs: Preferences, before: list[float], after: list[float]) -> dict[str, dict[str, Any]]:
    """Mean log-probability of the chosen, corrected and written replies (each given its context)
    before and after the night, by kind and all together."""
    out: dict[str, dict[str, Any]] = {}
    groups = {"chosen": ("pick",), "corrected": ("correction",), "written": ("written",),
              "all": ("pick", "correction", "written")}
    for name, kinds in groups.items():
        rows = [(b, a, r) for b, a, r in zip(before, after, prefs.taught) if r.kind in kinds]
        if not rows:
            continue
        tokens = sum(sum(1 for t in r.targets if t != -100) for _, _, r in rows)
        out[name] = {"n": len(rows), "tokens": tokens, "before": mean([b for b, _, _ in rows]),
                     "after": mean([a for _, a, _ in rows])}
    return out
