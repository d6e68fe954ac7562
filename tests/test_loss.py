"""The one padding helper and the one next-token loss (`model/loss.py`): every caller's numbers are the
numbers it computed with its own hand-written loop before, on a tiny real model.

The `old_*` functions below are those loops, copied as they stood before the helper replaced them (the
night's step loss, the probe's summed loss, the preferences' padding and log-probabilities, the lesson
margin's log-probabilities, the forward pass's mean loss); each test compares a caller of today against
one of them, bit for bit where the arithmetic is the same. Where the caller now scores through
`model.loss.score` (rows grouped by length, the vocabulary projection only where a target teaches),
the matrix products run on other shapes, so the numbers agree up to float rounding (1e-6 relative)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from companion.night.guards import _nll
from companion.lessons.margin import answer_logprobs
from companion.night.material import Example, step_loss
from companion.night.preferences import ScoredReply, logprobs
from companion.night.optimizer import mean_loss
from companion.model.loss import (IGNORE, length_groups, next_token_loss, pad, score, sequence_logprobs, shared_prompts,
                                  shifted, summed_nll, token_nll)
from companion.model.transformer import Transformer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def old_step_loss(model, examples):
    width = max(len(x) for x in examples)
    idx = torch.zeros(len(examples), width, dtype=torch.long)
    tgt = torch.full((len(examples), width), -100, dtype=torch.long)
    wts = torch.zeros(len(examples), width)
    for row, x in enumerate(examples):
        idx[row, : len(x)] = torch.tensor(x.inputs)
        tgt[row, : len(x)] = torch.tensor(x.targets)
        wts[row, : len(x)] = torch.tensor(x.weights)
    logits, _ = model(idx)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt.reshape(-1), ignore_index=-100,
                         reduction="none")
    taught = (tgt.reshape(-1) != -100).float()
    return (ce * wts.reshape(-1) * taught).sum() / taught.sum().clamp_min(1.0)


@torch.no_grad()
def old_probe_nll(model, sequences, batch_size=8):
    total, count = 0.0, 0
    for i in range(0, len(sequences), batch_size):
        chunk = sequences[i : i + batch_size]
        width = max(len(s) for s in chunk)
        idx = torch.zeros(len(chunk), width, dtype=torch.long)
        tgt = torch.full((len(chunk), width), -100, dtype=torch.long)
        for row, seq in enumerate(chunk):
            idx[row, : len(seq)] = seq
            tgt[row, : len(seq) - 1] = seq[1:]
        idx, tgt = idx[:, :-1], tgt[:, :-1]
        logits, _ = model(idx)
        losses = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                 ignore_index=-100, reduction="sum")
        total += float(losses)
        count += int((tgt != -100).sum())
    return total, count


def old_reply_logprobs(model, replies):
    width = max(len(r) for r in replies)
    idx = torch.zeros(len(replies), width, dtype=torch.long)
    tgt = torch.full((len(replies), width), -100, dtype=torch.long)
    for row, r in enumerate(replies):
        idx[row, : len(r)] = torch.tensor(r.inputs)
        tgt[row, : len(r)] = torch.tensor(r.targets)
    logits, _ = model(idx)
    logp = F.log_softmax(logits.float(), dim=-1)
    mask = tgt != -100
    picked = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def old_answer_logprobs(model, prompts, answers, mean=True):
    rows = [p + a for p, a in zip(prompts, answers)]
    width = max(len(r) for r in rows) - 1
    idx = torch.zeros(len(rows), width, dtype=torch.long)
    tgt = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        seq = torch.tensor(p + a)
        idx[i, : len(seq) - 1] = seq[:-1]
        tgt[i, len(p) - 1 : len(seq) - 1] = seq[len(p):]
    logits, _ = model(idx)
    logp = F.log_softmax(logits.float(), dim=-1)
    mask = tgt != -100
    picked = logp.gather(-1, tgt.clamp_min(0)[..., None])[..., 0] * mask
    return picked.sum(1) / mask.sum(1).clamp_min(1) if mean else picked.sum(1)


def old_mean_token_loss(logits, targets):
    losses = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                             reduction="none")
    mask = (targets.reshape(-1) != -100).float()
    return (losses * mask).sum() / mask.sum().clamp_min(1e-8)


def token_rows(tokenizer, texts):
    return [tokenizer.encode(t) for t in texts]


TEXTS = ["Hi Scout! How was your night?", "It was quiet. I dreamt of the sea and of a long walk on the shore.",
         "What is my dog's name?", "Your dog is called Biscuit."]


def night_examples(tokenizer):
    """Rows of unequal length, owner tokens untaught (IGNORE), sources at weights 1.0, 0.5 and 0.25."""
    out = []
    for n, (ids, weight) in enumerate(zip(token_rows(tokenizer, TEXTS), [1.0, 0.5, 0.25, 1.0])):
        inputs, targets = ids[:-1], ids[1:]
        weights = [weight] * len(targets)
        if n == 0:  # the owner's words teach nothing
            targets = [IGNORE] * 3 + targets[3:]
            weights = [0.0] * 3 + weights[3:]
        out.append(Example(inputs, targets, weights, "day"))
    return out


def test_the_nights_step_loss_is_the_old_formula(tiny_model, tokenizer, tiny_home):
    examples = night_examples(tokenizer)
    with torch.no_grad():
        new = step_loss(tiny_model, examples, tiny_home.load_settings())
        old = old_step_loss(tiny_model, examples)
    assert torch.allclose(new, old, rtol=1e-6)


def test_a_sources_weight_scales_its_pull_instead_of_being_normalised_away(tiny_model, tokenizer):
    ids = token_rows(tokenizer, TEXTS[1:2])[0]
    inputs, targets = shifted(ids)
    with torch.no_grad():
        full = pad([inputs], [targets], [[1.0] * len(targets)])
        half = pad([inputs], [targets], [[0.5] * len(targets)])
        logits, _ = tiny_model(full.inputs)
        assert torch.allclose(next_token_loss(logits, half.targets, half.weights),
                              0.5 * next_token_loss(logits, full.targets, full.weights))
        # ...and without weights it is the plain mean over the taught tokens
        plain = next_token_loss(logits, full.targets)
        assert torch.allclose(plain, token_nll(logits, full.targets).sum() / full.taught)


def test_the_probe_sum_and_count_are_the_old_ones(tiny_model, tokenizer):
    sequences = [torch.tensor(ids) for ids in token_rows(tokenizer, TEXTS * 3)]  # two batches of unequal rows
    (new, count), (old, old_count) = _nll(tiny_model, sequences), old_probe_nll(tiny_model, sequences)
    assert count == old_count and new == pytest.approx(old, rel=1e-6)


def test_the_preferences_log_probabilities_are_the_old_ones(tiny_model, tokenizer):
    rows = token_rows(tokenizer, TEXTS)
    replies = [ScoredReply(ids[:-1], [IGNORE] * (n + 2) + ids[n + 3 :], "pick", "") for n, ids in enumerate(rows)]
    with torch.no_grad():
        assert torch.allclose(logprobs(tiny_model, replies), old_reply_logprobs(tiny_model, replies), rtol=1e-6)


def test_rows_are_read_in_groups_of_like_length_so_that_little_is_padding():
    assert length_groups([100, 20, 95, 5, 18]) == [[0, 2], [1, 4], [3]]
    assert length_groups([7, 7, 7]) == [[0, 1, 2]]
    assert length_groups([]) == []


def test_scoring_only_the_taught_positions_trains_as_the_full_pass_did(tiny_model, tokenizer, tiny_home):
    examples = night_examples(tokenizer)
    grads = []
    for loss_of in (lambda: step_loss(tiny_model, examples, tiny_home.load_settings()),
                    lambda: old_step_loss(tiny_model, examples)):
        tiny_model.zero_grad(set_to_none=True)
        loss_of().backward()
        grads.append([p.grad.clone() for p in tiny_model.parameters()])
    for new, old in zip(*grads):
        assert torch.allclose(new, old, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mean", [True, False])
def test_the_lesson_margins_answer_log_probabilities_are_the_old_ones(tiny_model, tokenizer, mean):
    prompts = token_rows(tokenizer, TEXTS[:2])
    answers = token_rows(tokenizer, TEXTS[2:])
    with torch.no_grad():
        new = answer_logprobs(tiny_model, prompts, answers, mean=mean)
        assert torch.allclose(new, old_answer_logprobs(tiny_model, prompts, answers, mean=mean), rtol=1e-6)


def test_the_forward_pass_and_the_held_out_loss_keep_their_mean(tiny_model, tokenizer):
    ids = torch.tensor(token_rows(tokenizer, TEXTS[1:2])[0][:12])
    windows = [ids, ids.flip(0)]
    batch = torch.stack(windows)
    with torch.no_grad():
        logits, loss = tiny_model(batch[:, :-1], batch[:, 1:])
        assert torch.equal(loss, old_mean_token_loss(logits, batch[:, 1:]))
        assert mean_loss(tiny_model, windows) == pytest.approx(float(loss), rel=1e-6)


def test_the_forward_pass_takes_no_weights_of_its_own():
    """Its old `weights=` divided by the sum of weights, not by the taught tokens as the night does."""
    assert "weights" not in inspect.signature(Transformer.forward).parameters


def test_padding_leaves_every_rows_loss_as_it_is_alone(tiny_model, tokenizer):
    rows = [shifted(ids) for ids in token_rows(tokenizer, TEXTS)]
    with torch.no_grad():
        together = pad([x for x, _ in rows], [t for _, t in rows])
        logits, _ = tiny_model(together.inputs)
        batched = sequence_logprobs(logits, together.targets)
        for n, (x, t) in enumerate(rows):
            alone = pad([x], [t])
            assert alone.taught == len(t)
            logits, _ = tiny_model(alone.inputs)
            assert float(sequence_logprobs(logits, alone.targets)[0]) == pytest.approx(float(batched[n]), abs=1e-4)
            assert float(summed_nll(logits, alone.targets)) == pytest.approx(-float(batched[n]), abs=1e-4)


def test_pad_fills_with_token_zero_and_ignored_targets():
    batch = pad([[5, 6, 7], [8]], [[6, 7, 9], [IGNORE]], [[1.0, 0.5, 0.5], [1.0]])
    assert batch.inputs.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.targets.tolist() == [[6, 7, 9], [IGNORE, IGNORE, IGNORE]]
    assert batch.weights.tolist() == [[1.0, 0.5, 0.5], [1.0, 0.0, 0.0]]
    assert batch.taught == 3


def test_shifted_gives_the_prompt_and_teaches_only_the_answer():
    assert shifted([1, 2, 3, 4, 5]) == ([1, 2, 3, 4], [2, 3, 4, 5])
    assert shifted(torch.tensor([1, 2, 3, 4, 5]), context=3) == ([1, 2, 3, 4], [IGNORE, IGNORE, 4, 5])


def margin_rows(tokenizer):
    """The margin's shape: two prompts of one length and one of another, each with answers of
    unequal length after it, and one row alone; weights vary along each answer."""
    prompts = token_rows(tokenizer, ["What is my dog's name?", "What is my cat's name?", TEXTS[1], TEXTS[0]])
    answers = token_rows(tokenizer, [TEXTS[3], "Biscuit.", "Your cat is called Mop, I think.", TEXTS[0]])
    rows = [shifted(p + a, context=len(p)) for p in prompts[:3] for a in answers]
    rows.append(shifted(prompts[3] + answers[0], context=len(prompts[3])))
    weights = [[0.25 + (i + j) % 3 * 0.5 for j in range(len(x))] for i, (x, _) in enumerate(rows)]
    return [x for x, _ in rows], [t for _, t in rows], weights


def positions_read(model, run):
    """How many positions the model's first block read while `run()` ran."""
    seen = []
    hook = model.blocks[0].register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0] * args[0].shape[1]))
    try:
        out = run()
    finally:
        hook.remove()
    return out, sum(seen)


def test_a_prompt_several_rows_share_is_read_once_and_scores_as_every_row_read_whole(tiny_model, tokenizer):
    inputs, targets, weights = margin_rows(tokenizer)
    tiny_model.train()
    results = []
    for saving in (1, 0):  # 0: every row read whole, as before
        tiny_model.zero_grad(set_to_none=True)
        scored, read = positions_read(tiny_model, lambda: score(tiny_model, inputs, targets, weights, saving=saving))
        scored.loss().backward()
        results.append((scored, read, [p.grad.clone() for p in tiny_model.parameters()]))
    (shared, shared_read, shared_grads), (whole, whole_read, whole_grads) = results
    assert shared_read < whole_read * 0.7
    assert torch.allclose(shared.row_logprobs(mean=True), whole.row_logprobs(mean=True), rtol=1e-5, atol=1e-6)
    assert torch.allclose(shared.row_logprobs(), whole.row_logprobs(), rtol=1e-5, atol=1e-5)
    assert float(shared.loss().detach()) == pytest.approx(float(whole.loss().detach()), rel=1e-5)
    assert float(shared.summed().detach()) == pytest.approx(float(whole.summed().detach()), rel=1e-5)
    for new, old in zip(shared_grads, whole_grads):
        assert torch.allclose(new, old, rtol=1e-4, atol=1e-6)


def test_only_prompts_worth_sharing_are_read_once():
    ask, other = [5, 6, 7, 8], [9, 9]
    inputs = [ask + [1, 2], ask + [3], other + [4], other + [4, 4], ask, [1, 2, 3]]
    targets = [[IGNORE] * 3 + x[4:] + [0] for x in inputs[:2]] + [[IGNORE] * 1 + [4, 0], [IGNORE, 4, 4, 0],
                                                                    [IGNORE] * 4, [1, 2, 3]]
    shared, alone = shared_prompts(inputs, targets, saving=3)
    assert shared == {(5, 6, 7): [0, 1]}  # (9,) saves one position; row 4 teaches nothing
    assert alone == [2, 3, 5]
    assert shared_prompts(inputs, targets, saving=4) == ({}, [0, 1, 2, 3, 5])


def test_a_shared_prompt_is_read_in_the_autocast_dtype_too(tiny_model, tokenizer):
    """The night autocasts to bf16 on a GPU: the prompt's cache holds what the layers give under it
    (checked with the CPU's autocast, the same rule)."""
    inputs, targets, _ = margin_rows(tokenizer)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        shared = score(tiny_model, inputs, targets, saving=1).row_logprobs(mean=True)
        whole = score(tiny_model, inputs, targets, saving=0).row_logprobs(mean=True)
    assert torch.allclose(shared, whole, atol=0.05)


def test_logits_adjusted_before_scoring_see_each_target_at_its_place_in_its_row(tiny_model, tokenizer):
    """`adjust` (the sampler's view, for the lessons' drawn-whole margin) is told each taught target's
    row and position in that row, the same whether its prompt was shared or the row read whole."""
    inputs, targets, _ = margin_rows(tokenizer)
    told: list[tuple[int, int]] = []

    def by_place(logits, rows, positions, taught):
        told.extend(zip(rows.tolist(), positions.tolist()))
        return logits + 0.01 * positions[:, None].float()

    with torch.no_grad():
        shared = score(tiny_model, inputs, targets, saving=1, adjust=by_place).row_logprobs()
        shared_places, told[:] = sorted(told), []
        whole = score(tiny_model, inputs, targets, saving=0, adjust=by_place).row_logprobs()
        whole_places = sorted(told)
    expected = sorted((r, j) for r, t in enumerate(targets) for j, x in enumerate(t) if x != IGNORE)
    assert shared_places == whole_places == expected
    assert torch.allclose(shared, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("saving", [1, 0])
def test_a_row_asked_twice_is_read_once_and_scored_twice_each_under_its_own_id(tiny_model, tokenizer, saving):
    """The margin scores each answer as it is and as drawn: the copy is not read again, and every
    number (each row's score, through `adjust` by row id, and the gradients) is that of reading it twice."""
    inputs, targets, _ = margin_rows(tokenizer)
    twice = [0, 4, len(inputs) - 1]  # a shared prompt's rows and the row alone, each asked again
    inputs, targets = inputs + [inputs[i] for i in twice], targets + [targets[i] for i in twice]
    copies = {i: [len(inputs) - len(twice) + n] for n, i in enumerate(twice)}

    def drawn_rows_sharper(logits, rows, positions, taught):
        return torch.where((rows >= len(inputs) - len(twice))[:, None], logits * 1.5, logits)

    tiny_model.train()
    results = []
    for given in (copies, None):
        tiny_model.zero_grad(set_to_none=True)
        scored, read = positions_read(tiny_model, lambda: score(tiny_model, inputs, targets, saving=saving,
                                                                adjust=drawn_rows_sharper, copies=given))
        scored.row_logprobs().sum().backward()
        results.append((scored.row_logprobs().detach(), read, [p.grad.clone() for p in tiny_model.parameters()]))
    (once, once_read, once_grads), (again, again_read, again_grads) = results
    assert once_read < again_read
    assert torch.allclose(once, again, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(once[twice], once[-len(twice):])  # the copies were scored their own way
    for new, old in zip(once_grads, again_grads):
        assert torch.allclose(new, old, rtol=1e-4, atol=1e-5)
