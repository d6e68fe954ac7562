"""Lessons at night: asked afresh exactly as a day asks, trained only on their answers, gating the
night on what the companion says back, scheduled by spaced repetition, and the total drift guard.
Tiny real models and real stores; nothing mocked."""

from __future__ import annotations

import json

import pytest
import torch

from companion.day import DaySession
from companion.lessons.cards import answer_turns, ordinary_exchanges, step_cards
from companion.lessons.morning import morning
from companion.lessons.recall import measure
from companion.lessons.schedule import next_schedule
from companion.lessons.text import LessonText, key_words, says, words
from companion.night.pipeline import run_night
from companion.night.report import report_lines
from companion.night.material import step_loss, transcript_examples
from companion.store import Store
from companion.transcript import encode_turns
from companion.history.weights import Weights
from tests.test_night import PROBE, file_checksum, night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOG = LessonText("What is my dog's name?", "Your dog is called Biscuit.")
SISTER = LessonText("What is my sister's name?", "Your sister is called Marta.")


def lesson_settings(home, **values):
    """A quick night with lessons, its guards loose unless a test tightens one."""
    quick = {"night.probe_bound": 1.0, "night.drift_bound": 10.0, "night.lessons.samples": 4,
             "night.lessons.intrusion_lines": 1, "night.lessons.crosstalk_bound": 1.0,
             "night.lessons.intrusion_bound": 1.0, "night.lessons.pull": 0.0, "night.lessons.finish_steps": 0.0}
    quick.update(values)
    return night_settings(home, **quick)


def teach_directly(home, store, tokenizer, lessons, steps=60, lr=3e-3):
    """Make the current weights say `lessons` (trained hard on their fresh-morning cards), saved as a
    new current checkpoint: a companion that has learned them."""
    settings = home.load_settings()
    weights = Weights(home, store)
    model = weights.load_current().model.train()
    block = model.config.block_size
    cards = []
    for x in lessons:
        turns, i = answer_turns(settings, tokenizer, block, x.question, x.answer)
        cards += transcript_examples(tokenizer, turns, [1.0 if j == i else 0.0 for j in range(len(turns))], block,
                                     "lessons")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        loss = step_loss(model, cards, settings)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return weights.save(model.eval(), "nursery", step=steps, parent_id=weights.current().id, make_current=True)


# --- the rules ---------------------------------------------------------------------------------------

def test_a_reply_says_a_lesson_when_every_key_word_is_in_it_whatever_the_case_and_punctuation():
    assert key_words("Your dog is called Biscuit.", "What is my dog called?") == {"biscuit"}
    assert key_words("You work as a nurse.", "What is my job?") == {"work", "nurse"}
    assert key_words("anything", key="the Nurse") == {"nurse"}
    assert says("Oh, BISCUIT's bowl is empty!", {"biscuit"})
    assert not says("A biscuit-less day", {"biscuit", "dog"})
    assert not says("", {"biscuit"}) and not says("biscuit", set())
    assert words("Caf\u00e9 d\u2019Ana's") == ["café", "d", "ana"]


def test_a_lesson_is_asked_in_a_fresh_day_exactly_as_the_day_builds_it(tiny_home, tokenizer):
    settings = tiny_home.load_settings()
    with Store.open(tiny_home.store_path) as store:
        day = DaySession(tiny_home, store, tokenizer, settings, block_size=256)
        day.send(DOG.question)
        turns = morning(settings, tokenizer, 256, [(DOG.question, None)])
        assert encode_turns(tokenizer, turns).ids == day.context_ids()
        assert [t.role for t in turns] == ["inner", "owner", "inner"]  # greeting, question, first indicator


def test_cards_train_only_the_answers_in_several_contexts(tokenizer, tiny_home):
    import random

    settings = tiny_home.load_settings()
    lessons = [DOG, SISTER, LessonText("What is my job?", "You work as a nurse.", ("What do I do?",))]
    cards, ordinary = step_cards(lessons, ordinary_exchanges(settings, most=50), settings, tokenizer, 256,
                                 random.Random(0))
    answers = {x.answer for x in lessons}
    lengths = set()
    for card in cards:
        taught = tokenizer.decode([t for t in card.targets if t != -100])
        assert any(a in taught for a in answers) and "What is" not in taught
        lengths.add(len(card))
    assert len(cards) == 3 + 3 + 1 and len(lengths) > 2  # morning, after chat, a mini-day: not one template
    assert len(ordinary) == 3 and all(card.source == "ordinary" for card in ordinary)


def test_spaced_repetition_grows_the_rest_of_a_learned_lesson_and_brings_a_miss_back_next_night():
    assert next_schedule(None, False, 5) == (1, 6)
    assert next_schedule(None, True, 5, streak=1) == (1, 6)  # said back once: taught once more
    assert next_schedule(1, True, 6, streak=2) == (2, 8)  # twice in a row: it rests
    assert next_schedule(2, True, 7) == (4, 11)
    assert next_schedule(4, False, 11) == (1, 12)
    assert next_schedule(4, True, 9, taught=False) is None  # resting and still said: the plan stands
    assert next_schedule(64, True, 100) == (64, 164)


# --- the night ---------------------------------------------------------------------------------------

def test_recall_counts_a_taught_lesson_and_cross_talk_on_fixed_draws(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        teach_directly(tiny_home, store, tokenizer, [DOG])
        model = Weights(tiny_home, store).load_current().model
    settings = tiny_home.load_settings()
    first = measure(model, tokenizer, settings, [DOG, SISTER], 4)
    again = measure(model, tokenizer, settings, [DOG, SISTER], 4)
    assert [r.total for r in first.lessons] == [r.total for r in again.lessons]  # fixed seeds
    assert first.of(DOG).total == 4 and first.of(SISTER).total == 0
    assert first.crosstalk >= 3  # asked about the sister, it names the dog: the template, not the question


def test_spaced_repetition_schedules_a_learned_lesson_after_its_interval_and_a_failed_one_the_next_night(
        tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        teach_directly(tiny_home, store, tokenizer, [DOG])
        dog = store.add_lesson(DOG.question, DOG.answer)
        sister = store.add_lesson(SISTER.question, SISTER.answer)
        day, _ = script_day(tiny_home, store, tokenizer)  # its correction is a third lesson
        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 2, "night.lessons.learning_rate": 1e-5})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE)
        assert report.status == "accepted", report.reason

        said = {row["id"]: row["after"] for row in report.lessons["lessons"]}
        assert said[dog.id] == 4 and said[sister.id] == 0
        assert store.get_lesson(dog.id).status == "learned" and store.get_lesson(sister.id).status == "learning"
        # said back once: taught once more before it rests (consolidation); the miss is back too
        assert {dog.id, sister.id} <= {x.id for x in store.due_lessons(day.number + 1)}

        day2, _ = script_day(tiny_home, store, tokenizer)
        report = run_night(tiny_home, store, day2.id, settings, "cpu", probe_windows=PROBE)
        assert report.status == "accepted", report.reason
        assert store.get_lesson(dog.id).schedule.due_day == day2.number + 2  # twice in a row: rests a night
        assert sister.id in {x.id for x in store.due_lessons(day2.number + 1)}  # a miss: back the next night
        assert dog.id not in {x.id for x in store.due_lessons(day2.number + 1)}
        assert dog.id in {x.id for x in store.due_lessons(day2.number + 2)}
        text = "\n".join(report_lines(report))
        assert "What it says back" in text and "\u201cWhat is my dog's name?\u201d" in text and "0 -> 4 of 4" not in text


def test_a_night_that_makes_a_learned_lesson_unsaid_is_rolled_back_with_the_weights_byte_identical(
        tiny_home, tokenizer):
    """Sabotage: the night's last step lands on weights that never learned the lesson (the birth
    blocks); its probe is within bounds, but the learned lesson is no longer said: rolled back."""
    from companion.lessons.teaching import freeze_embeddings
    from companion.night.optimizer import make_optimizer

    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        birth_model = weights.load(weights.current()).model
        pre = teach_directly(tiny_home, store, tokenizer, [DOG])
        learned = LessonText(DOG.question, DOG.answer, learned=True)
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 3})
        freeze_embeddings(birth_model)
        unlearned = [p for g in make_optimizer(birth_model, 1e-3).param_groups for p in g["params"]]

        def forget(step, optimizer, lr):
            if step == 2:
                with torch.no_grad():
                    mine = [p for g in optimizer.param_groups for p in g["params"]]
                    for p, q in zip(mine, unlearned, strict=True):
                        p.copy_(q)

        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[SISTER, learned],
                           before_step=forget)

        assert report.status == "rolled_back"
        assert "learned lesson must stay learned" in report.reason and "Biscuit" in report.reason
        assert Weights(tiny_home, store).current().id == pre.id
        assert report.checksum_after == report.checksum_before == pre.checksum == file_checksum(tiny_home, store, pre)
        assert store.nights()[-1].status == "rolled_back"


def test_the_drift_guard_rolls_back_a_night_within_its_own_bound_but_past_the_total(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        birth = weights.current()
        model = weights.load(birth).model
        with torch.no_grad():  # nights that added up: the language a good deal worse than at birth
            model.embed.weight.mul_(4.0)
        drifted = weights.save(model, "nursery", step=1, parent_id=birth.id, make_current=True)
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = night_settings(tiny_home, **{"night.learning_rate": 1e-7, "night.probe_bound": 0.03,
                                                "night.drift_bound": 0.05})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[])

        after, before = report.probe_after["ppl"], report.probe_before["ppl"]
        assert after <= before * 1.03  # within the night's own bound
        assert report.status == "rolled_back" and "since the anchor" in report.reason
        assert report.anchor["checkpoint_id"] == birth.id and report.anchor["after"] > report.anchor["ppl"] * 1.05
        assert weights.current().id == drifted.id
        assert report.checksum_after == drifted.checksum == file_checksum(tiny_home, store, drifted)

        # The owner re-anchors on the weights as they are now: the same night is accepted.
        report = run_night(tiny_home, store, day.id, settings.with_value("night.anchor", drifted.id), "cpu",
                           probe_windows=PROBE, lessons=[])
        assert report.status == "accepted", report.reason
        assert report.anchor["checkpoint_id"] == drifted.id


def test_a_lesson_night_freezes_the_embeddings_and_pulls_back_toward_the_anchor(tiny_home, tokenizer):
    """With the pull at 1.0 a one-step night (its one step at the night's mean learning rate) ends back
    on the anchor: the night's weights are the anchor's."""
    with Store.open(tiny_home.store_path) as store:
        birth = Weights(tiny_home, store).current()
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = lesson_settings(tiny_home, **{"night.lessons.pull": 1.0, "night.lessons.steps": 1})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[DOG])
        assert report.status == "accepted" and report.steps == 1
        assert report.checksum_after == birth.checksum

        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 3})  # no pull: it moves, embeddings kept
        before = Weights(tiny_home, store).load_current().model.embed.weight.clone()
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[DOG])
        assert report.status == "accepted" and report.checksum_after != birth.checksum
        assert torch.equal(Weights(tiny_home, store).load_current().model.embed.weight, before)


def test_a_night_with_no_lesson_due_keeps_the_resting_ones_with_the_lessons_settings(tiny_home, tokenizer):
    """Run as an ordinary night (its own steps at the night's rate, the embeddings free), a night with
    only learned lessons resting let five facts fade (true rates .97-1.0 -> .90-.99); it keeps them
    instead: their cards and margin beside the night's material, the lessons' learning rate, the
    embeddings frozen, and the consolidating share of the lessons' steps."""
    learned = LessonText(DOG.question, DOG.answer, learned=True)
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 4, "night.lessons.consolidation_steps": 0.5})
        before = Weights(tiny_home, store).load_current().model.embed.weight.clone()
        parts: list[int] = []

        def count(step: int, loss: torch.Tensor) -> torch.Tensor:
            parts.append(step)
            return loss

        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[learned],
                           loss_hook=count)
        assert report.status == "accepted", report.reason
        assert report.steps == 2 and report.learning_rate == settings.night.lessons.learning_rate
        assert all(parts.count(step) > 1 for step in range(report.steps))  # the material and the lesson's parts
        assert torch.equal(Weights(tiny_home, store).load_current().model.embed.weight, before)
        assert [row["taught"] for row in report.lessons["lessons"]] == [False]  # kept, not taught: its plan stands


def test_the_pull_toward_the_anchor_follows_the_learning_rate_and_keeps_its_mean():
    """A constant pull under a decaying learning rate made a night's last steps unlearn what it
    taught; taken in proportion to the learning rate, the same total pull weighs on the steps that
    move the weights, and the last steps, at the schedule's floor, take back a fifth of the mean."""
    from companion.night.optimizer import lr_at, pull_share
    from companion.night.report import LR_FLOOR

    schedule = [lr_at((i + 1) / 70, 1e-4, 0.1, LR_FLOOR) for i in range(70)]
    mean = sum(schedule) / len(schedule)
    shares = [pull_share(0.01, lr, mean) for lr in schedule]
    assert sum(shares) / len(shares) == pytest.approx(0.01)
    assert shares[-1] == pytest.approx(0.01 * LR_FLOOR / (mean / 1e-4)) and shares[-1] < 0.002
    assert max(shares) == pytest.approx(0.01 * 1e-4 / mean) and max(shares) > 0.018
    assert pull_share(0.5, 1e-4, 1e-5) == 1.0  # never past the anchor


# --- the bench's input -------------------------------------------------------------------------------

@pytest.mark.parametrize("content, said", [
    ("[{\"question\": \"Q?\", \"answer\": \"A.\"", "not valid JSON (line 1"),
    ("{}", "must be a non-empty JSON list"),
    ('[{"question": "What is my job?", "answer": "Nurse.", "key": "nurse"}, {"question": "Where?", "answer": "Here."}]',
     "fact 2 ('Where?') has no 'key'"),
    ('[{"question": "Q?", "answer": "", "key": "k"}]', "fact 1 ('Q?'): 'answer' must be non-empty text"),
    ('[{"question": "Q?", "answer": "A.", "key": "k", "paraphrases": "Q2?"}]', "'paraphrases' must be a list"),
])
def test_the_bench_names_the_file_and_the_entry_of_a_bad_facts_file(tmp_path, capsys, content, said):
    from bench.lessons import main

    facts = tmp_path / "facts.json"
    facts.write_text(content, encoding="utf-8")
    assert main(["--home", str(tmp_path / "nobody"), "--facts", str(facts)]) == 2
    err = capsys.readouterr().err
    assert str(facts) in err and said in err and "Traceback" not in err


def test_the_bench_reads_a_good_facts_file(tmp_path):
    from bench.lessons import read_facts

    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps([{"question": "What is my job? ", "answer": "You work as a nurse.", "key": "nurse",
                                  "paraphrases": ["What do I do?"]}]), encoding="utf-8")
    assert read_facts(facts) == [{"question": "What is my job?", "answer": "You work as a nurse.", "key": "nurse",
                                  "paraphrases": ["What do I do?"]}]


def test_the_bench_adds_up_each_phase_of_a_night_from_its_events(capsys):
    """Recalling runs before and after training; its two stretches add up, and the last phase lasts
    until the night's end."""
    from bench.lessons import Progress
    from companion.night.report import NightEvent

    progress = Progress()
    for phase, at in [("dreaming", 0.0), ("probing", 2.0), ("recalling", 5.0), ("training", 6.0),
                      ("recalling", 16.0), ("saving", 18.5)]:
        progress(NightEvent("phase", phase=phase, elapsed_s=at))
    progress(NightEvent("step", phase="training", step=10, total=10, loss=1.5, elapsed_s=15.0))
    assert progress.phases(19.0) == {"dreaming": 2.0, "probing": 3.0, "recalling": 3.5, "training": 10.0,
                                     "saving": 0.5}
    assert "step 10/10 loss 1.500" in capsys.readouterr().err


def test_a_lesson_night_on_a_grouped_query_model_as_open_bases_are_keeps_what_it_says_and_its_shape(
        tmp_path, tokenizer):
    """Imported bases (SmolLM2: 9 query heads, 3 key/value heads) have fewer key/value heads than
    query heads: the night's cards, recall draws, training and checks run on such a model, a learned
    lesson is still said back after it, and the saved checkpoint keeps the grouped shape."""
    from companion.home import Home
    from companion.model.transformer import Transformer
    from tests.conftest import tiny_config

    home = Home.create(tmp_path / "companions", "Sol", owner="Trey", preset="seedling")
    tokenizer.save(home.tokenizer_path)
    torch.manual_seed(0)
    config = tiny_config(vocab_size=tokenizer.vocab_size, block_size=256, n_kv_head=2)
    assert config.n_head == 4 and config.kv_heads == 2
    with Store.open(home.store_path) as store:
        Weights(home, store).save(Transformer(config), "import", step=0)
        pre = teach_directly(home, store, tokenizer, [DOG])
        day, _ = script_day(home, store, tokenizer)
        settings = lesson_settings(home, **{"night.lessons.steps": 4})
        learned = LessonText(DOG.question, DOG.answer, learned=True)
        report = run_night(home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[learned, SISTER])
        assert report.status == "accepted", report.reason
        said = {row["question"]: row for row in report.lessons["lessons"]}
        assert said[DOG.question]["before"] == said[DOG.question]["after"] == said[DOG.question]["asked"] > 0
        current = Weights(home, store).current()
        assert current.id != pre.id and current.checksum != pre.checksum
        model = Weights(home, store).load_current().model
    assert model.config.kv_heads == 2
    assert model.blocks[0].attn.qkv.weight.shape[0] == 64 + 2 * 2 * 16  # q, then k and v for 2 heads of 16


def test_a_learned_lesson_said_once_less_in_the_draws_rolls_a_night_back_only_when_its_exact_probability_fell_too(
        tiny_home, tokenizer):
    """Ten draws of a lesson said at a true rate of .91 show 9 before and 8 after about one night in
    six: the rollback asks the exact probability of the answer drawn whole to confirm the fall."""
    from companion.lessons.recall import LessonRecall, Recall
    from companion.lessons.teaching import DRAWN_SLACK, Teaching

    teaching = Teaching([DOG], [DOG], tiny_home.load_settings(), tokenizer, 256, seed=0)

    def said(hits: int, drawn: float | None) -> Recall:
        return Recall([LessonRecall(DOG, {DOG.question: hits}, samples=10, drawn=drawn)])

    assert teaching.verdict(said(9, 0.91), said(8, 0.91 - DRAWN_SLACK / 2)) is None  # the draws' noise
    assert "must stay learned" in teaching.verdict(said(9, 0.91), said(8, 0.80))  # a real fall
    assert "must stay learned" in teaching.verdict(said(9, None), said(8, None))  # no exact reading: the draws
    assert "must stay learned" in teaching.verdict(said(9, 0.2), said(8, 0.2))  # said in other words: the draws
    assert teaching.verdict(said(9, 0.91), said(9, 0.5)) is None  # still said back in the draws


def test_the_nights_recall_reads_each_lessons_exact_probability_in_its_weakest_phrasing(tiny_model, tokenizer, tiny_home):
    from companion.lessons.margin import drawn_whole
    from companion.lessons.teaching import Teaching

    settings = tiny_home.load_settings()
    asked = LessonText(DOG.question, DOG.answer, phrasings=("Do you remember my dog?",))
    teaching = Teaching([asked], [asked], settings, tokenizer, 256, seed=0)
    row = teaching.recall(tiny_model).of(asked)
    each = drawn_whole(tiny_model, tokenizer, settings, 256,
                       [LessonText(q, DOG.answer) for q in asked.asked_as])
    assert row.drawn == min(each)


def test_a_night_whose_lessons_are_already_said_looks_for_leaks_before_its_first_step(tiny_home, tokenizer):
    """Leaks come back: a second night held "My dad is called Marta." down only from its look two
    thirds in, and 4.4% of replies to ordinary lines carried a taught word after it. When a lesson is
    already said before the night, the night also looks before its first step, so the leaks it finds
    are held down for all of it."""
    from companion.lessons.cards import ordinary_exchanges

    learned = LessonText(DOG.question, DOG.answer, learned=True)
    with Store.open(tiny_home.store_path) as store:
        borrows = [LessonText(line, "My mom is called Biscuit.")
                   for line, _ in ordinary_exchanges(tiny_home.load_settings(), most=3)]
        teach_directly(tiny_home, store, tokenizer, [DOG, *borrows])  # it says the answer, and borrows its name
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 3})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[learned])
    assert any(note.startswith("after 0 steps, taught words said to ordinary lines") for note in report.notes), report.notes
