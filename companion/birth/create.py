"""Birth: a companion brought into being from a corpus, or adopted from the bundled seedling.

Birth is "make the home aside, fill it, then move it into place": the home is built in a hidden
``.<name>.unborn`` folder beside the companions (`companion.home.unborn_path`), the nursery trains
whatever is missing there (the tokenizer, the first weights) or the seedling is adopted into it, and
only a whole home (settings, tokenizer, a current checkpoint) is renamed to ``<name>``. A birth that
fails or is killed never leaves a half companion under its name: the same command again continues the
unfinished one (the app offers to continue it, adopt the seedling into it, or remove it). Every input is
checked before anything is written: bad input changes nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from companion.compute.threads import training_claim
from companion.birth.corpus import CorpusError, read_owner_texts, starter_documents
from companion.home import SEEDLING_DIR, Home, is_born, is_home, list_unborn, validate_name
from companion.birth.nursery import CorpusTokens, NurseryProgress, NurseryResult, run_nursery
from companion.settings import Settings, render_template
from companion.store import Store
from companion.night.optimizer import best_device, load_optimizer_state, make_optimizer, save_optimizer_state
from companion.transcript import Turn, encode_documents, encode_turns, reply_prompt
from companion.history.weights import Weights
from companion.model.atomic import fsync_dir
from companion.model.checkpoint import CheckpointError
from companion.model.config import PRESETS, ConfigError, preset
from companion.model.sampling import SamplingSettings, sample_candidates
from companion.model.tokenizer import DEFAULT_VOCAB, Tokenizer, train_tokenizer
from companion.model.transformer import Transformer

NURSERY_STATE = "nursery-optimizer.safetensors"
OWNER_CORPUS_DIR = "corpus"  # the owner's birth texts, copied into the home so the nursery can resume
BOOK_FILE = "personality-book.jsonl"  # a book to be born from, copied into the home likewise


class BirthError(ValueError):
    """Bad input to birth or the nursery, said before anything is written."""


@dataclass
class NurseryPlan:
    minutes: float | None = None
    steps: int | None = None
    seed: int = 0
    batch_size: int = 8
    peak_lr: float = 1e-3
    vocab_size: int = DEFAULT_VOCAB
    eval_every_s: float = 30.0
    heldout_windows: int = 32


@dataclass
class NurseryOutcome:
    result: NurseryResult
    checkpoint_id: int
    notes: list[str] = field(default_factory=list)
    probe_ppl: float | None = None  # the checkpoint's figure on the starter probe


def check_birth_input(root: Path, name: str, owner: str, preset_name: str, corpus: list[str]) -> list[str]:
    """Every check birth can make before writing; returns notes on skipped owner files."""
    validate_name(name)
    validate_name(owner, "owner name")
    if preset_name not in PRESETS:
        raise BirthError(f"unknown preset {preset_name!r}; choose one of: {', '.join(PRESETS)}")
    if root.exists() and not root.is_dir():
        raise BirthError(f"{root} is a file, not a folder of companions; give --home a folder")
    if is_home(root / name) and is_born(root / name):
        raise BirthError(f"a companion named {name} already exists in {root}; never overwriting")
    try:
        return read_owner_texts(corpus).notes if corpus else []
    except CorpusError as exc:
        raise BirthError(str(exc)) from exc


def unfinished_birth(root: Path, name: str) -> Home | None:
    """The unfinished birth of `name`, if one was left: built aside, or (older versions) in place."""
    for path in list_unborn(root):
        home = Home(path)
        if home.name == name:
            return home
    return None


def create_home(root: Path, name: str, owner: str, preset_name: str, corpus: list[str],
                book: str | None = None) -> tuple[Home, list[str]]:
    """Make the companion's home aside (see the module's docstring) and copy the owner's texts (and
    personality book) into it; or, when a birth of that name was left unfinished, return that home to
    be continued, with a note saying so."""
    notes = check_birth_input(root, name, owner, preset_name, corpus)
    left = unfinished_birth(root, name)
    if left is not None:
        notes.append(f"continuing the unfinished birth of {name} in {left.path} "
                     "(its settings and texts are kept; remove that folder to start afresh)")
        return left, notes
    if book:
        from companion.history.personality import BookError, read_book

        try:
            read_book(book)  # refuse a bad book before anything is written
        except BookError as exc:
            raise BirthError(str(exc)) from exc
    home = Home.create(root, name, owner=owner, preset=preset_name, aside=True)
    if book:
        shutil.copyfile(book, home.path / BOOK_FILE)
        from companion.history.personality import add_book_lessons
        from companion.store import Store

        with Store.open(home.store_path) as store:  # its nights test and teach them
            count = add_book_lessons(store, home.path / BOOK_FILE)
        if count:
            notes.append(f"{count} lesson{'s' if count != 1 else ''} read back from the book")
    if corpus:
        texts = read_owner_texts(corpus)
        folder = home.path / OWNER_CORPUS_DIR
        folder.mkdir(exist_ok=True)
        for i, (path, text) in enumerate(texts.texts):
            (folder / f"{i:04d}-{Path(path).name}").write_text(text, encoding="utf-8")
    home.make_private()  # the copies are the owner's words: 0600 whatever the umask
    return home, notes


def finish_birth(home: Home) -> Home:
    """Move a whole birth into place under the companion's name; returns the home there.

    The rename is atomic on one file system, so the companion appears whole or not at all. Close the
    store first (SQLite finds its journal files by path); a lock held on the home stays held."""
    if not home.unborn:
        return home
    if not is_born(home.path):
        raise BirthError(f"{home.path}: the birth is not whole yet (no tokenizer or no weights); not moved")
    target = home.root / home.name
    if target.exists():
        raise BirthError(f"{target} appeared while {home.name} was being born; the birth is kept in {home.path}")
    os.rename(home.path, target)
    fsync_dir(home.root)
    return Home(target)


def discard_unborn(home: Home) -> None:
    """Remove an unfinished birth's folder (after the owner confirmed it). A whole companion is never
    removed this way."""
    if is_born(home.path) and not home.unborn:
        raise BirthError(f"{home.path} holds a whole companion; it is not removed")
    shutil.rmtree(home.path)
    fsync_dir(home.root)


def _owner_documents(home: Home) -> list[list[Turn]]:
    folder = home.path / OWNER_CORPUS_DIR
    if not folder.is_dir():
        return []
    return [[Turn("text", p.read_text(encoding="utf-8"))] for p in sorted(folder.iterdir()) if p.suffix in (".txt", ".md")]


def _book_documents(home: Home) -> list[list[Turn]]:
    """The chosen and typed replies of a personality book, with their prompts (a rebirth)."""
    from companion.history.personality import book_documents

    path = home.path / BOOK_FILE
    return book_documents(path) if path.exists() else []


def corpus_documents(settings: Settings, home: Home) -> tuple[list[list[Turn]], list[list[Turn]]]:
    """(training documents, held-out documents) of the birth corpus: starter plus the owner's texts."""
    greeting, goodnight = settings.day.greeting, settings.day.goodnight
    train = starter_documents(False, greeting, goodnight) + _owner_documents(home) + _book_documents(home)
    return train, starter_documents(True, greeting, goodnight)


def sample_line(tokenizer: Tokenizer, settings: Settings, seed: int = 0) -> Callable[[Transformer], str]:
    """A short reply to a fixed greeting: what the progress bar shows now and then."""
    name, owner = settings.companion.name, settings.companion.owner
    context = encode_turns(tokenizer, [
        Turn("inner", render_template(settings.day.greeting, name, owner)),
        Turn("owner", "Hi! How are you today?"),
    ]).ids
    stops = tokenizer.stop_ids

    def sample(model: Transformer) -> str:
        [gen] = sample_candidates(model, reply_prompt(tokenizer, context), 1,
                                  SamplingSettings(temperature=0.8, max_new_tokens=32, seed=seed), stops)
        return tokenizer.decode(gen.tokens)

    return sample


def run_birth_nursery(
    home: Home,
    store: Store,
    plan: NurseryPlan,
    on_progress: Callable[[NurseryProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    device: torch.device | None = None,
) -> NurseryOutcome:
    """Train the tokenizer if there is none, the first weights if there are none, then pretrain.

    Saves a `birth` checkpoint the first time and a `nursery` checkpoint after, and the nursery's own
    optimizer state beside them. Stopping early (should_stop) still saves what was learnt. A budget in
    minutes is the whole run's: the tokenizer, the encoding and the closing checks count against it.
    """
    started = time.monotonic()
    settings = home.load_settings()
    device = device or best_device()
    weights = Weights(home, store)
    notes: list[str] = []
    train_docs, heldout_docs = corpus_documents(settings, home)
    if not home.tokenizer_path.exists():
        log(f"training the tokenizer ({plan.vocab_size} tokens) on {len(train_docs) // 2} conversations and the owner's texts")
        tokenizer = train_tokenizer((t.text for doc in train_docs for t in doc), vocab_size=plan.vocab_size)
        tokenizer.save(home.tokenizer_path)
        log(f"tokenizer trained in {time.monotonic() - started:.0f} s")
    tokenizer = Tokenizer.load(home.tokenizer_path)  # a continued nursery reads with its weights' own, below

    current = weights.current()
    state_path = home.checkpoints_dir / NURSERY_STATE
    optimizer = None
    if current is None:
        torch.manual_seed(plan.seed)
        try:
            config = preset(settings.companion.preset or "seedling", vocab_size=tokenizer.vocab_size)
        except ConfigError as exc:
            raise BirthError(f"{home.settings_path}: companion.preset: {exc}") from exc
        model = Transformer(config).to(device)
        reason, parent_id, step0 = "birth", None, 0
    else:
        loaded = weights.load_current(device)
        notes += loaded.notes
        model, reason, parent_id, step0 = loaded.model, "nursery", loaded.checkpoint.id, loaded.meta.step
        tokenizer = loaded.tokenizer()  # a growth may have added tokens since birth
        if state_path.exists():
            optimizer = make_optimizer(model, plan.peak_lr)
            try:
                header = load_optimizer_state(state_path, model, optimizer)
                if header.get("checkpoint") != loaded.checkpoint.path:
                    notes.append("the weights changed since the last nursery run: its optimizer starts fresh")
                    optimizer = None
            except CheckpointError as exc:
                notes.append(f"nursery optimizer state unreadable, starting it fresh ({exc})")
                optimizer = None

    log(f"encoding the corpus: {len(train_docs)} training and {len(heldout_docs)} held-out documents")
    data = CorpusTokens.from_encoded(encode_documents(tokenizer, train_docs), encode_documents(tokenizer, heldout_docs))
    log(f"{len(data.train):,} training tokens, {len(data.heldout):,} held-out; model {model.num_params() / 1e6:.1f}M parameters on {device}")
    log(f"held-out loss measured on the starter probe: {plan.heldout_windows} fixed windows of "
        f"{model.config.block_size + 1} tokens of the held-out starter conversations")
    deadline = None if plan.minutes is None else started + plan.minutes * 60
    if deadline is not None:
        left = deadline - time.monotonic()
        log(f"{time.monotonic() - started:.0f} s of the {plan.minutes:g}-minute budget went to preparing; "
            + (f"{left:.0f} s left for training" if left > 0 else "training one step only"))
    with training_claim(settings.night.threads):  # the night's thread rule: the free cores, step by step
        result, optimizer = run_nursery(
            model, optimizer, data, steps=plan.steps, deadline=deadline, batch_size=plan.batch_size,
            peak_lr=plan.peak_lr, seed=plan.seed + step0, heldout_windows=plan.heldout_windows,
            eval_every_s=plan.eval_every_s, on_progress=on_progress, should_stop=should_stop,
            sample=sample_line(tokenizer, settings, plan.seed),
        )
    ppl, probe_set = measure_probe(model, tokenizer, settings)
    record = weights.save(model, reason, step=step0 + result.steps, parent_id=parent_id,
                          probe_ppl=ppl, probe_set=probe_set)
    save_optimizer_state(state_path, model, optimizer, {"checkpoint": record.path, "steps": str(step0 + result.steps)})
    return NurseryOutcome(result, record.id, notes, ppl)


def check_seedling(seedling_dir: Path = SEEDLING_DIR) -> tuple[Path, Path]:
    """The bundled seedling's tokenizer and weights files; checked before a home is made for it."""
    tokenizer_src, weights_src = seedling_dir / "tokenizer.json", seedling_dir / "seedling.safetensors"
    if not tokenizer_src.is_file() or not weights_src.is_file():
        raise BirthError(f"{seedling_dir}: the bundled seedling is missing from this installation; "
                         "birth one from scratch instead")
    return tokenizer_src, weights_src


def adopt_seedling(home: Home, store: Store, seedling_dir: Path = SEEDLING_DIR) -> int:
    """Give a new companion the bundled seedling's tokenizer and weights (seconds, not hours).

    The checkpoint's probe figure is measured here, on this companion's starter probe (a second or
    two), so that it reads the same as every later report of the same weights."""
    from companion.model.checkpoint import load_checkpoint

    tokenizer_src, weights_src = check_seedling(seedling_dir)
    tokenizer = Tokenizer.load(tokenizer_src)  # refuse a damaged tokenizer before copying it
    model, meta = load_checkpoint(weights_src)
    shutil.copyfile(tokenizer_src, home.tokenizer_path)
    home.make_private()
    ppl, probe_set = measure_probe(model, tokenizer, home.load_settings())
    return Weights(home, store).save(model, "seedling", step=meta.step, probe_ppl=ppl, probe_set=probe_set).id


def measure_probe(model: Transformer, tokenizer: Tokenizer, settings: Settings) -> tuple[float, str]:
    """The checkpoint figure of `model` on the starter probe, and the probe's name (companion.night.guards)."""
    from companion.night.guards import checkpoint_figure, probe_score, probe_set_name, starter_probe

    block = model.config.block_size
    probe = starter_probe(tokenizer, settings.day.greeting, settings.day.goodnight, block)
    return checkpoint_figure(probe_score(model, probe)), probe_set_name(block)
