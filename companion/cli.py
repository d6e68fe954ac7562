"""The `companion` command: the app by default, and headless subcommands for birth, nursery and more.

Imports of torch happen inside the subcommands that need it, so `companion` paints its first screen
without waiting for torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from companion.home import HomeError, resolve_root
from companion.progress import ProgressBar, format_duration, plural
from companion.safety.private import private_umask


def _nursery_plan(args) -> "object":
    from companion.birth.create import NurseryPlan

    if args.minutes is None and args.steps is None:
        args.minutes = 10.0
    return NurseryPlan(minutes=args.minutes, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                       peak_lr=args.lr, vocab_size=getattr(args, "vocab_size", 8192),
                       eval_every_s=args.eval_every)


def _train(home, plan, label: str) -> int:
    """Run the nursery on `home` (whose lock the caller holds) with a text progress bar."""
    from companion.birth.create import run_birth_nursery
    from companion.store import Store

    bar = ProgressBar()
    with Store.open(home.store_path) as store:
        from companion.safety.start import tidy_at_start

        for note in tidy_at_start(home, store):
            print(f"note: {note}", file=sys.stderr)
        try:
            outcome = run_birth_nursery(home, store, plan, on_progress=bar.update, log=lambda m: print(m, file=sys.stderr))
        finally:
            bar.close()
    r = outcome.result
    for note in outcome.notes:
        print(f"note: {note}", file=sys.stderr)
    ppl = f"; probe perplexity {outcome.probe_ppl:.2f} (the starter probe)" if outcome.probe_ppl is not None else ""
    print(f"{label}: {plural(r.steps, 'step')}, {r.tokens:,} tokens in {format_duration(r.elapsed)}; "
          f"held-out loss {r.heldout_before:.3f} -> {r.heldout_after:.3f}{ppl}; checkpoint {outcome.checkpoint_id}")
    return 0


def cmd_birth(args) -> int:
    from companion.birth.create import BirthError, adopt_seedling, check_seedling, create_home, discard_unborn, finish_birth
    from companion.store import Store

    root = resolve_root(args.home)
    if args.from_base:
        if args.from_seedling or args.corpus or args.from_book:
            print("companion birth: --from-base cannot be combined with --from-seedling, --corpus or --from-book",
                  file=sys.stderr)
            return 2
        from companion.interop.cli import birth_from_base_cli

        return birth_from_base_cli(args, root)
    try:
        if args.from_seedling:
            check_seedling()  # before any folder is made: bad input changes nothing
        home, notes = create_home(root, args.name, args.owner, args.preset, args.corpus or [], args.from_book)
    except (BirthError, HomeError) as exc:
        print(f"companion birth: {exc}", file=sys.stderr)
        return 2
    fresh = not any(n.startswith("continuing") for n in notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    kept = (f"the unfinished birth is kept in {home.path}; run the same command again to continue it, "
            f"or remove that folder")
    with home.lock():
        try:
            if args.from_seedling:
                with Store.open(home.store_path) as store:
                    checkpoint_id = adopt_seedling(home, store)
                done = f"{args.name} adopted the bundled seedling (checkpoint {checkpoint_id})"
            else:
                _train(home, _nursery_plan(args), f"{args.name} is born")
                done = f"{args.name} is born"
            born = finish_birth(home)
        except KeyboardInterrupt:
            print(f"\ninterrupted: {kept}", file=sys.stderr)
            return 130
        except (BirthError, HomeError, OSError, RuntimeError, ValueError) as exc:
            if args.from_seedling and fresh:  # an adoption is seconds: leave nothing behind
                discard_unborn(home)
                print(f"companion birth: {exc}; nothing was left behind", file=sys.stderr)
            else:
                print(f"companion birth: {exc}; {kept}", file=sys.stderr)
            return 1
    print(f"{done} in {born.path}")
    return 0


def cmd_nursery(args) -> int:
    from companion.home import Home

    home = Home.open(resolve_root(args.home), args.name)
    with home.lock():
        try:
            return _train(home, _nursery_plan(args), "nursery")
        except KeyboardInterrupt:
            print("\ninterrupted: nothing saved from this run; the last checkpoint is intact", file=sys.stderr)
            return 130


def cmd_app(args) -> int:
    from companion.app import run_app

    return run_app(home=args.home, name=args.name)


def _positive(kind: type, what: str):
    """An argparse type that refuses zero and negative numbers with a sentence naming the option."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {what}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r}: the number of {what} must be more than 0")
        return value

    return parse


def _add_nursery_options(p: argparse.ArgumentParser) -> None:
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_positive(float, "minutes"),
                        help="the whole run's budget in minutes, tokenizer and checks included (default 10)")
    budget.add_argument("--steps", type=_positive(int, "steps"), help="train for this many optimizer steps (reproducible)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order (default 0)")
    p.add_argument("--batch-size", type=_positive(int, "sequences"), default=8, help="sequences per step (default 8)")
    p.add_argument("--lr", type=_positive(float, "the learning rate"), default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--eval-every", type=_positive(float, "seconds"), default=30.0,
                   help="seconds between held-out checks on the starter probe (default 30)")


HOME_HELP = ("the folder of companions (or one companion's own folder); default: $COMPANION_HOME, "
             "else the platform's data folder")
NAME_HELP = "which companion, when several live in the folder"


def _where(name: bool = True) -> argparse.ArgumentParser:
    """--home and --name, accepted before or after any subcommand and listed in its --help."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("which companion")
    group.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=HOME_HELP)
    if name:
        group.add_argument("--name", metavar="NAME", default=argparse.SUPPRESS, help=NAME_HELP)
    return parent


def _add_birth(sub: argparse._SubParsersAction) -> None:
    """`companion birth`: from the seedling, from the starter corpus, from a personality book or an open base."""
    birth = sub.add_parser("birth", parents=[_where(name=False)], help="bring a new companion into being",
                           description="Bring a new companion into being: adopt the bundled seedling (seconds), or "
                                       "train a tokenizer and a network on the starter corpus and your own texts. "
                                       "The home is built aside and appears whole at the end; the same command "
                                       "again continues a birth that was interrupted.")
    birth.add_argument("--name", required=True, help="the new companion's name")
    birth.add_argument("--owner", required=True, help="your name")
    from companion.model.config import PRESETS  # no torch: config is plain dataclasses

    birth.add_argument("--preset", default="seedling", help=f"model size: {', '.join(PRESETS)} (default seedling)")
    birth.add_argument("--corpus", nargs="*", metavar="PATH", help="your own .txt/.md files or folders to learn from")
    birth.add_argument("--from-seedling", action="store_true", help="adopt the bundled, already-trained seedling (seconds)")
    birth.add_argument("--from-book", metavar="PATH", help="learn from a personality book (the JSON lines of `companion book export`)")
    birth.add_argument("--vocab-size", type=_positive(int, "tokens"), default=8192, help="tokenizer size (default 8192)")
    birth.add_argument("--from-base", metavar="PATH",
                       help="be born from an open Llama-family model: a Hugging Face folder or a GGUF file")
    birth.add_argument("--block-size", type=_positive(int, "tokens"), default=1024,
                       help="with --from-base: the context the companion lives with (default 1024, at most the base's)")
    _add_nursery_options(birth)
    birth.set_defaults(func=cmd_birth)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="companion", description="A small language model you keep for life, taught a little every day.")
    parser.add_argument("--home", metavar="DIR", help=HOME_HELP)
    parser.add_argument("--name", metavar="NAME", help=NAME_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    where = _where()

    _add_birth(sub)

    nursery = sub.add_parser("nursery", parents=[where], help="continue pretraining where it stopped",
                             description="Continue pretraining on the birth corpus, with the nursery's own optimizer.")
    _add_nursery_options(nursery)
    nursery.set_defaults(func=cmd_nursery)

    sleep = sub.add_parser("sleep", parents=[where], help="run the night for the last closed day, headless, with a text progress bar")
    sleep.add_argument("--day", type=_positive(int, "the day"), metavar="N",
                       help="the day number to sleep on (default: the last closed day without a night)")
    sleep.set_defaults(func=_lazy("companion.night.cli", "cmd_sleep"))

    days = sub.add_parser("days", parents=[where], help="list the days the companion has lived")
    days.add_argument("--search", metavar="TEXT", help="full-text search across all days")
    days.set_defaults(func=_lazy("companion.history.cli", "cmd_days"))

    checkpoints = sub.add_parser("checkpoints", parents=[where], help="list checkpoints with their story",
                                 description="List every checkpoint: its id, reason, day, step, size and its "
                                             "perplexity on the starter probe (the same figure the reports show).")
    checkpoints.set_defaults(func=_lazy("companion.history.cli", "cmd_checkpoints"))

    restore = sub.add_parser("restore", parents=[where], help="make a checkpoint current (the current weights are saved first)")
    restore.add_argument("checkpoint_id", type=int, metavar="ID", help="the checkpoint's id, as `companion checkpoints` lists it")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(func=_lazy("companion.history.cli", "cmd_restore"))

    from companion.growth.cli import add_parser as add_grow

    add_grow(sub, parents=[where])

    recover = sub.add_parser("recover-store", parents=[where],
                             help="restore a damaged store from the newest verified backup (the damaged file is kept aside)")
    recover.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    recover.set_defaults(func=_lazy("companion.history.cli", "cmd_recover_store"))

    export = sub.add_parser("export", parents=[where],
                            help="write a checkpoint as a Hugging Face folder or a GGUF file for other tools")
    export.add_argument("path", metavar="PATH", help="the folder (hf) or file (gguf) to write")
    export.add_argument("--format", required=True, choices=("hf", "gguf"), help="hf: a Llama folder; gguf: llama.cpp")
    export.add_argument("--dtype", help="hf: f32 (default), f16, bf16; gguf: f16 (default), f32, q8_0")
    export.add_argument("--checkpoint", type=int, metavar="ID", help="which checkpoint (default: the current one)")
    export.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    export.set_defaults(func=_lazy("companion.interop.cli", "cmd_export"))

    backup = sub.add_parser("backup", parents=[where], help="back up weights, tokenizer, settings and store now, verified")
    backup.set_defaults(func=_lazy("companion.history.cli", "cmd_backup"))

    book = sub.add_parser("book", parents=[where], help="the personality book")
    book_sub = book.add_subparsers(dest="book_command", metavar="ACTION", required=True)
    export = book_sub.add_parser("export", parents=[where], help="write every chosen reply and correction to PATH and PATH.txt",
                                 description="Write the personality book: PATH as JSON lines (every chosen, corrected "
                                             "and written reply with its context), and beside it the transcripts as "
                                             "SFT text (book.jsonl -> book.txt; any other name gets .txt appended). "
                                             "An existing file is refused unless --overwrite.")
    export.add_argument("path", metavar="PATH", help="where to write the book (JSON lines)")
    export.add_argument("--overwrite", action="store_true", help="replace PATH and its .txt if they exist")
    export.set_defaults(func=_lazy("companion.history.cli", "cmd_book_export"))
    return parser


def _lazy(module: str, name: str):
    """A subcommand whose module is imported only when it runs (keeps `--help` and start-up fast)."""

    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(module), name)(args)

    return run


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --home/--name may come before or after the subcommand
    previous = private_umask()  # private by default: whatever the caller's umask, nothing we write is readable by others
    try:
        return run_command(getattr(args, "func", cmd_app), args)
    finally:
        os.umask(previous)


def run_command(func, args) -> int:
    """The one place every command ends: its exit code, or one sentence and a code for any home,
    store, settings, checkpoint, disk or other foreseen error (`companion.safety.errors`)."""
    from companion.safety.errors import describe

    command = getattr(args, "command", None)
    label = "companion" + (f" {command}" if command else "")
    try:
        return func(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"\n{label}: interrupted; what was committed is kept", file=sys.stderr)
        return 130
    except Exception as exc:
        said = describe(exc)
        if said is None:
            raise
        message, code = said
        print(f"{label}: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
