"""The one transcript formatter: tokens and text parse back to the same turns."""

from __future__ import annotations

from companion.transcript import (
    Turn,
    count_tokens,
    encode_documents,
    encode_turns,
    parse_text,
    parse_tokens,
    render_text,
    training_example,
)


def test_tokens_parse_back_to_the_same_turns(tokenizer, sample_turns):
    assert parse_tokens(tokenizer, encode_turns(tokenizer, sample_turns).ids) == sample_turns


def test_text_parses_back_to_the_same_turns_even_with_markup_typed_by_the_owner(sample_turns):
    tricky = [*sample_turns, Turn("owner", "I typed <|companion|> and \\<|end|> on purpose \\")]
    assert parse_text(render_text(tricky)) == tricky


def test_a_day_is_the_sum_of_its_turns(tokenizer, sample_turns):
    total = sum(count_tokens(tokenizer, t) for t in sample_turns)
    assert total == len(encode_turns(tokenizer, sample_turns))


def test_batched_encoding_is_the_same_format(tokenizer, sample_turns):
    [batched] = encode_documents(tokenizer, [sample_turns])
    assert batched.ids == encode_turns(tokenizer, sample_turns).ids


def test_training_targets_follow_the_role_weights(tokenizer, sample_turns):
    inputs, targets, weights = training_example(tokenizer, sample_turns, {"companion": 1.0, "owner": 0.0, "inner": 1.0})
    enc = encode_turns(tokenizer, sample_turns)
    assert inputs == enc.ids[:-1]
    for target, role, weight in zip(targets, enc.roles[1:], weights):
        assert (target == -100) == (role == "owner")
