"""The night, headless: dream, probe, learn, check, then accept the new weights or leave the old ones.

`run_night` is the one pipeline; the trainer thread (`companion.night.thread`) runs it inside the app and
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from companion.compute.precision import measuring_autocast, training_autocast, training_precision
from companion.compute.threads import pace
from companion.history.weights import Weights
from companion.home import Home
from companion.lessons.keeping import read_lessons, write_lessons
from companion.lessons.teaching import LOOK_AT, Teaching, freeze_embeddings
from companion.lessons.text import LessonText
from companion.night.dream import day_context
from companion.night.dream import dream as make_dream
from companion.night.guards import (
    PROBE_WINDOWS,
    LossWatch,
    ProbeSet,
    Stopped,
    build_probe,
    checkpoint_figure,
    drift_verdict,
    find_anchor,
    probe_score,
    probe_set_name,
    probe_verdict,
)
from companion.night.material import drawn_tokens, gather, mean, plan_steps, step_loss
from companion.night.optimizer import best_device, lr_at, make_optimizer, pull_share, train_step
from companion.night.preferences import (
    Preferences,
    collect_preferences,
    dream_verdicts,
    score,
    set_references,
)
from companion.night.report import (
    LR_FLOOR,
    NightError,
    NightEvent,
    NightReport,
    _downsample,
)
from companion.progress import plural
from companion.settings import Settings
from companion.store import Checkpoint, Day, Store, StoreError
from companion.transcript import Turn
from companion.model.checkpoint import CheckpointError, load_tensors, tensors_checksum


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
    only when it is None). Exceptions are recorded as a `failed` night and re-raised.
    """
    options = NightOptions(learning_rate, loss_hook, before_step, probe_windows, seed, lessons)
    return NightRun(home, store, day_id, settings or home.load_settings(), device, on_event, should_stop,
                    options).run()


@dataclass(frozen=True)
class NightOptions:
    """What a caller may change about one night (see `run_night`)."""

    learning_rate: float | None = None
    loss_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    before_step: Callable[[int, torch.optim.Optimizer, float], None] | None = None
    probe_windows: int = PROBE_WINDOWS
    seed: int | None = None
    lessons: "Sequence[LessonText] | None" = None


@dataclass
class _Tonight:
    """What the preparing phase hands to training and checking."""

    steps: list
    prefs: Preferences
    taught_before: list[float]
    material: Any
    teaching: Teaching | None = None
    taught: list = field(default_factory=list)
    checked: list = field(default_factory=list)
    recall_before: Any = None
    anchor: Checkpoint | None = None
    finish_seen: dict[int, float] = field(default_factory=dict)  # id(lesson) -> drawn whole at the last look

    @property
    def lesson_night(self) -> bool:
        """Lessons taught tonight, or only learned ones resting that it keeps: trained at the lessons'
        settings either way (`Teaching`)."""
        return self.teaching is not None

    @property
    def said_before(self) -> bool:
        """A lesson checked tonight was already said back before it: its taught words may already be
        borrowed by ordinary chat, so the night looks for leaks before its first step too."""
        return self.recall_before is not None and any(row.total for row in self.recall_before.lessons)


class NightRun:
    """One night, phase by phase. `run` is the order of the phases; each phase is one method, and every
    way out goes through `end`, which records the night and moves CURRENT only for an accepted one."""

    def __init__(self, home: Home, store: Store, day_id: int, settings: Settings, device: str | torch.device | None,
                 on_event: Callable[[NightEvent], None] | None, should_stop: Callable[[], bool] | None,
                 options: NightOptions) -> None:
        self.home, self.store, self.settings, self.options = home, store, settings, options
        self.device = torch.device(device) if device is not None else best_device()
        self.emit = on_event or (lambda event: None)
        self.stop = should_stop or (lambda: False)
        self.t0 = time.monotonic()
        day = store.get_day(day_id)
        if day is None:
            raise NightError(f"there is no day with id {day_id}")
        if day.closed_at is None:
            raise NightError(f"day {day.number} is still open; close it before its night")
        self.day = day
        self.weights = Weights(home, store)
        self.pre = _pre_night(self.weights, store, day)
        try:
            self.night = store.start_night(day.id, self.pre.id)
        except StoreError as exc:
            raise NightError(str(exc)) from exc
        self.report = NightReport(self.night.id, day.id, day.number, pre_checkpoint_id=self.pre.id,
                                  checksum_before=self.pre.checksum,
                                  learning_rate=options.learning_rate or settings.night.learning_rate,
                                  probe_bound=settings.night.probe_bound)
        self.meter = PhaseMeter(self.emit, self.t0)

    # -- reporting ----------------------------------------------------------------------------------

    def phase(self, name: str, text: str = "") -> None:
        if self.stop():
            raise Stopped()
        self.emit(NightEvent("phase", phase=name, text=text, elapsed_s=time.monotonic() - self.t0))

    def metered_stop(self) -> bool:
        self.meter.tick()
        return self.stop()

    def note(self, text: str) -> None:
        self.report.notes.append(text)
        self.emit(NightEvent("note", text=text, elapsed_s=time.monotonic() - self.t0))

    def end(self, status: str, reason: str, post: Checkpoint | None = None) -> NightReport:
        report, pre, weights = self.report, self.pre, self.weights
        report.status, report.reason = status, reason
        report.duration_s = time.monotonic() - self.t0
        report.losses = _downsample(report.losses)
        if post is None:
            if (weights.current() or pre).id != pre.id:
                weights.set_current(pre)
            report.checksum_after = _file_checksum(weights, pre)
            if report.checksum_after != pre.checksum:  # never expected: say it loudly rather than hide it
                report.notes.append(f"WARNING: the pre-night weights file {pre.path} no longer matches its checksum")
        self.store.finish_night(self.night.id, status, reason=reason or None, report=report.to_dict(),
                                post_checkpoint_id=post.id if post is not None else None)
        if post is not None:
            _commit(weights, post)
        self.emit(NightEvent("done", text=report.summary(), report=report, elapsed_s=report.duration_s))
        return report

    # -- the night ----------------------------------------------------------------------------------

    def run(self) -> NightReport:
        try:
            return self._phases()
        except Stopped:
            return self.end("interrupted", "stopped before the night was done; it resumes from the pre-night weights")
        except BaseException as exc:
            running = (self.store.get_night(self.night.id) or self.night).status == "running"
            if _disk_full(exc) and running:  # a full disk ends in a sentence, not a traceback
                return self.end("failed", _disk_full_reason(exc, self.home))
            if running:
                self._record_failure(exc)
            raise

    def _record_failure(self, exc: BaseException) -> None:
        report = self.report
        report.status, report.reason = "failed", f"{type(exc).__name__}: {exc}"
        report.duration_s = time.monotonic() - self.t0
        with contextlib.suppress(Exception):
            if (self.weights.current() or self.pre).id != self.pre.id:
                self.weights.set_current(self.pre)
            self.store.finish_night(self.night.id, "failed", reason=report.reason[:2000], report=report.to_dict())

    def _phases(self) -> NightReport:
        settings, day = self.settings, self.day
        turns = self.store.turns(day.id)
        if not any(t.role == "owner" for t in turns):
            return self.end("nothing", f"nothing to learn: {settings.companion.owner} said nothing on day {day.number}")
        room = _room_problem(self.home, self.weights, self.pre)  # before the night's hours, not at their end
        if room is not None:
            return self.end("interrupted", room)
        loaded_pre = self.weights.load(self.pre, self.device)
        self.tokenizer, self.model = loaded_pre.tokenizer(), loaded_pre.model
        if _model_checksum(self.model) != self.pre.checksum:
            raise CheckpointError(f"{self.pre.path}: the loaded weights do not match the recorded checksum")
        self.seed = day.number if self.options.seed is None else self.options.seed
        self.block = self.model.config.block_size
        self.autocast = measuring_autocast(self.device)
        self.report.precision = training_precision(self.device, self.settings.night.cpu_bfloat16)
        self._dream(turns)
        before = self._probe_before()
        tonight = self._prepare()
        if not self._train(tonight):
            return self.end("rolled_back", self._rolled_back_why)
        why, recall_after = self._check(before, tonight)
        if why is not None:
            if recall_after is not None and self.options.lessons is None:
                write_lessons(self.store, self.night.id, day.number, tonight.taught, recall_after, accepted=False)
            return self.end("rolled_back", why)
        return self._accept(tonight, recall_after)

    def _dream(self, turns: list) -> None:
        """1. The dream (kept from an interrupted night of the same day)."""
        self.phase("dreaming")
        report, store, day = self.report, self.store, self.day
        earlier = store.dreams(day_id=day.id)
        if earlier:
            kept = earlier[-1]
            report.dream_id, report.dream_source, report.dream_text = kept.id, kept.source, kept.text
            self.note("the day's dream from an earlier night is kept")
            return
        day_turns = [Turn(t.role, t.text) for t in turns]
        said_goodnight = turns[-1].source == "goodnight"
        goodnight = turns[-1].text if said_goodnight else self.settings.goodnight_line()
        self.meter.begin("dreaming", self.block - len(day_context(self.tokenizer, day_turns, goodnight, self.block)))
        with self.autocast:
            dreamt = make_dream(self.model, self.tokenizer, day_turns, self.settings, seed=self.seed,
                                should_stop=self.metered_stop, goodnight=turns[-1].text if said_goodnight else None)
        for text in dreamt.notes:
            self.note(text)
        if self.stop():
            raise Stopped()
        if dreamt.turns:
            saved = store.add_dream(day.id, dreamt.text, dreamt.source, self.night.id)
            report.dream_id, report.dream_source, report.dream_text = saved.id, saved.source, saved.text
        else:
            self.note("the dream was empty")

    def _probe_before(self) -> Any:
        """2. The probe, before."""
        self.phase("probing")
        settings = self.settings
        self.probe = build_probe(self.tokenizer, self.store, settings.day.greeting, settings.day.goodnight,
                                 self.block, self.options.probe_windows)
        self.probe_batches = _batches(len(self.probe.starter)) + _batches(len(self.probe.days))
        self.meter.begin("probing", self.probe_batches)
        with self.autocast:
            before = probe_score(self.model, self.probe, self.metered_stop)
        self.report.probe_before = before.to_dict()
        return before

    def _lessons(self, tonight: _Tonight) -> None:
        """2b. The lessons: which are taught tonight, and what the companion says back before it."""
        cfg, lessons = self.settings.night.lessons, self.options.lessons
        if lessons is None:
            taught, checked = read_lessons(self.store, self.day.number, self.night.id, cfg.most)
        else:
            taught = [x for x in lessons if not x.learned][: cfg.most]  # the learned ones rest, checked
            checked = taught + [x for x in lessons if x.learned and x not in taught][: max(0, cfg.most - len(taught))]
        tonight.taught, tonight.checked = taught, checked
        if checked:
            tonight.teaching = Teaching(taught, checked, self.settings, self.tokenizer, self.block, self.seed)
            self.phase("recalling", f"asking {len(checked)} lessons afresh")
            with self.autocast:
                tonight.recall_before = tonight.teaching.recall(self.model, self.stop)

    def _prepare(self) -> _Tonight:
        """3. The material, with the reference log-probabilities of the pre-night weights."""
        settings, store = self.settings, self.store
        tonight = _Tonight([], Preferences(), [], None)
        self._lessons(tonight)
        self.phase("preparing")
        recent = store.dreams(last=settings.night.dreams_kept) if settings.night.dreams_kept else []
        verdicts = dream_verdicts(store, [d.id for d in recent])
        prefs = collect_preferences(self.tokenizer, store, self.day.id, self.block, [d.id for d in recent])
        self.meter.begin("preparing", _batches(len(prefs.taught) + 2 * len(prefs.pairs) + len(prefs.unpaired)))
        with self.autocast:
            references = set_references(self.model, prefs, self.metered_stop)
        material = gather(self.home, store, self.tokenizer, self.day, settings, self.block, prefs,
                          [(d.text, v) for d, (_, _, v) in zip(recent, verdicts)], self.seed)
        for text in material.notes:
            self.note(text)
        cfg = settings.night.lessons
        if tonight.lesson_night:  # the lessons' own steps, the usual material spread over them (see companion.lessons)
            count = tonight.teaching.steps(tonight.recall_before)  # fewer on a night that consolidates
            tonight.teaching.focus(tonight.recall_before)  # extra cards for the lessons that lag
            steps = (plan_steps(material, _lesson_plan(settings, count), self.seed) if cfg.material_tokens > 0
                     else [[] for _ in range(count)])
        else:
            steps = plan_steps(material, settings, self.seed)
        self.report.material = drawn_tokens(steps)
        self.report.total_steps = len(steps)
        tonight.steps, tonight.prefs, tonight.material = steps, prefs, material
        tonight.taught_before = [references[id(r)] for r in prefs.taught]
        return tonight

    def _train(self, tonight: _Tonight) -> bool:
        """4. Training: a fresh optimizer, the night's own schedule, every loss guarded. False when a loss
        spiked or was not finite (the reason in `_rolled_back_why`)."""
        settings, report, model, steps = self.settings, self.report, self.model, tonight.steps
        cfg, lesson_night = settings.night.lessons, tonight.lesson_night
        self.phase("training", f"{plural(len(steps), 'step')} in {report.precision}")
        if lesson_night and self.options.learning_rate is None:
            report.learning_rate = cfg.learning_rate
        lr_peak = report.learning_rate
        if lesson_night and cfg.freeze_embeddings:
            freeze_embeddings(model)
        tonight.anchor = find_anchor(self.store, self.pre, settings.night.anchor)
        pull_to = (_pull_target(self.weights, tonight.anchor, self.pre, model, self.device)
                   if lesson_night and cfg.pull > 0 else None)
        optimizer = make_optimizer(model, lr_peak)
        watch = LossWatch(settings.night.spike_factor)
        model.train()
        t_train, tokens = time.monotonic(), 0
        look_at = round(len(steps) * LOOK_AT) if lesson_night else -1
        planned = len(steps)
        extra = round(cfg.steps * cfg.finish_steps) if lesson_night else 0  # a consolidating night's too
        schedule = [lr_at((i + 1) / planned, lr_peak, settings.night.warmup_fraction, LR_FLOOR) for i in range(planned)]
        mean_lr = sum(schedule) / max(1, planned)
        for step, batch in enumerate(steps):  # `_finish` may add steps at the end
            if self.stop():
                raise Stopped()
            if step == 0 and lesson_night and tonight.said_before:
                self._look(tonight, focus=False)
            if step == look_at:
                self._look(tonight)
            lr = schedule[step] if step < planned else lr_peak * FINISH_LR
            pace()  # the free cores, afresh (an automatic thread count: companion.compute.threads)
            value = self._step(step, batch, optimizer, lr, tonight.teaching if lesson_night else None)
            if pull_to is not None:
                with torch.no_grad():
                    share = pull_share(cfg.pull, lr, mean_lr)
                    for p, target in pull_to:
                        p.lerp_(target, share)
            report.losses.append(value)
            report.steps = step + 1
            tokens += sum(len(item) for item in batch)
            spent = time.monotonic() - t_train
            self.emit(NightEvent("step", phase="training", step=step + 1, total=len(steps), loss=value, lr=lr,
                                 eta_s=spent / (step + 1) * (len(steps) - step - 1),
                                 elapsed_s=time.monotonic() - self.t0, tokens=tokens))
            why = watch.check(step, value)
            if why is not None:
                self._rolled_back_why = why
                return False
            if step == len(steps) - 1 and len(steps) < planned + extra:
                self._finish(tonight, steps, planned, planned + extra)
        return True

    def _finish(self, tonight: _Tonight, steps: list, planned: int, most: int) -> None:
        """At the end of a lesson night's steps: while a taught answer is not yet drawn whole in 99% of
        the owner's samples (`Teaching.unsure`), `FINISH_CHUNK` more steps on the night's material again,
        at `FINISH_LR` of the peak, with extra cards for those lessons, up to `most` steps in all.

        Only for answers the night brought near (drawn whole at least `FINISH_FROM` of the time), and
        only while the last steps brought one of them `FINISH_GAIN` nearer: an answer the model does
        not yet begin to say (a first night on new weights, a lesson too long) is not finished by a few
        more steps at a lower rate; it comes back tomorrow, and the night does not spend its time."""
        teaching, seen = tonight.teaching, tonight.finish_seen
        with self.autocast:
            unsure = [(p, x) for p, x in teaching.unsure(self.model) if p >= FINISH_FROM]
        if seen and not any(p - seen.get(id(x), 0.0) >= FINISH_GAIN for p, x in unsure):
            if unsure:
                self.note(f"after {len(steps)} steps, no nearer: the night ends there")
            unsure = []
        seen.update({id(x): p for p, x in unsure})
        if not unsure:
            return
        add = min(FINISH_CHUNK, most - len(steps))
        steps.extend(steps[i % planned] for i in range(len(steps), len(steps) + add))
        teaching.weak = unsure
        self.report.total_steps = len(steps)
        self.note(f"after {len(steps) - add} steps, {add} more for: "
                  + "; ".join(f"\u201c{x.answer}\u201d ({p:.0%} drawn whole)" for p, x in unsure))

    def _look(self, tonight: _Tonight, focus: bool = True) -> None:
        """Two thirds into a lesson night: what is said back so far decides which lessons get extra
        cards for the rest of it, which near misses the margin pushes the answers above, and which
        taught words said to ordinary lines are held down (`Teaching.look`, `Teaching.focus`). Before
        the first step too when a lesson is already said (`_Tonight.said_before`), for the leaks only
        (`focus` False: the recall before the night has set the extra cards): measured, a second night
        that held "My dad is called Marta." down only from two thirds in left 4.4% of replies to
        ordinary lines carrying a taught word."""
        teaching, held = tonight.teaching, len(tonight.teaching.leaks)
        with self.autocast:
            seen = teaching.look(self.model, self.stop)
        if focus:
            teaching.focus(seen, keep=True)
        self.model.train()
        if focus and teaching.lagging():
            self.note(f"after {self.report.steps} steps, extra cards for: "
                      + "; ".join(f"\u201c{a}\u201d" for a in teaching.lagging()))
        new = teaching.leaks[held:]
        if new:
            self.note(f"after {self.report.steps} steps, taught words said to ordinary lines, held down from here: "
                      + "; ".join(f"\u201c{x.reply}\u201d" for x in new[:3])
                      + (f" and {len(new) - 3} more" if len(new) > 3 else ""))

    def _step(self, step: int, batch: Sequence, optimizer: torch.optim.Optimizer, lr: float,
              teaching: Teaching | None) -> float:
        """One training step: the night's loss (plus the lessons'), the caller's hooks, one optimizer
        step. Each part of the loss is built and backpropagated before the next (`train_step`), so a
        lesson night's memory is its largest part's, not the sum of all of them."""
        if self.options.before_step is not None:
            self.options.before_step(step, optimizer, lr)
        parts = [lambda: step_loss(self.model, batch, self.settings)]
        if teaching is not None:
            parts += teaching.parts(self.model)
        return train_step(self.model, optimizer, [self._built(step, part) for part in parts], lr,
                          self.settings.night.grad_clip)

    def _built(self, step: int, part: Callable[[], torch.Tensor | None]) -> Callable[[], torch.Tensor | None]:
        """`part` built in the night's training precision (`companion.compute.precision`) and passed
        through the caller's loss hook (the hook sees every part: scaling each scales the step's loss)."""
        def build() -> torch.Tensor | None:
            with training_autocast(self.device, self.report.precision):
                loss = part()
            if loss is not None and self.options.loss_hook is not None:
                loss = self.options.loss_hook(step, loss)
            return loss
        return build

    def _check(self, before: Any, tonight: _Tonight) -> tuple[str | None, Any]:
        """5. The probe after, what the night taught, the total drift and the lessons' recall: a reason to
        roll back, or None; and the lessons' recall after the night when it was measured."""
        settings, report, model, anchor = self.settings, self.report, self.model, tonight.anchor
        self.phase("checking")
        self.meter.begin("checking", self.probe_batches + _batches(len(tonight.prefs.taught)))
        with self.autocast:
            after = probe_score(model, self.probe, self.metered_stop)
            report.taught = _taught(tonight.prefs, tonight.taught_before,
                                    score(model, tonight.prefs.taught, should_stop=self.metered_stop))
        report.probe_after = after.to_dict()
        self.after = after
        why = probe_verdict(before, after, settings.night.probe_bound)
        if why is None and anchor is not None and self.probe.starter:
            with self.autocast:
                anchor_ppl = _anchor_ppl(self.weights, anchor, self.pre, before, self.probe, self.device, self.stop)
            report.anchor = {"checkpoint_id": anchor.id, "reason": anchor.reason, "ppl": anchor_ppl,
                             "after": after.starter_ppl, "bound": settings.night.drift_bound}
            why = drift_verdict(anchor_ppl, after.starter_ppl, settings.night.drift_bound, anchor.id)
        recall_after = None
        if why is None and tonight.teaching is not None:
            self.phase("recalling", f"asking {len(tonight.checked)} lessons afresh after the night")
            with self.autocast:
                recall_after = tonight.teaching.recall(model, self.stop)
            report.lessons = tonight.teaching.summary(tonight.recall_before, recall_after)
            why = tonight.teaching.verdict(tonight.recall_before, recall_after)
        return why, recall_after

    def _accept(self, tonight: _Tonight, recall_after: Any) -> NightReport:
        """6. Accept: save the night's checkpoint, record the night accepted, then make it current
        (`end` -> `_commit`): a stop anywhere before that leaves CURRENT on the pre-night weights."""
        self.phase("saving")
        report, store, day, pre = self.report, self.store, self.day, self.pre
        post = self.weights.save(self.model, "night", step=pre.step + report.steps, day_id=day.id,
                                 day_number=day.number, parent_id=pre.id, probe_ppl=checkpoint_figure(self.after),
                                 probe_set=probe_set_name(self.block, self.options.probe_windows), make_current=False)
        report.post_checkpoint_id, report.checksum_after = post.id, post.checksum
        if recall_after is not None and self.options.lessons is None:
            write_lessons(store, self.night.id, day.number, tonight.taught, recall_after, accepted=True)
        for book, tokens in tonight.material.books:
            store.mark_book_read(book.id, night_id=self.night.id, tokens=tokens)
            report.books_read.append(book.path)
        accepted = self.end("accepted", "the probe stayed within its bound", post)
        try:  # retention is housekeeping after the night is recorded: it never fails a night
            from companion.history.retention import prune

            prune(self.home, store)
        except Exception as exc:
            self.emit(NightEvent("note", text=f"old checkpoints were not pruned this time: {exc}"))
        return accepted


def _disk_full(exc: BaseException) -> bool:
    from companion.safety.room import is_disk_full

    return is_disk_full(exc) or is_disk_full(exc.__cause__ or exc)


def _disk_full_reason(exc: BaseException, home: Home) -> str:
    from companion.safety.room import disk_full_sentence

    return disk_full_sentence(getattr(exc, "filename", None) or home.checkpoints_dir)


FINISH_CHUNK = 10  # steps added at a time while a taught answer is unsure (`_finish`)
FINISH_LR = 0.3  # their learning rate, a share of the night's peak
FINISH_FROM = 0.05  # an answer drawn whole less often than this is not near: no finish line for it
FINISH_GAIN = 0.01  # a chunk that brought no near answer this much nearer ends the finish line


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
    default (measured in the README), taken in proportion to each step's learning rate
    (`pull_share`)."""
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
