"""What a night learns from: preferences read from the store, the losses at the reference, the dream's budget."""

from __future__ import annotations

import math

import pytest
import torch

from companion.night.dream import day_context, dream_lines, dream_with_model
from companion.night.material import Example, draw, plan_steps
from companion.night.preferences import collect_preferences, dpo_loss, kto_loss, set_references
from companion.store import Store
from companion.transcript import Turn
from companion.history.weights import Weights
from tests.test_night import night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_choices_become_pairs_and_ratings_and_tags_unpaired_examples(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, taught = script_day(tiny_home, store, tokenizer)
        prefs = collect_preferences(tokenizer, store, day.id, 256)
        model = Weights(tiny_home, store).load_current().model

    assert [r.text for r in prefs.taught] == taught
    assert [r.kind for r in prefs.taught] == ["correction", "pick"]
    by_chosen = {}
    for pair in prefs.pairs:
        by_chosen.setdefault(pair.chosen.text, []).append(pair.rejected.text)
    # The corrected candidate is passed over by its correction; a picked one is not paired with itself.
    assert sorted(by_chosen["Your name is Trey."]) == ["A cat.", "Blue sky.", "I do not know."]
    assert sorted(by_chosen["I love the sea."]) == ["Nothing.", "Rocks and mud."]
    verdicts = sorted((u.reply.text, u.desirable) for u in prefs.unpaired)
    assert verdicts == [("A cat.", False), ("He seems cheerful today.", True), ("I love the sea.", True),
                        ("Rocks and mud.", False)]
    # Every reply is scored given the day before it: the context precedes the reply's targets.
    reply = prefs.taught[0]
    first_target = next(i for i, t in enumerate(reply.targets) if t != -100)
    assert reply.inputs[first_target] == tokenizer.role_ids["companion"] and first_target > 10

    # At the reference weights DPO is log 2 and KTO is 1/2, whatever the examples.
    set_references(model, prefs)
    with torch.no_grad():
        dpo, kto = float(dpo_loss(model, prefs.pairs, 0.1)), float(kto_loss(model, prefs.unpaired, 0.1))
    assert dpo == pytest.approx(math.log(2), abs=1e-4)
    assert kto == pytest.approx(0.5, abs=1e-4)


def test_the_dream_spends_the_part_of_the_block_the_day_left_free(tiny_home, tokenizer):
    settings = tiny_home.load_settings()
    day = [Turn("inner", settings.greeting_line()), Turn("owner", "Hello!"), Turn("companion", "Hi.")]
    with Store.open(tiny_home.store_path) as store:
        model = Weights(tiny_home, store).load_current().model
    context = day_context(tokenizer, day, settings.goodnight_line(), model.config.block_size)
    assert context[-1] == tokenizer.end_id  # the good-night line was added and closed
    dream = dream_with_model(model, tokenizer, context, settings, seed=3)
    assert dream.budget == model.config.block_size - len(context)
    assert dream.budget - 3 < dream.used <= dream.budget  # it goes on until the block is full
    assert dream.turns and dream.turns[0].role == "inner"
    assert dream_lines(dream.text) == dream.turns


def test_small_sources_repeat_up_to_their_budget_and_steps_fill_the_batch(tiny_home):
    import random

    one = Example([1] * 100, [1] * 100, [1.0] * 100, "day")
    assert len(draw([one], 1000, random.Random(0), passes=16)) == 10  # the budget binds
    assert len(draw([one], 10_000, random.Random(0), passes=16)) == 16  # the passes bind
    assert draw([one], 0, random.Random(0), passes=16) == []

    from companion.night.material import Material

    material = Material()
    material.items["day"] = [one]
    material.items["replay"] = [Example([2] * 300, [2] * 300, [1.0] * 300, "replay") for _ in range(10)]
    settings = night_settings(tiny_home, **{"night.batch_tokens": 1000, "night.day.tokens": 800,
                                              "night.replay.tokens": 5000})
    steps = plan_steps(material, settings, seed=0)
    assert sum(len(x) for batch in steps for x in batch) == 800 + 3000
    assert all(sum(len(x) for x in batch) <= 1000 for batch in steps)
    fixed = plan_steps(material, settings.with_value("night.steps", 9), seed=0)
    assert len(fixed) == 9
