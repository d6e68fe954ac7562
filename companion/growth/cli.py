"""`companion grow --width D | --context N | --add-tokens FILE|WORD...`: the preview, a question, then the
growth with a progress bar.

Exit status: 0 grown, 1 refused by a check after it began (nothing kept), 2 bad input (nothing
changed), 130 stopped (Ctrl-C: nothing kept; a second Ctrl-C stops at once, also safe).
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from companion.home import Home, resolve_root


def _fail(message: object) -> int:
    print(f"companion grow: {message}", file=sys.stderr)
    return 2


def _step_times(home: Home, store, plan, settings) -> tuple[float, float]:
    """Seconds per night step before and after the growth, measured on the real weights (the preview)."""
    from companion.growth.measure import seconds_per_step
    from companion.history.weights import Weights
    from companion.model.growth import stretch, widen

    model = Weights(home, store).load(plan.current).model.float()
    grown = widen(model, plan.after.n_embd) if plan.kind == "width" else stretch(model, plan.after.block_size)
    return seconds_per_step(model, settings.night.batch_tokens), seconds_per_step(grown, settings.night.batch_tokens)


def _unconfirmed(args) -> int | None:
    """None when the owner said yes (or gave --yes); else the exit code, having said why."""
    from companion.progress import NOT_CONFIRMED, ask_yes

    answer = ask_yes("Grow?", args.yes)
    if answer is None:
        return _fail(NOT_CONFIRMED)
    if not answer:
        print("nothing changed")
        return 1
    return None


def cmd_grow(args) -> int:
    from companion.growth.plan import GrowthError, parse_width, plan_growth, preview_lines
    from companion.settings import SettingsError
    from companion.store import Store

    from companion.growth.tokens import TokenInputError, read_entries

    home = Home.open(resolve_root(args.home), args.name)
    try:
        settings = home.load_settings()
        width = parse_width(args.width) if args.width is not None else None
        tokens = read_entries(args.add_tokens) if args.add_tokens is not None else None
    except (SettingsError, GrowthError, TokenInputError) as exc:
        return _fail(exc)
    if args.steps is not None and args.steps < 1:
        return _fail(f"--steps {args.steps} must be at least 1")
    if not 0 < args.lr <= 1e-2:
        return _fail(f"--lr {args.lr} must be above 0 and at most 0.01")
    with home.lock(), Store.open(home.store_path) as store:
        try:
            plan = plan_growth(home, store, width=width, context=args.context, tokens=tokens,
                               batch_tokens=settings.night.batch_tokens)
        except GrowthError as exc:
            return _fail(exc)
        from companion.growth.grow import run_growth

        before = after = None
        if not args.no_measure and plan.kind != "tokens":  # a few more rows: no step worth timing
            from companion.model.checkpoint import CheckpointError

            try:
                before, after = _step_times(home, store, plan, settings)
            except CheckpointError as exc:
                return _fail(f"the current weights cannot be read: {exc}")
        print("\n".join(preview_lines(plan, before, after, settings.day.share)))
        refused = _unconfirmed(args)
        if refused is not None:
            return refused
        from companion.progress import CtrlC, ProgressBar

        bar = ProgressBar()
        started: list[float] = []

        def on_event(event) -> None:
            if event.kind == "phase":
                print(f"{event.phase}{': ' + event.text if event.text else ''}", file=sys.stderr)
            elif event.kind == "step":
                if not started:
                    started.append(time.monotonic())
                bar.update(SimpleNamespace(fraction=event.step / max(event.total, 1), step=event.step,
                                           loss=event.loss, heldout=None, lr=event.lr, tokens=event.tokens, sample=None,
                                           elapsed=time.monotonic() - started[0]))
                if event.step == event.total:
                    bar.close()

        with CtrlC() as ctrl_c:  # Ctrl-C once: stop at the next step; twice: at once
            try:
                result = run_growth(home, store, plan, settings, on_event=on_event, should_stop=ctrl_c.stop.is_set,
                                    steps=args.steps or 30, learning_rate=args.lr)
            except KeyboardInterrupt:
                print("\nstopped: nothing was kept; the weights are as they were", file=sys.stderr)
                return 130
            except Exception as exc:  # a full disk, a damaged file: said in one line, the old weights current
                print(f"companion grow: failed ({type(exc).__name__}: {exc}); the weights are as they were",
                      file=sys.stderr)
                return 1
    print("\n".join(result.lines()))
    return {"grown": 0, "stopped": 130}.get(result.status, 1)


def add_parser(sub, parents=()) -> None:
    """`companion grow` on the CLI's subcommand parser (`parents`: the shared --home/--name options)."""
    grow = sub.add_parser("grow", parents=list(parents),
                          help="grow the companion: wider (--width), a longer day (--context), more words (--add-tokens)")
    what = grow.add_mutually_exclusive_group(required=True)
    what.add_argument("--width", metavar="D", help="new width in dimensions (a multiple of the head size), or v1..v4")
    what.add_argument("--context", type=int, metavar="N", help="new context (block) in tokens, larger than now")
    what.add_argument("--add-tokens", nargs="+", metavar="FILE|WORD",
                      help="add tokens: words, or files with one a line (each word also with a leading space)")
    grow.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    grow.add_argument("--steps", type=int, help="steps of the stretch night after --context (default 30)")
    grow.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the stretch night (default 1e-4)")
    grow.add_argument("--no-measure", action="store_true", help="skip measuring the time per step in the preview")
    grow.set_defaults(func=cmd_grow)
