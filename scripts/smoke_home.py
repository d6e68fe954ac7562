"""Helpers for scripts/tmux_smoke.sh: make a tiny companion home, and check what the app did.

    python scripts/smoke_home.py make ROOT      # a tiny real companion "Scout" (seconds, no network)
    python scripts/smoke_home.py check ROOT PANE_FILE [MESSAGE]  # the chosen reply (and MESSAGE, whole)
                                                                 # are in the store and on screen
    python scripts/smoke_home.py state ROOT    # prints: candidates=N chosen=N typed=N (for polling)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GREETING = "Good morning, {companion}. {owner} is here."


def make(root: Path) -> None:
    import torch

    from companion.birth.corpus import starter_documents
    from companion.home import Home
    from companion.settings import update_settings_file
    from companion.store import Store
    from companion.history.weights import Weights
    from companion.model.config import preset
    from companion.model.tokenizer import train_tokenizer
    from companion.model.transformer import Transformer

    docs = starter_documents(held_out=False, greeting=GREETING, goodnight="Good night, {companion}.", limit=200)
    tokenizer = train_tokenizer((t.text for doc in docs for t in doc), vocab_size=512)
    home = Home.create(root, "Scout", owner="Trey", preset="seedling")
    tokenizer.save(home.tokenizer_path)
    torch.manual_seed(0)
    model = Transformer(preset("seedling", vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=64, head_dim=16,
                               block_size=256))
    with Store.open(home.store_path) as store:
        Weights(home, store).save(model, "birth")
    for key, value in {"sampling.max_reply_tokens": "8", "sampling.seed": "1", "sampling.temperature": "0.3"}.items():
        update_settings_file(home.settings_path, key, value)
    print(home.path)


def _day(root: Path):
    from companion.store import Store

    store = Store.open(root / "Scout" / "companion.db")
    day = store.current_day() or (store.days() or [None])[-1]
    return store, day


def state(root: Path) -> None:
    store, day = _day(root)
    if day is None:
        print("candidates=0 chosen=0 typed=0")
        return
    turns = store.turns(day.id)
    chosen = [t for t in turns if t.source == "chosen"]
    typed = [t for t in turns if t.source == "typed"]
    cands = [c for c in store.candidates(day_id=day.id) if c.role == "companion"]
    print(f"candidates={len(cands)} chosen={len(chosen)} typed={len(typed)}")


def check(root: Path, pane_file: Path, message: str | None = None) -> int:
    from companion.widgets.safe_text import one_line

    store, day = _day(root)
    chosen = [t for t in store.turns(day.id) if t.source == "chosen"]
    if not chosen:
        print("FAIL: no chosen reply in the store")
        return 1
    def squash(s):
        return re.sub(r"\s+", "", s)
    pane = squash(pane_file.read_text(encoding="utf-8", errors="replace"))
    text = squash(one_line(chosen[-1].text))
    snippet = text[:10]
    if snippet and snippet not in pane:
        print(f"FAIL: the chosen reply {chosen[-1].text!r} is in the store but not on the screen")
        return 1
    typed = [t for t in store.turns(day.id) if t.source == "typed"]
    if not typed or squash("Hello Scout") not in pane:
        print("FAIL: the owner's message is not on the screen")
        return 1
    if message is not None:
        if message not in [t.text for t in typed]:
            print(f"FAIL: the message {message!r} is not in the store whole; typed: {[t.text for t in typed]!r}")
            return 1
        if squash(message) not in pane:
            print(f"FAIL: the message {message!r} is in the store but not whole on the screen")
            return 1
        implicit = [c for c in store.choices(day.id) if c.implicit]
        if not implicit:
            print("FAIL: replying without a pick did not record the highlighted card as an implicit pick")
            return 1
    print(f"OK: reply {chosen[-1].text!r} is in the store and on the screen"
          + (f"; {message!r} arrived whole" if message is not None else ""))
    return 0


if __name__ == "__main__":
    command, root = sys.argv[1], Path(sys.argv[2])
    if command == "make":
        make(root)
    elif command == "state":
        state(root)
    elif command == "check":
        sys.exit(check(root, Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None))
    else:
        sys.exit(f"unknown command {command}")
