"""The network and its sampling: cache equivalence, batched candidates, the repetition penalty."""

from __future__ import annotations

import pytest
import torch

from companion.model.config import ConfigError, PRESETS, preset
from companion.model.sampling import (SamplingSettings, apply_repetition_penalty, as_drawn, filter_logits,
                                     sample_candidates)
from companion.model.transformer import KVCache, Transformer
from tests.conftest import tiny_config


def test_presets_are_deep_then_wide_with_fixed_head_size():
    for name in ("v1", "v2", "v3", "v4"):
        cfg = PRESETS[name]
        assert cfg.n_layer == 24 and cfg.head_dim == 64
    assert [PRESETS[n].n_embd for n in ("v1", "v2", "v3", "v4")] == [384, 512, 768, 1024]
    assert PRESETS["v2"].n_head == PRESETS["v1"].n_head + 2  # widening adds heads


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*seedling"):
        preset("huge")


def test_the_network_has_no_biases_and_ties_its_embeddings():
    model = Transformer(tiny_config())
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    assert "lm_head.weight" not in model.state_dict()  # the output reuses the embedding


def test_generation_with_the_kv_cache_gives_the_same_logits_as_without(tiny_model):
    torch.manual_seed(1)
    ids = torch.randint(0, tiny_model.config.vocab_size, (1, 40))
    full, _ = tiny_model(ids)
    cache = KVCache.empty(tiny_model.config, 1, "cpu", torch.float32)
    first, _ = tiny_model(ids[:, :25], cache=cache)  # a prefill...
    chunk, _ = tiny_model(ids[:, 25:32], cache=cache)  # ...a chunk appended...
    steps = [tiny_model(ids[:, i : i + 1], cache=cache)[0] for i in range(32, 40)]  # ...then one by one
    cached = torch.cat([first, chunk, *steps], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_batched_candidates_equal_one_by_one_generation_under_the_same_seeds(tiny_model, tokenizer):
    prompt = tokenizer.encode("Hello there, how are you doing today?")
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.2, max_new_tokens=12, seed=7)
    stops = {tokenizer.end_id, *tokenizer.role_ids.values()}
    batch = sample_candidates(tiny_model, prompt, 4, settings, stops)
    alone = [sample_candidates(tiny_model, prompt, 1, settings, stops, slots=[i])[0] for i in range(4)]
    assert [g.tokens for g in batch] == [g.tokens for g in alone]
    assert len({tuple(g.tokens) for g in batch}) > 1  # the slots really differ


def test_a_seed_makes_a_run_reproducible(tiny_model):
    settings = SamplingSettings(max_new_tokens=10, seed=3)
    a = sample_candidates(tiny_model, [5, 6, 7], 3, settings, stop_ids={1})
    b = sample_candidates(tiny_model, [5, 6, 7], 3, settings, stop_ids={1})
    assert [g.tokens for g in a] == [g.tokens for g in b]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_but_spares_specials():
    logits = torch.tensor([[2.0, -2.0, 3.0, 1.0]])
    out = apply_repetition_penalty(logits, [{0, 1, 2}], 2.0, protected={2})
    assert out.tolist() == [[1.0, -4.0, 3.0, 1.0]]


def test_top_k_and_top_p_keep_only_the_likely_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=1.0)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_k=0, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]


def test_a_target_scored_as_drawn_gets_the_probability_the_sampler_gives_it():
    """`as_drawn` is the sampler's own view (penalty, temperature, top-k, top-p), so a loss on it asks
    for what is said; a target the cuts would drop is kept, with a finite log-probability."""
    torch.manual_seed(0)
    logits = torch.randn(2, 40) * 3
    settings = SamplingSettings(temperature=0.8, top_k=10, top_p=0.9, repetition_penalty=1.3)
    seen = torch.zeros(2, 40, dtype=torch.bool)
    seen[:, :5] = True
    sampler = filter_logits(apply_repetition_penalty(logits, [set(range(5))] * 2, 1.3, ()) / 0.8, 10, 0.9)
    likely = sampler.argmax(-1)
    drawn = torch.log_softmax(as_drawn(logits, seen, settings, likely), -1)
    assert torch.allclose(drawn.gather(-1, likely[:, None]), torch.log_softmax(sampler, -1).gather(-1, likely[:, None]))
    unlikely = logits.argmin(-1)  # cut by top-k: kept here, and the gradient reaches it
    raw = logits.clone().requires_grad_(True)
    lp = torch.log_softmax(as_drawn(raw, seen, settings, unlikely), -1).gather(-1, unlikely[:, None])
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert (raw.grad.gather(-1, unlikely[:, None]) > 0).all()


def test_generation_stops_at_a_stop_token_and_reports_why(tiny_model):
    vocab = tiny_model.config.vocab_size
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=30, seed=0)
    every = set(range(vocab))
    ended = sample_candidates(tiny_model, [5, 6], 2, settings, stop_ids=every)
    assert all(g.finish == "end" and g.tokens == [] for g in ended)
    capped = sample_candidates(tiny_model, [5, 6], 2, SamplingSettings(max_new_tokens=5, seed=0), stop_ids=set())
    assert all(g.finish == "length" and len(g.tokens) == 5 for g in capped)
    stopped = sample_candidates(tiny_model, [5, 6], 2, settings, stop_ids=set(), should_stop=lambda: True)
    assert all(g.finish == "stopped" for g in stopped)
