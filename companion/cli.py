"""The `companion` command: the app by default, and headless subcommands for birth, nursery and more.

Imports of torch happen inside the subcommands that need it, so `companion` paints its first screen
without waiting for torch.
"""

from __future__ import annotations

import argparse
import sys

from companion.home import HomeError, LockedError, resolve_root
from companion.progress import ProgressBar, format_duration


def _nursery_plan(args) -> "object":
    from companion.birth import NurseryPlan

    if args.minutes is None and args.steps is None:
        args.minutes = 10.0
    return NurseryPlan(minutes=args.minutes, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                       peak_lr=args.lr, vocab_size=getattr(args, "vocab_size", 8192),
                       eval_every_s=args.eval_every)


def _train(home, plan, label: str) -> int:
    from companion.birth import run_birth_nursery
    from companion.store import Store

    bar = ProgressBar()
    with home.lock(), Store.open(home.store_path) as store:
        try:
            outcome = run_birth_nursery(home, store, plan, on_progress=bar.update, log=lambda m: print(m, file=sys.stderr))
        except KeyboardInterrupt:
            bar.close()
            print("interrupted: nothing saved from this run; the last checkpoint is intact", file=sys.stderr)
            return 130
    bar.close()
    r = outcome.result
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{label}: {r.steps} steps, {r.tokens:,} tokens in {format_duration(r.elapsed)}; "
          f"held-out loss {r.heldout_before:.3f} -> {r.heldout_after:.3f}; checkpoint {outcome.checkpoint_id} saved in {home.path}")
    return 0


def cmd_birth(args) -> int:
    from companion.birth import BirthError, adopt_seedling, check_seedling, create_home
    from companion.store import Store

    root = resolve_root(args.home)
    try:
        if args.from_seedling:
            check_seedling()  # before any folder is made: bad input changes nothing
        home, notes = create_home(root, args.name, args.owner, args.preset, args.corpus or [], args.from_book)
    except (BirthError, HomeError) as exc:
        print(f"companion birth: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.from_seedling:
        with home.lock(), Store.open(home.store_path) as store:
            checkpoint_id = adopt_seedling(home, store)
        print(f"{args.name} adopted the bundled seedling (checkpoint {checkpoint_id}) in {home.path}")
        return 0
    return _train(home, _nursery_plan(args), f"{args.name} is born")


def cmd_nursery(args) -> int:
    from companion.home import Home

    home = Home.open(resolve_root(args.home), args.name)
    return _train(home, _nursery_plan(args), "nursery")


def cmd_app(args) -> int:
    from companion.app import run_app

    return run_app(home=args.home, name=args.name)


def _add_nursery_options(p: argparse.ArgumentParser) -> None:
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="train for this many minutes (default 10)")
    budget.add_argument("--steps", type=int, help="train for this many optimizer steps (reproducible)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--eval-every", type=float, default=30.0, help="seconds between held-out checks (default 30)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="companion", description="A small language model you keep for life, taught a little every day.")
    parser.add_argument("--home", help="folder of companions (or one companion's home); default: the platform data folder, or $COMPANION_HOME")
    parser.add_argument("--name", help="which companion to open when there are several")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    birth = sub.add_parser("birth", help="bring a new companion into being")
    birth.add_argument("--name", required=True, help="the companion's name")
    birth.add_argument("--owner", required=True, help="your name")
    from model.config import PRESETS  # no torch: config is plain dataclasses

    birth.add_argument("--preset", default="seedling", help=f"model size: {', '.join(PRESETS)} (default seedling)")
    birth.add_argument("--corpus", nargs="*", metavar="PATH", help="your own .txt/.md files or folders to learn from")
    birth.add_argument("--from-seedling", action="store_true", help="adopt the bundled, already-trained seedling (seconds)")
    birth.add_argument("--from-book", metavar="PATH", help="learn from a personality book (the JSON lines of `companion book export`)")
    birth.add_argument("--vocab-size", type=int, default=8192, help="tokenizer size (default 8192)")
    _add_nursery_options(birth)
    birth.set_defaults(func=cmd_birth)

    nursery = sub.add_parser("nursery", help="continue pretraining where it stopped")
    _add_nursery_options(nursery)
    nursery.set_defaults(func=cmd_nursery)

    sleep = sub.add_parser("sleep", help="run the night for the last closed day, headless, with a text progress bar")
    sleep.add_argument("--day", type=int, help="the day number to sleep on (default: the last closed day without a night)")
    sleep.set_defaults(func=_lazy("companion.night_cli", "cmd_sleep"))

    days = sub.add_parser("days", help="list the days the companion has lived")
    days.add_argument("--search", metavar="TEXT", help="full-text search across all days")
    days.set_defaults(func=_lazy("companion.history_cli", "cmd_days"))

    checkpoints = sub.add_parser("checkpoints", help="list checkpoints with their story")
    checkpoints.set_defaults(func=_lazy("companion.history_cli", "cmd_checkpoints"))

    restore = sub.add_parser("restore", help="make a checkpoint current (the current weights are saved first)")
    restore.add_argument("checkpoint_id", type=int, metavar="ID")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(func=_lazy("companion.history_cli", "cmd_restore"))

    from companion.growth.cli import add_parser as add_grow

    add_grow(sub)

    backup = sub.add_parser("backup", help="back up weights, tokenizer, settings and store now, verified")
    backup.set_defaults(func=_lazy("companion.history_cli", "cmd_backup"))

    book = sub.add_parser("book", help="the personality book")
    book_sub = book.add_subparsers(dest="book_command", metavar="ACTION", required=True)
    export = book_sub.add_parser("export", help="write every turn as JSON lines plus an SFT text file")
    export.add_argument("path", metavar="PATH")
    export.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    export.set_defaults(func=_lazy("companion.history_cli", "cmd_book_export"))
    return parser


def _lazy(module: str, name: str):
    """A subcommand whose module is imported only when it runs (keeps `--help` and start-up fast)."""

    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # `--home`/`--name` may also follow the subcommand: parse them there too.
    if rest:
        extra = argparse.ArgumentParser(add_help=False)
        extra.add_argument("--home")
        extra.add_argument("--name")
        more, unknown = extra.parse_known_args(rest)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.home = more.home or args.home
        if more.name and getattr(args, "name", None) is None:
            args.name = more.name
    try:
        func = getattr(args, "func", cmd_app)
        return func(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except LockedError as exc:
        print(f"companion: {exc}", file=sys.stderr)
        return 3
    except HomeError as exc:
        print(f"companion: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
