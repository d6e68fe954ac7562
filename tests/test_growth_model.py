"""Growth on the model side: a tiny model trained a few steps on real formatted days, widened and
stretched; what it computes before and after is compared logit by logit."""

from __future__ import annotations

import pytest
import torch

from companion.birth.corpus import starter_documents
from companion.night.optimizer import make_optimizer, train_step
from companion.transcript import encode_documents
from companion.model.checkpoint import load_checkpoint, save_checkpoint, CheckpointMeta
from companion.model.config import preset
from companion.model.growth import StretchError, WidenError, stretch, widen
from companion.model.growth.widen import widen_config
from companion.model.transformer import Transformer
from tests.conftest import GOODNIGHT, GREETING, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def day_stream(tokenizer) -> torch.Tensor:
    """Real days as the companion reads them: starter conversations through the one formatter."""
    docs = starter_documents(held_out=False, greeting=GREETING, goodnight=GOODNIGHT, limit=60)
    encoded = encode_documents(tokenizer, docs)
    return torch.tensor([i for e in encoded for i in e.ids], dtype=torch.long)


def windows(stream: torch.Tensor, length: int, count: int, offset: int = 0) -> torch.Tensor:
    return torch.stack([stream[offset + i * length : offset + (i + 1) * length] for i in range(count)])


@pytest.fixture(scope="module")
def trained(tokenizer, day_stream) -> Transformer:
    """A tiny model after 30 real steps, so norms and weights are no longer at their initial values."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(vocab_size=tokenizer.vocab_size)).train()
    opt = make_optimizer(model, 3e-3)
    for step in range(30):
        batch = windows(day_stream, 129, 4, offset=step * 4 * 129)
        _, loss = model(batch[:, :-1], batch[:, 1:])
        train_step(model, opt, loss, 3e-3)
    return model.eval()


def test_widening_keeps_every_logit_on_real_days(trained, day_stream):
    days = windows(day_stream, 128, 4, offset=50_000)
    before, _ = trained(days)
    wide = widen(trained, 96)
    after, _ = wide(days)
    assert wide.config.n_embd == 96 and wide.config.n_head == 6 and wide.config.head_dim == 16
    assert wide.num_params() > trained.num_params()
    assert (before - after).abs().max().item() < 1e-4


def test_widening_twice_and_with_a_chosen_mlp_still_keeps_the_logits(trained, day_stream):
    days = windows(day_stream, 128, 2, offset=60_000)
    before, _ = trained(days)
    wide = widen(widen(trained, 80), 128, mlp_hidden=512)
    after, _ = wide(days)
    assert wide.config.hidden == 512
    assert (before - after).abs().max().item() < 1e-4


def test_every_zero_slice_moves_after_one_training_step(trained, day_stream):
    wide = widen(trained, 96).train()
    c0, h0 = trained.config.n_embd, trained.config.hidden
    zero_slices = {
        "embed.weight": lambda t: t[:, c0:],
        "blocks.0.attn.proj.weight": lambda t: t[c0:, :],
        "blocks.1.attn.proj.weight": lambda t: t[:, c0:],  # columns reading the new heads
        "blocks.0.mlp.down.weight": lambda t: t[c0:, :],
        "blocks.1.mlp.down.weight": lambda t: t[:, h0:],  # columns reading the new hidden units
    }
    params = dict(wide.named_parameters())
    for name, cut in zero_slices.items():
        assert cut(params[name]).abs().max().item() == 0.0, name
    batch = windows(day_stream, 129, 4, offset=70_000)
    _, loss = wide(batch[:, :-1], batch[:, 1:])
    train_step(wide, make_optimizer(wide, 1e-3), loss, 1e-3)
    for name, cut in zero_slices.items():
        assert cut(params[name]).abs().max().item() > 0.0, f"{name}: its new slice never moved"


def test_a_widened_checkpoint_saves_and_loads_with_its_own_config(trained, tmp_path, day_stream):
    wide = widen(trained, 96)
    save_checkpoint(tmp_path / "w.safetensors", wide, CheckpointMeta(wide.config, reason="growth"))
    loaded, meta = load_checkpoint(tmp_path / "w.safetensors")
    assert meta.config == wide.config and meta.config.norm_eps < trained.config.norm_eps
    days = windows(day_stream, 64, 2)
    assert torch.equal(loaded(days)[0], wide(days)[0])


@pytest.mark.parametrize("width, words", [(64, "not larger"), (48, "not larger"), (72, "multiple of the head size")])
def test_a_width_that_cannot_be_is_refused_with_its_reason(trained, width, words):
    with pytest.raises(WidenError, match=words):
        widen(trained, width)


def test_stretching_reads_the_old_block_almost_as_before(trained, day_stream):
    """YaRN's by-parts rule is not exact inside the old block (the slow rotary pairs turn a little slower).
    Measured on this tiny trained model (head size 16, so 7 of its 8 rotary pairs are slowed): max logit
    change 0.15 (plain position interpolation: 0.27), held-out loss 5.17313 -> 5.17314."""
    days = windows(day_stream, 129, 4, offset=80_000)
    before, loss_before = trained(days[:, :-1], days[:, 1:])
    long = stretch(trained, 256)
    after, loss_after = long(days[:, :-1], days[:, 1:])
    assert long.config.block_size == 256 and long.config.rope_scaling == 2.0
    assert long.config.rope_original_block == 128
    change = (before - after).abs().max().item()
    assert change < 0.3, change
    assert abs(loss_after.item() - loss_before.item()) < 0.005
    # and it reads a window twice as long without complaint
    long_days = windows(day_stream, 257, 2, offset=90_000)
    _, long_loss = long(long_days[:, :-1], long_days[:, 1:])
    assert torch.isfinite(long_loss)


def test_stretching_counts_from_the_first_block_and_refuses_a_shorter_one(trained):
    long = stretch(stretch(trained, 256), 512)
    assert long.config.rope_scaling == 4.0 and long.config.rope_original_block == 128
    with pytest.raises(StretchError, match="not larger"):
        stretch(trained, 128)


def test_a_checkpoint_from_before_stretching_existed_loads_unchanged(tmp_path, tokenizer):
    """Old headers carry no rope fields: they load as never stretched."""
    import json

    config = tiny_config(vocab_size=tokenizer.vocab_size)
    data = json.loads(config.to_json())
    del data["rope_scaling"], data["rope_original_block"]
    from companion.model.config import ModelConfig

    assert ModelConfig.from_json(json.dumps(data)) == config


def test_presets_widen_by_adding_heads():
    v1, v2 = preset("v1"), preset("v2")
    grown = widen_config(v1, v2.n_embd)
    assert grown.n_head == v2.n_head and grown.head_dim == v1.head_dim and grown.hidden == v2.hidden


def test_a_stretched_model_is_not_exported_as_if_it_were_not(trained):
    """The export writes plain rotary positions; a stretched model would compute otherwise there."""
    from companion.model.interop.llama import InteropError, to_llama

    with pytest.raises(InteropError, match="stretched context"):
        to_llama(stretch(trained, 256).state_dict(), stretch(trained, 256).config)
    assert to_llama(trained.state_dict(), trained.config)
