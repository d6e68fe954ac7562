"""The one growth pipeline (`companion grow` and the app's palette): grow, check, keep as a checkpoint.

A growth is a new checkpoint, reason `growth`, whose parent is the checkpoint it grew from and whose
story (the file header) holds the config before and after. Its promises:

* Nothing is written until the grown weights have passed their check, and the new checkpoint is made
  current only after its file is whole (atomic write): a kill, a stop or an error at any moment leaves
  the old weights current and untouched.
* Widening is checked to compute what it computed (max logit change on held-out windows below
  `WIDEN_TOLERANCE` in fp32), or nothing is kept.
* Stretching is followed by the stretch night (`stretch_night`); when its guard refuses, nothing is kept.
* Adding tokens (`model.vocab.add_tokens`, the one implementation) is checked to leave every old token's
  logit as it was on held-out windows and old text encoded as before; its new tokenizer is written
  beside the weights (named by its content) before the checkpoint that names it, which is written
  before it becomes current (see `companion.history.weights`): the tokenizer always follows the weights.

Progress is reported as `GrowthEvent`s; `should_stop` ends the growth at the next step, keeping nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from companion.growth.plan import GrowthError, GrowthPlan, describe_size
from companion.home import Home
from companion.settings import Settings
from companion.store import Checkpoint, Store

WIDEN_TOLERANCE = 1e-3  # fp32; measured 2.5e-6 (384 -> 512) and 3e-7 on the tiny test models
TOKENS_TOLERANCE = 1e-5  # fp32: no old weight changes; only a larger output matrix's summation order may
REASON = "growth"


@dataclass(frozen=True)
class GrowthEvent:
    """`kind`: "phase" (`phase`, `text`), "step" (`step` of `total`, `loss`, `eta_s`), "done" (`result`)."""

    kind: str
    phase: str = ""
    text: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    lr: float = 0.0
    tokens: int = 0
    eta_s: float | None = None
    result: "GrowthResult | None" = None


@dataclass
class GrowthResult:
    """`status`: "grown" (a new current checkpoint), "refused" (a check failed: nothing kept), "stopped"."""

    plan: GrowthPlan
    status: str = "running"
    reason: str = ""
    checkpoint: Checkpoint | None = None
    max_logit_change: float | None = None
    stretch: dict | None = None
    texts_checked: int = 0  # old texts re-encoded by the new tokenizer, for an add-tokens growth
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the owner is told afterwards."""
        b, a = self.plan.before, self.plan.after
        if self.status == "grown" and self.plan.kind == "tokens":
            out = [f"Grown: {len(self.plan.tokens)} tokens added, vocabulary {b.vocab_size:,} -> {a.vocab_size:,}; "
                   f"checkpoint {self.checkpoint.id} is current (restore {self.plan.current.id} to undo)."]
            if self.plan.skipped:
                from companion.growth.tokens import describe_token

                out.append("  skipped (already known): " + ", ".join(describe_token(t) for t, _ in self.plan.skipped))
        elif self.status == "grown":
            out = [f"Grown: {describe_size(b)} -> {describe_size(a)}; checkpoint {self.checkpoint.id} is current "
                   f"(restore {self.plan.current.id} to undo)."]
        elif self.status == "stopped":
            out = ["Growth stopped; the weights are as they were."]
        else:
            out = [f"Growth refused: {self.reason}. The weights are as they were."]
        if self.max_logit_change is not None:
            what = "of an old token from adding tokens" if self.plan.kind == "tokens" else "from widening"
            out.append(f"  largest logit change {what}: {self.max_logit_change:.2e}")
        if self.texts_checked:
            out.append(f"  {self.texts_checked} old texts encode as before")
        s = self.stretch or {}
        if s.get("inside_before") is not None:
            def fmt(x):
                return "—" if x is None else f"{x:.3f}"
            out.append(f"  held-out loss inside the old {b.block_size} tokens: {fmt(s.get('inside_original'))} before"
                       f" stretching, {fmt(s.get('inside_before'))} stretched, {fmt(s.get('inside_after'))} after the"
                       " stretch night")
            out.append(f"  held-out loss past them: {fmt(s.get('beyond_before'))} stretched, "
                       f"{fmt(s.get('beyond_after'))} after the stretch night ({s.get('steps', 0)} steps)")
        out.append(f"  took {self.seconds:.0f} s")
        return out


def run_growth(home: Home, store: Store, plan: GrowthPlan, settings: Settings | None = None, *,
               device: str | torch.device = "cpu", on_event: Callable[[GrowthEvent], None] | None = None,
               should_stop: Callable[[], bool] | None = None, steps: int = 30,
               learning_rate: float = 1e-4, probe_windows: int = 16, seed: int = 0) -> GrowthResult:
    """Carry out `plan`. Refusals found only now (a night began, the current weights changed, a check
    failed) come back as a "refused" result; a stop as "stopped"; nothing is kept in either case."""
    from companion.night.guards import Stopped
    from companion.history.weights import Weights
    from companion.model.checkpoint import CheckpointError
    from companion.model.tokenizer import TokenizerError

    settings = settings or home.load_settings()
    emit = on_event or (lambda event: None)
    stop = should_stop or (lambda: False)
    t0 = time.monotonic()
    result = GrowthResult(plan)

    def finish(status: str, reason: str = "") -> GrowthResult:
        result.status, result.reason, result.seconds = status, reason, time.monotonic() - t0
        emit(GrowthEvent("done", text="\n".join(result.lines()), result=result))
        return result

    def phase(name: str, text: str = "") -> None:
        if stop():
            raise Stopped()
        emit(GrowthEvent("phase", phase=name, text=text))

    weights = Weights(home, store)
    try:
        if store.running_night() is not None:
            return finish("refused", "a night is running")
        current = weights.current()
        if current is None or current.id != plan.current.id:
            return finish("refused", "the current weights changed since the preview; look again")
        phase("loading", f"checkpoint {current.id}")
        try:
            loaded = weights.load(current, device)
        except CheckpointError as exc:
            return finish("refused", f"the current weights cannot be read: {exc}")
        model = loaded.model.float()
        extra = {"growth": plan.kind, "before": plan.before.to_json(), "after": plan.after.to_json()}
        step, probe_ppl = loaded.meta.step, current.probe_ppl
        tokenizer_name = None
        if plan.kind == "tokens":
            added = _tokens_kept(model, loaded.tokenizer(), plan, store, settings, phase, result, weights, extra)
            if isinstance(added, str):
                return finish("refused", added)
            grown, tokenizer_name = added
        elif plan.kind == "width":
            grown = _widen_checked(model, plan, loaded.tokenizer(), store, settings, phase, result)
            if grown is None:
                return finish("refused", f"widening changed the logits by {result.max_logit_change:.2e}, "
                                         f"more than {WIDEN_TOLERANCE:g}")
            extra["max_logit_change"] = f"{result.max_logit_change:.3e}"
        else:
            grown, report = _stretch_with_night(model, loaded.tokenizer(), plan, store, settings, phase, emit, stop,
                                                dict(steps=steps, learning_rate=learning_rate,
                                                     probe_windows=probe_windows, seed=seed))
            result.stretch = report.to_dict()
            if report.verdict is not None:
                return finish("refused", report.verdict)
            extra["stretch"] = json.dumps(result.stretch)
            step += report.steps
            probe_ppl = (report.probe_after or {}).get("ppl", probe_ppl)
        if plan.kind != "tokens":
            phase("saving")
            if store.running_night() is not None:
                return finish("refused", "a night began while growing")
        result.checkpoint = weights.save(grown, REASON, step=step, day_id=current.day_id,
                                         day_number=loaded.meta.day, parent_id=current.id, probe_ppl=probe_ppl,
                                         make_current=True, extra=extra, tokenizer=tokenizer_name)
        return finish("grown")
    except Stopped:
        return finish("stopped", "stopped before the growth was done")
    except GrowthError as exc:
        return finish("refused", str(exc))
    except TokenizerError as exc:
        return finish("refused", f"the tokenizer cannot be read: {exc}")


def _tokens_kept(model, tokenizer, plan: GrowthPlan, store: Store, settings: Settings, phase,
                 result: GrowthResult, weights, extra: dict):
    """The model with the new tokens and the name of their tokenizer, written beside the weights before
    the checkpoint that names it; or why not (a check failed, a night began)."""
    added = _add_tokens_checked(model, tokenizer, plan, store, settings, phase, result)
    if isinstance(added, str):
        return added
    grown, new_tokenizer = added
    extra["tokens"] = json.dumps(list(plan.tokens), ensure_ascii=False)
    extra["max_logit_change"] = f"{result.max_logit_change:.3e}"
    phase("saving", "the new tokenizer, then the weights that read with it")
    if store.running_night() is not None:
        return "a night began while growing"
    return grown, weights.keep_tokenizer(new_tokenizer)  # before the checkpoint that names it


def _stretch_with_night(model, tokenizer, plan: GrowthPlan, store: Store, settings: Settings, phase, emit,
                        stop, options: dict):
    """The stretched model and its stretch night's report (the night trains the stretched copy on long
    windows under the probe guard; `options` are its steps, learning rate, probe windows and seed)."""
    from companion.growth.stretch_night import run_stretch_night
    from companion.model.growth import stretch

    phase("stretching", f"{plan.before.block_size} -> {plan.after.block_size} tokens")
    grown = stretch(model, plan.after.block_size)
    phase("stretch night", f"{options['steps']} steps on windows of {plan.after.block_size} tokens")

    def on_step(i: int, total: int, loss: float, lr: float, tokens: int, eta: float) -> None:
        emit(GrowthEvent("step", phase="stretch night", step=i, total=total, loss=loss, lr=lr,
                         tokens=tokens, eta_s=eta))

    report = run_stretch_night(grown, model, tokenizer, store, settings, on_step=on_step, should_stop=stop,
                               **options)
    return grown, report


@torch.no_grad()
def _widen_checked(model, plan: GrowthPlan, tokenizer, store: Store, settings: Settings, phase,
                   result: GrowthResult):
    """The widened model, or None when it does not compute what `model` computed on held-out windows."""
    from companion.night.guards import build_probe
    from companion.model.growth import widen

    phase("widening", f"{plan.before.n_embd} -> {plan.after.n_embd} dimensions")
    grown = widen(model, plan.after.n_embd, mlp_hidden=plan.after.mlp_hidden or None)
    phase("checking", "the widened model against the old one on held-out windows")
    probe = build_probe(tokenizer, store, settings.day.greeting,
                        settings.day.goodnight, plan.before.block_size, windows=4)
    worst = 0.0
    for seq in (probe.starter + probe.days)[:6]:
        idx = seq[None, :-1].long().to(next(model.parameters()).device)
        worst = max(worst, float((model(idx)[0] - grown(idx)[0]).abs().max()))
    result.max_logit_change = worst
    return grown if worst <= WIDEN_TOLERANCE else None


@torch.no_grad()
def _add_tokens_checked(model, tokenizer, plan: GrowthPlan, store: Store, settings: Settings, phase,
                        result: GrowthResult):
    """(the model with the tokens added, its new tokenizer), or why not (a string): every old token's
    logit must stay within `TOKENS_TOLERANCE` on held-out windows, and old text must encode as before."""
    from companion.night.guards import build_probe
    from companion.model.tokenizer import Tokenizer
    from companion.model.vocab import VocabError, add_tokens

    phase("adding tokens", f"{len(plan.tokens)} new, after id {plan.before.vocab_size - 1}")
    probe = build_probe(tokenizer, store, settings.day.greeting, settings.day.goodnight,
                        plan.before.block_size, windows=4)
    windows = [seq[None, :-1].long().to(next(model.parameters()).device) for seq in (probe.starter + probe.days)[:6]]
    old_logits = [model(idx)[0] for idx in windows]
    try:
        added = add_tokens(model, tokenizer, list(plan.tokens), special=False)  # grows `model` in place
    except VocabError as exc:
        return str(exc)
    new_tokenizer = Tokenizer(added.tokenizer, "<new>")
    phase("checking", "old tokens' logits and old text against the old tokenizer")
    old = plan.before.vocab_size
    worst = 0.0
    for idx, before in zip(windows, old_logits):
        worst = max(worst, float((added.model(idx)[0][..., :old] - before).abs().max()))
    result.max_logit_change = worst
    if worst > TOKENS_TOLERANCE:
        return f"adding tokens changed an old token's logit by {worst:.2e}, more than {TOKENS_TOLERANCE:g}"
    texts = [tokenizer.decode(seq.tolist()) for seq in probe.starter + probe.days]
    texts += [settings.greeting_line(), settings.goodnight_line(), *settings.indicator_lines()]
    texts += [turn.text for day in store.days()[-30:] for turn in store.turns(day.id)]  # the owner's own words
    for text in texts:
        if any(token in text for token in plan.tokens):
            continue
        if new_tokenizer.encode(text) != tokenizer.encode(text):
            return f"the new tokenizer reads old text differently: {text[:60]!r}"
        result.texts_checked += 1
    return added.model, new_tokenizer
