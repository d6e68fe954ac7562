"""The night, end to end on a tiny real model: a scripted day with choices and corrections, then the night."""

from __future__ import annotations

from dataclasses import replace

import pytest

from companion.night.pending import pending_night
from companion.night.pipeline import run_night
from companion.night.report import NightEvent, NightReport, report_lines
from companion.day.scripted import Exchange, live_day
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import load_tensors, tensors_checksum

PROBE = 8  # starter probe windows: enough to measure, quick to score


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def night_settings(home, **values):
    """The home's settings with a quick night: small steps, a short replay, a fine-tuning-sized rate."""
    settings = home.load_settings()
    quick = {"night.batch_tokens": 768, "night.learning_rate": 2e-3, "night.replay.tokens": 800,
             "night.day.tokens": 1500, "night.preferences.tokens": 2500, "night.warmup_fraction": 0.1,
             # the day's correction is a lesson: a quick lesson night too
             "night.lessons.steps": 6, "night.lessons.learning_rate": 2e-3, "night.lessons.material_tokens": 768,
             "night.lessons.samples": 2, "night.lessons.intrusion_lines": 1}
    quick.update(values)
    for key, value in quick.items():
        settings = settings.with_value(key, value)
    return settings


def script_day(home, store, tokenizer, *, owner_turns=True, number_of_questions=2):
    """A day lived through the real DaySession (a 192-token day: block 256 at the default share):
    greeting, questions, candidates, a correction, a pick, ratings, an annotated inner line of the
    model, the indicators and the good-night line; closed. Returns (day, facts) where facts are the
    texts the owner taught."""
    name = Exchange("What is my name?", ("I do not know.", "A cat.", "Blue sky."), correct=(0, "Your name is Trey."),
                    rate={1: 1})
    love = Exchange("What do you love?", ("I love the sea.", "Nothing.", "Rocks and mud."), pick=0,
                    rate={0: 4, 2: 2})
    script = [name, love][:number_of_questions] if owner_turns else []
    if script:  # the model's inner line after the last reply, kept by the owner
        script[-1] = replace(script[-1], inner="He seems cheerful today.", inner_tags=("keep",))
    day, lived = live_day(home, store, script, tokenizer, block_size=256,
                          checkpoint_id=Weights(home, store).current().id)
    return day, [x.reply.turn.text for x in lived]


def file_checksum(home, store, checkpoint):
    tensors, _ = load_tensors(Weights(home, store).path_of(checkpoint))
    return tensors_checksum(tensors)


def test_a_night_teaches_the_day_and_keeps_its_story(tiny_home, tokenizer, monkeypatch):
    import companion.night.pipeline

    monkeypatch.setattr(companion.night.pipeline, "PROGRESS_EVERY_S", 0.0)  # every count reported, however quick
    events: list[NightEvent] = []
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", events.append,
                           probe_windows=PROBE)

        assert report.status == "accepted", report.reason
        taught = report.taught
        assert taught["corrected"]["after"] > taught["corrected"]["before"]
        assert taught["chosen"]["after"] > taught["chosen"]["before"]
        assert report.probe_after["ppl"] <= report.probe_before["ppl"] * (1 + report.probe_bound)

        post = Weights(tiny_home, store).current()
        assert post.id == report.post_checkpoint_id != pre.id
        assert post.reason == "night" and post.parent_id == pre.id and post.day_id == day.id
        assert post.probe_ppl == pytest.approx(report.probe_after["ppl"])
        assert file_checksum(tiny_home, store, pre) == pre.checksum  # the pre-night weights are kept

        night = store.nights(day.id)[-1]
        assert night.status == "accepted" and night.post_checkpoint_id == post.id
        assert night.report["taught"]["corrected"]["after"] == pytest.approx(taught["corrected"]["after"])
        assert NightReport.from_dict(night.report).summary() == report.summary()
        assert "accepted" in report_lines(report)[0]

        [dream] = store.dreams(day_id=day.id)
        assert dream.night_id == night.id and dream.text == report.dream_text and dream.text
        assert report.material["day"] > 0 and report.material["preferences"] > 0 and report.material["replay"] > 0
        assert pending_night(store) is None

    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and events[-1].report is report
    assert [e.phase for e in events if e.kind == "phase"] == ["dreaming", "probing", "recalling", "preparing",
                                                              "training", "checking", "recalling", "saving"]
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == report.total_steps > 0 and steps[-1].step == steps[-1].total
    # The phases without training steps report real progress and time left too.
    progress = [e for e in events if e.kind == "progress"]
    assert {e.phase for e in progress} >= {"dreaming", "probing", "preparing", "checking"}
    assert all(0 < e.step <= e.total and e.eta_s is not None for e in progress)
    for phase in ("probing", "checking"):
        last = [e for e in progress if e.phase == phase][-1]
        assert last.step == last.total  # a probe's batches are counted exactly


def test_a_day_with_no_owner_turns_has_nothing_to_learn(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer, owner_turns=False)
        before = [c.id for c in store.checkpoints()]
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", probe_windows=PROBE)
        assert report.status == "nothing" and "nothing to learn" in report.reason
        assert [c.id for c in store.checkpoints()] == before
        assert store.dreams(day_id=day.id) == []
        assert store.nights(day.id)[-1].status == "nothing"
