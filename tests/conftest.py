"""Shared fixtures: a tiny real tokenizer and a tiny real model, made once per test session."""

from __future__ import annotations

import pytest
import torch

from companion.birth.corpus import starter_documents
from companion.transcript import Turn
from companion.model.config import preset
from companion.model.tokenizer import Tokenizer, train_tokenizer
from companion.model.transformer import Transformer

TINY_VOCAB = 512
GREETING = "Good morning, {companion}. {owner} is here."
GOODNIGHT = "Good night, {companion}. The day is over."


def trained_tiny(ids: torch.Tensor, vocab_size: int, block_size: int, steps: int) -> Transformer:
    """A tiny model trained `steps` steps (batches of 8 windows of 64 tokens, lr 3e-3) on the token
    stream `ids`, on one thread and a fixed seed: a real model that has learned something, fast."""
    from companion.night.optimizer import make_optimizer, train_step

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = Transformer(tiny_config(vocab_size=vocab_size, block_size=block_size))
    opt = make_optimizer(model, 3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 65, (8,))
        batch = torch.stack([ids[s : s + 65] for s in starts])
        _, loss = model(batch[:, :-1], batch[:, 1:])
        train_step(model, opt, loss, 3e-3)
    torch.set_num_threads(before)
    return model.eval()


def tiny_config(**overrides):
    base = dict(vocab_size=TINY_VOCAB, n_layer=2, n_embd=64, head_dim=16, block_size=128)
    base.update(overrides)
    return preset("seedling", **base)


@pytest.fixture(autouse=True)
def private_folders(tmp_path_factory, monkeypatch):
    """No test touches the real data or config folders: COMPANION_HOME and COMPANION_CONFIG point
    into a fresh temporary folder unless a test sets them itself."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("COMPANION_HOME", str(base / "data"))
    monkeypatch.setenv("COMPANION_CONFIG", str(base / "config"))


@pytest.fixture()
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine they lose a lot
    to them (a night's thread and the test's would fight over both cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """A few hundred starter conversations' lines: enough for a 512-token BPE."""
    docs = starter_documents(held_out=False, greeting=GREETING, goodnight=GOODNIGHT, limit=300)
    return [t.text for doc in docs for t in doc]


@pytest.fixture(scope="session")
def tokenizer(tiny_texts) -> Tokenizer:
    return train_tokenizer(tiny_texts, vocab_size=TINY_VOCAB)


@pytest.fixture()
def tiny_model(tokenizer) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config(vocab_size=tokenizer.vocab_size)).eval()


@pytest.fixture()
def sample_turns() -> list[Turn]:
    return [
        Turn("inner", "Good morning, Scout. Trey is here."),
        Turn("owner", "Hi Scout! How was your night?"),
        Turn("companion", "It was quiet. I dreamt of the sea."),
        Turn("inner", "He seems cheerful today."),
    ]


def make_tiny_home(root, tokenizer, name: str = "Scout", owner: str = "Trey", block_size: int = 256, seed: int = 0):
    """A real companion home with a tiny untrained model: tokenizer, settings, store, one checkpoint.

    Returns the Home. Block 256 gives the day a 192-token budget at the default share (3/4).
    """
    from companion.home import Home
    from companion.store import Store
    from companion.history.weights import Weights

    home = Home.create(root, name, owner=owner, preset="seedling")
    tokenizer.save(home.tokenizer_path)
    torch.manual_seed(seed)
    model = Transformer(tiny_config(vocab_size=tokenizer.vocab_size, block_size=block_size))
    with Store.open(home.store_path) as store:
        Weights(home, store).save(model, "birth", step=0)
    return home


@pytest.fixture()
def tiny_home(tmp_path, tokenizer):
    return make_tiny_home(tmp_path / "companions", tokenizer)
