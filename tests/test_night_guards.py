"""Sabotaged nights are rolled back with the weights byte-identical; a quit resumes; optimizers start empty."""

from __future__ import annotations

import math

import pytest
import torch

from companion.birth.create import NURSERY_STATE
from companion.night.pending import pending_night
from companion.night.pipeline import run_night
from companion.birth.nursery import CorpusTokens, run_nursery
from companion.store import Store
from companion.night.optimizer import lr_at, save_optimizer_state
from companion.transcript import encode_documents
from companion.history.weights import Weights
from tests.test_night import PROBE, file_checksum, night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_rolled_back(home, store, report, pre):
    assert report.status == "rolled_back"
    assert report.post_checkpoint_id is None
    assert Weights(home, store).current().id == pre.id
    assert report.checksum_after == report.checksum_before == pre.checksum
    assert file_checksum(home, store, pre) == pre.checksum
    assert [c.reason for c in store.checkpoints()] == ["birth"]
    assert store.nights()[-1].status == "rolled_back" and store.nights()[-1].reason == report.reason


def test_an_absurd_learning_rate_is_rolled_back_and_the_weights_are_unchanged(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", learning_rate=50.0,
                           probe_windows=PROBE)
        assert_rolled_back(tiny_home, store, report, pre)
        assert "spiked" in report.reason or "probe" in report.reason or "became" in report.reason


def test_a_nan_in_the_loss_is_rolled_back_before_it_touches_the_weights(tiny_home, tokenizer):
    def poison(step, loss):
        return loss * float("nan") if step == 2 else loss

    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", loss_hook=poison,
                           probe_windows=PROBE)
        assert_rolled_back(tiny_home, store, report, pre)
        assert report.reason == "the loss became nan at step 3"
        assert report.steps == 3


def test_a_loss_spike_is_rolled_back(tiny_home, tokenizer):
    def spike(step, loss):
        return loss * 100 if step == 5 else loss

    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home, **{"night.steps": 8}), "cpu",
                           loss_hook=spike, probe_windows=PROBE)
        assert_rolled_back(tiny_home, store, report, pre)
        assert "spiked" in report.reason and "step 6" in report.reason


def test_a_probe_worse_than_its_bound_is_rolled_back(tiny_home, tokenizer):
    """A night that reads only a book of gibberish, hard, unlearns the language: rolled back."""
    import hashlib

    with Store.open(tiny_home.store_path) as store:
        junk = tiny_home.books_dir / "junk.txt"
        junk.write_text("xq zv " * 3000, encoding="utf-8")
        store.queue_book(str(junk), hashlib.sha256(junk.read_bytes()).hexdigest(), junk.stat().st_size)
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        off = {f"night.{source}.weight": 0.0 for source in ("day", "dreams", "preferences", "replay")}
        settings = night_settings(tiny_home, **off, **{"night.books.tokens": 4000, "night.learning_rate": 1e-2,
                                                      "night.spike_factor": 100.0, "night.steps": 12,
                                                      "night.probe_bound": 0.0})
        report = run_night(tiny_home, store, day.id, settings, "cpu", probe_windows=PROBE,
                           lessons=[])  # an ordinary night: the book alone, at its own rate
        assert_rolled_back(tiny_home, store, report, pre)
        assert "probe perplexity worsened" in report.reason
        assert report.probe_after["ppl"] > report.probe_before["ppl"]
        assert store.books("queued")  # a rolled-back night has read nothing


def test_a_quit_mid_night_leaves_the_weights_and_the_night_resumes_on_the_next_start(tiny_home, tokenizer):
    steps_seen = []

    def stop_after_two_steps():
        return len(steps_seen) >= 2

    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        report = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu",
                           on_event=lambda e: steps_seen.append(e) if e.kind == "step" else None,
                           should_stop=stop_after_two_steps, probe_windows=PROBE)
        assert report.status == "interrupted" and report.steps == 2
        assert Weights(tiny_home, store).current().id == pre.id
        assert file_checksum(tiny_home, store, pre) == pre.checksum == report.checksum_after
        [dream] = store.dreams(day_id=day.id)

    # The next start: the day is pending, and its night runs from the untouched pre-night weights.
    with Store.open(tiny_home.store_path) as store:
        assert pending_night(store).id == day.id
        again = run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", probe_windows=PROBE)
        assert again.status == "accepted" and again.pre_checkpoint_id == pre.id
        assert store.dreams(day_id=day.id) == [dream]  # the dream is kept, not dreamt twice
        assert pending_night(store) is None


def test_a_night_killed_while_running_is_found_interrupted_at_the_next_start(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        pre = Weights(tiny_home, store).current()
        store.start_night(day.id, pre.id)  # the process died here
    with Store.open(tiny_home.store_path) as store:
        assert pending_night(store).id == day.id
        assert store.nights(day.id)[-1].status == "interrupted"


def test_a_nights_optimizer_starts_empty_whatever_ran_before_it(tiny_home, tokenizer):
    """A nursery ran (and saved its moments, at its own learning rate); the night must not inherit them."""
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        loaded = weights.load_current()
        model = loaded.model
        docs = [list(d) for d in __import__("companion.night.guards", fromlist=["starter_docs"]).starter_docs(
            False, "Good morning, {companion}.", "Good night, {companion}.")[:40]]
        data = CorpusTokens.from_encoded(encode_documents(tokenizer, docs), encode_documents(tokenizer, docs[:4]))
        _, nursery_opt = run_nursery(model, None, data, steps=3, batch_size=2, peak_lr=1e-3, heldout_windows=1,
                                     eval_every_s=1e9)
        record = weights.save(model, "nursery", step=3, parent_id=loaded.checkpoint.id)
        save_optimizer_state(tiny_home.checkpoints_dir / NURSERY_STATE, model, nursery_opt,
                             {"checkpoint": record.path})

        day, _ = script_day(tiny_home, store, tokenizer)
        settings = night_settings(tiny_home, **{"night.steps": 6, "night.learning_rate": 3e-4,
                                                "night.warmup_fraction": 0.5})
        seen = []

        def before_step(step, optimizer, lr):
            seen.append((step, len(optimizer.state), optimizer.param_groups[0]["lr"], lr))

        report = run_night(tiny_home, store, day.id, settings, "cpu", before_step=before_step, probe_windows=PROBE,
                           lessons=[])  # an ordinary night (a night with lessons has their own rate)
        assert report.steps == 6
        step0, state0, group_lr0, lr0 = seen[0]
        assert state0 == 0  # no moments: not the nursery's, not anyone's
        assert group_lr0 == 3e-4  # built at the night's own peak, not the nursery's 1e-3
        for step, _, _, lr in seen:
            assert lr == pytest.approx(lr_at((step + 1) / 6, 3e-4, 0.5, 0.1))
        assert seen[1][1] > 0  # and it does learn: the moments exist from the second step on


def test_night_settings_out_of_range_are_refused_with_the_key_named(tiny_home):
    from companion.settings import SettingsError

    settings = tiny_home.load_settings()
    for key, value in [("night.learning_rate", 5.0), ("night.learning_rate", -1e-4), ("night.day.weight", -1.0),
                       ("night.replay.tokens", -5), ("night.books.weight", 11.0), ("night.probe_bound", 2.0),
                       ("night.spike_factor", 1.0), ("night.batch_tokens", 1), ("night.dpo_beta", 0.0),
                       ("night.dream_temperature", 0.0), ("night.owner_weight", 50.0)]:
        with pytest.raises(SettingsError) as caught:
            settings.with_value(key, value)
        assert key in str(caught.value), (key, value)
        assert caught.value.key == key


def test_the_loss_watch_spots_nan_inf_and_spikes():
    from companion.night.guards import LossWatch

    watch = LossWatch(spike_factor=4.0)
    assert [watch.check(i, v) for i, v in enumerate([3.0, 2.5, 2.8, 2.6])] == [None] * 4
    assert "spiked" in watch.check(4, 20.0)
    assert "inf" in LossWatch(4.0).check(0, math.inf)
    assert torch.isnan(torch.tensor(float("nan")))


def test_a_crash_in_the_night_loses_nothing_and_is_recorded_failed(tiny_home, tokenizer):
    def crash(step, loss):
        if step == 1:
            raise RuntimeError("the power went out")
        return loss

    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)
        turns = store.turns(day.id)
        pre = Weights(tiny_home, store).current()
        with pytest.raises(RuntimeError, match="power"):
            run_night(tiny_home, store, day.id, night_settings(tiny_home), "cpu", loss_hook=crash, probe_windows=PROBE)
        night = store.nights(day.id)[-1]
        assert night.status == "failed" and "the power went out" in night.reason
        assert store.turns(day.id) == turns and Weights(tiny_home, store).current().id == pre.id
        assert file_checksum(tiny_home, store, pre) == pre.checksum
