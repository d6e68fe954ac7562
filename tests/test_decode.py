"""The decode path: a cache sized to what is read, the last position's logits only when reading a
prompt, and a sampling loop whose shortcuts change nothing the owner would see."""

from __future__ import annotations

import pytest
import torch

from companion.model.sampling import (
    SamplingSettings,
    _Penalty,
    apply_repetition_penalty,
    filter_logits,
    prefill,
    sample_candidates,
    sample_from_cache,
)
from companion.model.transformer import KVCache

GREEDY = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0, max_new_tokens=24)


def test_candidate_rows_hold_the_context_read_and_their_reply_not_the_whole_block(tiny_model):
    config = tiny_model.config
    cache, _ = prefill(tiny_model, list(range(3, 13)))  # 10 positions read of a 128-position block
    rows = cache.expand(3, 6)
    per_position = config.n_layer * 2 * config.kv_heads * config.head_dim * 4  # keys and values, fp32
    assert rows.capacity == 16 and rows.batch == 3
    assert rows.nbytes() == 3 * 16 * per_position
    assert rows.nbytes() < 3 * config.block_size * per_position / 7  # the old copy of the block
    assert torch.equal(rows.keys[0][2, :, :10], cache.keys[0][0, :, :10])


def test_a_cache_refuses_positions_past_its_room(tiny_model):
    cache, _ = prefill(tiny_model, [3, 4, 5])
    rows = cache.expand(2, 1)
    tiny_model(torch.tensor([[6], [6]]), cache=rows)
    with pytest.raises(ValueError, match="room for 4"):
        tiny_model(torch.tensor([[7], [7]]), cache=rows)
    with pytest.raises(ValueError, match="exceed the cache"):
        cache.expand(2, tiny_model.config.block_size)


def test_sampling_leaves_the_callers_cache_as_read_for_one_row_and_for_three(tiny_model):
    prompt = list(range(3, 20))
    for k in (1, 3):
        cache, last = prefill(tiny_model, prompt)
        keys = cache.keys[1][:, :, : len(prompt)].clone()
        sample_from_cache(tiny_model, cache, last, prompt, k, GREEDY, stop_ids=set())
        assert cache.length == len(prompt)
        assert torch.equal(cache.keys[1][:, :, : len(prompt)], keys)
        again, _ = tiny_model(torch.tensor([[40]]), cache=cache)  # the next turn reads on from the prompt
        whole, _ = tiny_model(torch.tensor([prompt + [40]]))
        assert torch.allclose(again[0, -1], whole[0, -1], atol=1e-4)


def test_greedy_tokens_are_those_of_rereading_the_whole_text_each_step(tiny_model):
    prompt = [5, 9, 17, 33, 2, 8]
    [gen] = sample_candidates(tiny_model, prompt, 1, GREEDY, stop_ids=set())
    text = list(prompt)
    with torch.no_grad():
        for _ in range(GREEDY.max_new_tokens):
            logits, _ = tiny_model(torch.tensor([text]))
            text.append(int(logits[0, -1].argmax()))
    assert gen.tokens == text[len(prompt):]
    rows = sample_candidates(tiny_model, prompt, 3, GREEDY, stop_ids=set())
    assert all(r.tokens == gen.tokens for r in rows)


def test_reading_a_prompt_gives_the_last_positions_logits_only(tiny_model):
    idx = torch.tensor([[4, 8, 15, 16, 23, 42]])
    with torch.no_grad():
        full, _ = tiny_model(idx)
        last, _ = tiny_model(idx, last_only=True)
        cache = KVCache.empty(tiny_model.config, 1, "cpu", torch.float32)
        cached, _ = tiny_model(idx, cache=cache, last_only=True)
    assert last.shape == (1, 1, tiny_model.config.vocab_size)
    assert torch.allclose(last[0, 0], full[0, -1], atol=1e-5)
    assert torch.allclose(cached[0, 0], full[0, -1], atol=1e-5)
    with pytest.raises(ValueError, match="last_only"):
        tiny_model(idx, targets=idx, last_only=True)


def test_top_p_over_the_top_k_survivors_keeps_the_same_tokens_as_sorting_the_vocabulary():
    torch.manual_seed(3)
    logits = torch.randn(4, 500) * 3
    for top_k, top_p in ((50, 0.9), (10, 0.5), (200, 0.99), (50, 0.01)):
        fast = filter_logits(logits, top_k, top_p)
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        slow = filter_logits(logits.masked_fill(logits < kth, float("-inf")), 0, top_p)
        assert torch.equal(fast.isfinite(), slow.isfinite())
        assert torch.equal(fast[fast.isfinite()], slow[slow.isfinite()])


def test_the_penalty_mask_matches_the_reference_rule_and_spares_protected_tokens():
    torch.manual_seed(4)
    logits = torch.randn(2, 30)
    penalty = _Penalty(2, 30, window=[1, 2, 3], penalty=1.3, protected={3}, device="cpu")
    penalty.saw(1, 7)
    penalty.saw(0, 3)  # protected: never penalised
    expected = apply_repetition_penalty(logits, [{1, 2, 3}, {1, 2, 3, 7}], 1.3, protected={3})
    assert torch.equal(penalty.apply(logits), expected)


# ---- model.decode: the decoding step without the module tree --------------------------------------

@pytest.fixture(scope="module")
def learned(tokenizer, tiny_texts):
    """A 2-layer model that has read some starter conversations for 60 steps (greedy tokens are not
    near ties), and a prompt from its text."""
    from tests.conftest import trained_tiny

    ids = torch.tensor([t for text in tiny_texts[:300] for t in tokenizer.encode(text)])
    return trained_tiny(ids, tokenizer.vocab_size, 128, 60), ids[-40:].tolist()


def _grouped(model):
    """The same model with grouped-query attention (2 key/value heads for 4 query heads)."""
    from dataclasses import replace as with_fields

    from companion.model.transformer import Transformer

    torch.manual_seed(3)
    return Transformer(with_fields(model.config, n_kv_head=2)).eval()


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("fused_kernel", [False, True])
def test_the_decoding_step_gives_the_module_paths_logits(learned, grouped, fused_kernel):
    """fused_kernel: the attention a GPU or half precision gets (`scaled_dot_product_attention`)."""
    from companion.model.decode import Decoder

    model, prompt = learned
    model = _grouped(model) if grouped else model
    decoder = Decoder(model)
    decoder.cpu_fp32 = not fused_kernel
    caches = [prefill(model, prompt)[0].expand(3, 12) for _ in range(2)]
    ids = [prompt[-1], prompt[-2], prompt[-3]]
    for _ in range(12):
        with torch.no_grad():
            old = model(torch.tensor(ids)[:, None], cache=caches[0])[0][:, -1]
        new = decoder.step(torch.tensor(ids), caches[1])
        assert torch.allclose(new, old, rtol=1e-5, atol=1e-4)
        ids = old.argmax(-1).tolist()
    assert caches[0].length == caches[1].length
    assert torch.allclose(caches[0].keys[1], caches[1].keys[1], atol=1e-6)


@pytest.mark.parametrize("settings", [GREEDY, SamplingSettings(temperature=0.9, top_k=20, top_p=0.9,
                                                               repetition_penalty=1.2, max_new_tokens=24, seed=7)])
def test_greedy_and_seeded_candidates_are_the_module_paths_tokens(learned, settings):
    model, prompt = learned
    runs = []
    for fast in (True, False):
        cache, last = prefill(model, prompt)
        runs.append([g.tokens for g in sample_from_cache(model, cache, last, prompt, 3, settings, stop_ids=set(),
                                                         fast=fast)])
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 24


def test_the_decoding_step_follows_the_weights_when_they_change(learned):
    from companion.model.decode import decoder_for

    model, _ = learned
    model = _grouped(model)
    first = decoder_for(model)
    assert decoder_for(model) is first  # built once while the weights stand
    with torch.no_grad():
        model.blocks[0].mlp.up.weight.mul_(0.5)  # a night's step changes weights in place
    second = decoder_for(model)
    assert second is not first
    assert torch.equal(second.layers[0].up, model.blocks[0].mlp.up.weight)


def test_the_int8_copy_keeps_the_module_path(learned):
    from companion.model.decode import decoder_for
    from companion.model.quantize.int8 import int8_available, int8_decoder

    if int8_available():
        pytest.skip(int8_available())
    assert decoder_for(int8_decoder(learned[0])) is None
