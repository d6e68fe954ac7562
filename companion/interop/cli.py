"""`companion export` and `companion birth --from-base`: one clear line on a refusal (exit 2), never a traceback."""

from __future__ import annotations

import sys

from companion.home import Home, resolve_root
from companion.progress import format_duration


def cmd_export(args) -> int:
    import time

    from companion.interop.export import ExportError, export_checkpoint
    from companion.store import Store

    home = Home.open(resolve_root(args.home), args.name)
    started = time.monotonic()
    with Store.open(home.store_path) as store:
        try:
            done = export_checkpoint(home, store, args.format, args.path, dtype=args.dtype,
                                     checkpoint_id=args.checkpoint, overwrite=args.overwrite)
        except ExportError as exc:
            print(f"companion export: {exc}", file=sys.stderr)
            return 2
    what = "Hugging Face folder" if done.format == "hf" else "GGUF file"
    print(f"exported checkpoint {done.checkpoint.id} of {home.name} as a {what} ({done.dtype}, "
          f"{done.size_bytes / 1e6:.1f} MB) to {done.path} in {format_duration(time.monotonic() - started)}")
    return 0


def birth_from_base_cli(args, root) -> int:
    from companion.birth.create import BirthError
    from companion.home import HomeError
    from companion.interop.base import birth_from_base

    try:
        born = birth_from_base(root, args.name, args.owner, args.from_base, block_size=args.block_size,
                               log=lambda line: print(line, file=sys.stderr))
    except (BirthError, HomeError) as exc:
        print(f"companion birth: {exc}", file=sys.stderr)
        return 2
    ppl = f"probe perplexity {born.probe_ppl:.2f} (the starter probe); " if born.probe_ppl is not None else ""
    print(f"{args.name} is born from {args.from_base}: {born.params / 1e6:.1f}M parameters, "
          f"{len(born.added)} tokens added; {ppl}checkpoint {born.checkpoint_id} in {born.home.path}")
    return 0
