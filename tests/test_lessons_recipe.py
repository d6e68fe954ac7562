"""The lessons' recipe: other ways to ask made from the question's own subject, trained in the cards;
a night that only consolidates takes fewer steps; a lesson rests only once said back in every draw.
Tiny real models and real stores; nothing mocked."""

from __future__ import annotations

import random

import pytest

from companion.lessons.asking import askings, subject
from companion.lessons.cards import CardMix, ordinary_exchanges, step_cards
from companion.lessons.text import LessonText
from companion.night.pipeline import run_night
from companion.history.weights import Weights
from companion.store import Store
from tests.test_lessons_night import DOG, SISTER, lesson_settings, teach_directly
from tests.test_night import PROBE, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_what_is_my_question_is_also_asked_about_its_subject_in_other_frames():
    assert subject("What is my favourite colour?") == ("my", "favourite colour", ("colour",))
    made = askings("What is my favourite colour?")
    assert {"What's my favourite colour?", "Tell me my favourite colour.", "Do you remember my favourite colour?",
            "Favourite colour?", "What about my colour?"} <= set(made)
    assert "What is my favourite colour?" not in made and len(made) == len(set(made))
    assert "What about my dog?" in askings("What is my dog's name?")  # the head, without "name"
    assert "Do you know your name?" not in askings("What is your name?")  # no content word: nothing made
    assert "Tell me your job." in askings("What is your job?")  # the question's own possessive is kept


@pytest.mark.parametrize("question", ["Where does my sister live?", "How old am I?", "Hi", "What is my?", ""])
def test_a_question_of_another_shape_gets_no_made_phrasings_so_its_meaning_is_never_changed(question):
    assert askings(question) == ()


def test_the_cards_ask_with_the_owners_wording_and_with_the_made_phrasings(tokenizer, tiny_home):
    settings = tiny_home.load_settings()
    exchanges = ordinary_exchanges(settings, most=50)
    rng = random.Random(0)
    asked: list[str] = []
    for _ in range(8):
        cards, _ = step_cards([DOG, SISTER], exchanges, settings, tokenizer, 256, rng,
                              CardMix(after_chat=0, mini_day=0, own_day=0, ordinary=0))
        asked += [tokenizer.decode(card.inputs) for card in cards]
    made = set(askings(DOG.question)) | set(askings(SISTER.question))
    assert any(DOG.question in text or SISTER.question in text for text in asked)
    assert any(any(m in text for m in made) for text in asked)


def test_a_night_whose_lessons_were_all_said_back_before_it_takes_fewer_steps_and_one_that_lags_gets_more_cards(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        teach_directly(tiny_home, store, tokenizer, [DOG])
        day, _ = script_day(tiny_home, store, tokenizer)
        settings = lesson_settings(tiny_home, **{"night.lessons.steps": 4, "night.lessons.learning_rate": 1e-6,
                                                 "night.lessons.consolidation_steps": 0.5})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[DOG])
        assert report.status == "accepted", report.reason
        assert report.lessons["lessons"][0]["before"] == 4 and report.steps == 2  # said back: consolidating
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[DOG, SISTER])
        assert report.steps == 4  # the sister is not said back yet: the whole night
        # two thirds in, the night looks at what is said back and gives the lagging lesson extra cards
        assert f"after 3 steps, extra cards for: \u201c{SISTER.answer}\u201d" in report.notes


def said_sometimes(home, store, tokenizer, lesson=DOG) -> float:
    """Teach `lesson` directly, a little at a time, until its answer is drawn whole in at least 30% of
    the owner's draws (not yet 95%); that probability."""
    from companion.lessons.margin import drawn_whole

    settings = home.load_settings()
    p, rounds = 0.0, 0
    while p < 0.3 and rounds < 12:
        teach_directly(home, store, tokenizer, [lesson], steps=24 if rounds == 0 else 4)
        model = Weights(home, store).load_current().model.eval()
        p, rounds = drawn_whole(model, tokenizer, settings, model.config.block_size, [lesson])[0], rounds + 1
    assert 0.3 <= p < 0.95, p
    return p


def finishing_night(home, tokenizer, *, near: bool, steps: int, learning_rate: float, finish_steps: float):
    """One lesson night on the dog (said sometimes before it when `near`), every planned step run
    (no consolidation), with `finish_steps` to spare; its report, accepted."""
    return night_after(home, tokenizer, said_sometimes if near else None,
                       **{"night.lessons.steps": steps, "night.lessons.learning_rate": learning_rate,
                          "night.lessons.consolidation_steps": 1.0, "night.lessons.finish_steps": finish_steps})


def night_after(home, tokenizer, prepare, **values):
    """A lesson night on the dog after `prepare(home, store, tokenizer)` (when given): 4 lesson steps
    (2 when it consolidates), up to 4 finishing steps, unless `values` say otherwise; its report,
    accepted."""
    with Store.open(home.store_path) as store:
        if prepare is not None:
            prepare(home, store, tokenizer)
        day, _ = script_day(home, store, tokenizer)
        settings = lesson_settings(home, **{"night.lessons.steps": 4, "night.lessons.learning_rate": 1e-6,
                                            "night.lessons.consolidation_steps": 0.5,
                                            "night.lessons.finish_steps": 1.0, **values})
        report = run_night(home, store, day.id, settings, "cpu", probe_windows=PROBE, lessons=[DOG])
    assert report.status == "accepted", report.reason
    return report


def test_a_night_goes_on_while_a_near_answer_is_not_yet_drawn_whole_but_no_further_than_its_share(tiny_home, tokenizer):
    report = finishing_night(tiny_home, tokenizer, near=True, steps=4, learning_rate=1e-6, finish_steps=0.75)
    assert report.steps == report.total_steps == 4 + 3  # the dog is not always said yet: three more, no further
    note = next(n for n in report.notes if n.startswith("after 4 steps, 3 more for:"))
    assert f"\u201c{DOG.answer}\u201d (" in note and "% drawn whole)" in note


def test_a_night_spends_no_extra_steps_on_an_answer_it_has_not_brought_near(tiny_home, tokenizer):
    """A first night on new weights: the dog's answer is drawn whole almost never, and a few more steps
    at a lower rate would not change that; it comes back next night."""
    report = finishing_night(tiny_home, tokenizer, near=False, steps=4, learning_rate=1e-6, finish_steps=2.0)
    assert report.steps == 4 and not any("more for:" in n for n in report.notes)


def test_a_finish_line_that_brings_no_answer_nearer_ends_after_one_more_look(tiny_home, tokenizer):
    report = finishing_night(tiny_home, tokenizer, near=True, steps=10, learning_rate=1e-7, finish_steps=2.0)
    assert report.steps == 20  # ten planned, ten more, then no nearer: not the thirty it could have had
    assert "after 10 steps, 10 more for:" in " ".join(report.notes)
    assert "after 20 steps, no nearer: the night ends there" in report.notes


def test_a_night_whose_answers_are_already_drawn_whole_ends_at_its_planned_steps(tiny_home, tokenizer):
    report = night_after(tiny_home, tokenizer, lambda home, store, tok: teach_directly(home, store, tok, [DOG]))
    assert report.steps == 2 and not any("more for:" in n for n in report.notes)  # a consolidating night's 2


def test_a_consolidating_night_may_finish_as_far_as_a_full_lesson_night(tiny_home, tokenizer):
    """Its lessons were all said back before it (their key word in every draw), so it plans half the
    steps; but an answer not yet drawn whole word for word gets the same finishing steps as on a
    first night (measured, two second nights ended their 10 extra steps with the sister at 85%
    drawn whole and still climbing)."""
    report = night_after(tiny_home, tokenizer, said_sometimes)
    row = report.lessons["lessons"][0]
    assert row["before"] == row["asked"]  # said back before the night: it consolidates
    assert "after 2 steps, 4 more for:" in " ".join(report.notes)  # 2 planned, then 4 (of `steps`), not 2
    assert report.steps == 6


def test_drawn_whole_is_how_often_the_owners_sampler_says_the_answer_word_for_word(tiny_home, tokenizer):
    """The night's finish line is exact, not sampled: it agrees with the share of real draws (the
    engine's sampler, the owner's settings) that say the answer and stop."""
    from companion.lessons.margin import drawn_whole
    from companion.lessons.recall import ask

    settings = tiny_home.load_settings()
    with Store.open(tiny_home.store_path) as store:
        said_sometimes(tiny_home, store, tokenizer)  # the check means something only between the ends
        model = Weights(tiny_home, store).load_current().model.eval()
    p = drawn_whole(model, tokenizer, settings, model.config.block_size, [DOG])[0]
    replies = ask(model, tokenizer, settings, DOG.question, 400, seed=5)
    share = sum(r.strip() == DOG.answer for r in replies) / len(replies)
    assert abs(share - p) < 4 * (p * (1 - p) / len(replies)) ** 0.5 + 0.01, (share, p)


def test_a_lesson_said_back_in_most_but_not_every_draw_stays_due_instead_of_resting(tiny_home, tokenizer):
    """Two accepted nights that said it back in 9 of 10 draws (learned) keep it due every night; two
    that said it back in every draw let it rest: only those count toward the resting streak."""
    from companion.lessons.keeping import write_lessons
    from companion.lessons.recall import LessonRecall, Recall

    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        dog = store.add_lesson(DOG.question, DOG.answer)
        text = LessonText(DOG.question, DOG.answer, id=dog.id)

        def night(hits: int, samples: int = 10) -> None:
            night_id = store.start_night(day.id).id
            write_lessons(store, night_id, day.number, [text],
                          Recall([LessonRecall(text, {DOG.question: hits}, samples=samples)]), accepted=True)
            store.finish_night(night_id, "accepted")

        night(9)  # said back (9 of 10 is learned) but not in every draw
        night(9)
        assert store.get_lesson(dog.id).status == "learned"
        assert store.get_lesson(dog.id).schedule.interval_nights == 1  # still taught every night
        night(10)
        night(10)
        assert store.get_lesson(dog.id).schedule.interval_nights == 2  # every draw, twice: it rests


def test_the_lesson_said_back_least_before_the_night_gets_more_cards_than_the_others(tokenizer, tiny_home):
    settings = tiny_home.load_settings()
    exchanges = ordinary_exchanges(settings, most=50)
    rng = random.Random(1)
    counts = {DOG.answer: 0, SISTER.answer: 0}
    for _ in range(10):
        cards, _ = step_cards([DOG, SISTER], exchanges, settings, tokenizer, 256, rng,
                              CardMix(morning=3, mini_day=0, own_day=0, ordinary=0), weak=[SISTER])
        for card in cards:
            taught = tokenizer.decode([t for t in card.targets if t != -100])
            for answer in counts:
                counts[answer] += answer in taught
    assert counts[SISTER.answer] >= 10 * 2 and counts[SISTER.answer] > counts[DOG.answer] + 10


def test_only_a_lesson_that_lags_behind_tonights_others_is_focused_on():
    from companion.lessons.recall import LessonRecall, Recall
    from companion.lessons.teaching import Teaching

    teaching = Teaching.__new__(Teaching)  # the focus rule alone: no model, no cards
    teaching.taught, teaching.weak, teaching.misses = [DOG, SISTER], [], {}
    teaching.focus(Recall([LessonRecall(DOG, {DOG.question: 0}, samples=10),
                           LessonRecall(SISTER, {SISTER.question: 0}, samples=10)]))
    assert teaching.weak == []  # a first night: all alike, no extra cards
    teaching.focus(Recall([LessonRecall(DOG, {DOG.question: 10}, samples=10),
                           LessonRecall(SISTER, {SISTER.question: 6}, samples=10)]))
    assert teaching.weak == [(0.6, SISTER)]


def test_the_margin_keeps_an_answer_to_its_question_and_out_of_ordinary_chat(tiny_model, tokenizer, tiny_home):
    """Intrusion: the answer after an ordinary line is one of the margin's rejected rows, so steps on the
    margin alone widen the gap between the answer after its own question and after an ordinary line."""
    import torch

    from companion.lessons.margin import answer_logprobs, margin_loss
    from companion.lessons.morning import morning
    from companion.transcript import Turn, encode_turn, encode_turns, reply_prompt

    settings = tiny_home.load_settings()
    line = "How was the weather on your walk today?"
    ordinary = [(line, "It rained a little.")]

    def prompt(asked: str) -> list[int]:
        return reply_prompt(tokenizer, encode_turns(tokenizer, morning(settings, tokenizer, 256, [(asked, None)])).ids)

    answer = encode_turn(tokenizer, Turn("companion", DOG.answer))[1:]

    def likelihoods() -> tuple[float, float]:
        with torch.no_grad():
            own, elsewhere = answer_logprobs(tiny_model, [prompt(DOG.question), prompt(line)], [answer, answer])
        return float(own), float(elsewhere)

    own_before, elsewhere_before = likelihoods()
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.05)
    for seed in range(10):
        rng = random.Random(seed)
        loss = margin_loss(tiny_model, [DOG, SISTER], settings, tokenizer, 256, rng, margin=5.0, others=0,
                           ordinary=ordinary, neutral=2, sure=None)
        assert loss is not None and float(loss.detach()) > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    own_after, elsewhere_after = likelihoods()
    assert own_after - elsewhere_after > own_before - elsewhere_before


def test_the_margin_asks_that_an_answer_be_drawn_whole_as_the_owner_samples(tiny_model, tokenizer, tiny_home):
    """Recall is sampled: an answer is said back 19 times in 20 only if the sampler, with the owner's
    penalty, temperature and top-k, draws it whole that often. With no rival and no ordinary line the
    margin is that shortfall, and steps on it alone bring the answer closer to being drawn whole."""
    import torch

    from companion.lessons.margin import drawn_shortfall, margin_loss
    from companion.lessons.morning import morning
    from companion.model.loss import score, shifted
    from companion.transcript import Turn, encode_turn, encode_turns, reply_prompt

    settings = tiny_home.load_settings()
    prompt = reply_prompt(tokenizer, encode_turns(tokenizer, morning(settings, tokenizer, 256, [(DOG.question, None)])).ids)
    answer = encode_turn(tokenizer, Turn("companion", DOG.answer))[1:]

    def shortfall() -> float:
        with torch.no_grad():
            return float(drawn_shortfall(tiny_model, tokenizer, settings, [prompt], [answer])[0])

    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.05)
    for _ in range(20):  # first taught as the cards teach it: the answer's mean loss
        x, t = shifted(prompt + answer, context=len(prompt))
        loss = score(tiny_model, [x], [t]).loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    before = shortfall()
    assert before > 0  # not yet drawn whole in 95 of 100 samples
    for seed in range(10):
        loss = margin_loss(tiny_model, [DOG], settings, tokenizer, 256, random.Random(seed), others=0)
        assert loss is not None and float(loss.detach()) > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert shortfall() < before * 0.8


def test_a_near_miss_the_companion_said_is_held_where_it_leaves_the_answer(tiny_model, tokenizer, tiny_home):
    """The replies that missed a lesson said back some of the time are kept by the recall and become the
    margin's rivals at the token where they part from the answer: steps on the margin alone make the
    answer's next token there likelier than the miss's, and the whole answer likelier than the miss."""
    import torch

    from companion.lessons.margin import answer_logprobs, branch, margin_loss
    from companion.lessons.morning import morning
    from companion.lessons.recall import MISSES, measure
    from companion.transcript import Turn, encode_turn, encode_turns, reply_prompt

    settings = tiny_home.load_settings()
    recall = measure(tiny_model, tokenizer, settings, [DOG], samples=6)
    kept = recall.of(DOG).misses
    assert kept and len(kept) == len(set(kept)) <= MISSES  # an untrained model misses: distinct misses kept
    assert not any("biscuit" in m.lower() for m in kept)

    miss = "Your dog is a good boy."
    prompt = reply_prompt(tokenizer, encode_turns(tokenizer, morning(settings, tokenizer, 256, [(DOG.question, None)])).ids)
    own, wrong = (encode_turn(tokenizer, Turn("companion", text))[1:] for text in (DOG.answer, miss))
    at = branch(own, wrong)
    assert at is not None and own[:at] == wrong[:at] and at >= 3  # "Your dog is" shared
    assert branch(own, own) is None

    def gaps() -> tuple[float, float]:
        with torch.no_grad():
            a, b = answer_logprobs(tiny_model, [prompt, prompt], [own, wrong], mean=False)
            x, y = answer_logprobs(tiny_model, [prompt + own[:at]] * 2, [[own[at]], [wrong[at]]], mean=False)
        return float(x - y), float(a - b)

    token_before, whole_before = gaps()
    optimizer = torch.optim.SGD(tiny_model.parameters(), lr=0.05)
    for seed in range(10):
        loss = margin_loss(tiny_model, [DOG], settings, tokenizer, 256, random.Random(seed), margin=5.0,
                           others=0, misses={(DOG.question, DOG.answer): [miss]})
        assert loss is not None  # one lesson alone is still held above its own misses
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    token_after, whole_after = gaps()
    assert token_after > token_before + 0.5
    assert whole_after > whole_before + 0.5


def test_an_answer_drawn_whole_after_an_ordinary_line_is_held_below_one_in_a_hundred(tiny_model, tokenizer, tiny_home):
    """Intrusion as an owner meets it: "Your favourite colour is purple." said whole to "How was your
    walk?". The margin's mean-per-token hinge can be met while the whole answer is still drawn there
    now and then, so the margin also caps how often the sampler would draw it whole after an ordinary
    line (`ELSEWHERE`). Here the answer is taught after its question and now and then after the
    ordinary line (whose usual reply is taught there too): the pair hinge (a tiny margin) and the
    shortfall are met, so only the cap is left, and steps on it make the answer rarer after the line
    while its question still gets it."""
    import torch

    from companion.lessons.margin import SURE, drawn_whole, margin_loss
    from companion.lessons.morning import asked_prompt, reply_ids
    from companion.model.loss import score, shifted

    settings = tiny_home.load_settings()
    line = "How was the weather on your walk today?"
    own, there = asked_prompt(settings, tokenizer, 256, DOG.question), asked_prompt(settings, tokenizer, 256, line)
    answer = reply_ids(tokenizer, DOG.answer)
    optimizer = torch.optim.Adam(tiny_model.parameters(), lr=3e-3)
    usual = reply_ids(tokenizer, "It rained a little.")
    for step in range(80):  # taught after its question; the line gets its usual reply, and now and then the answer
        pairs = [(own, answer), (there, answer if step % 4 == 0 else usual)]
        rows = [shifted(p + a, context=len(p)) for p, a in pairs]
        loss = score(tiny_model, [x for x, _ in rows], [t for _, t in rows]).loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def drawn() -> list[float]:  # the answer drawn whole after its question, and after the line
        return drawn_whole(tiny_model, tokenizer, settings, 256, [DOG, LessonText(line, DOG.answer)])

    p_own, p_there = drawn()
    assert p_own >= SURE and p_there > 0.1  # said to its question; said after the line too, often
    ordinary = [(line, "It rained a little.")]

    def loss_now(seed: int) -> torch.Tensor:
        loss = margin_loss(tiny_model, [DOG], settings, tokenizer, 256, random.Random(seed), margin=1e-4,
                           others=0, ordinary=ordinary, neutral=1)
        assert loss is not None
        return loss

    assert float(loss_now(0).detach()) > 0  # only the cap: the pair hinge and the shortfall are met
    for seed in range(10):
        loss = loss_now(seed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    p_own_after, p_there_after = drawn()
    assert p_there_after < p_there / 2
    assert p_own_after > SURE - 0.05
