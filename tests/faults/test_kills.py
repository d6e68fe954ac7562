"""The fault suite, short: real SIGKILLs of a real day and a real `companion sleep`, a few per phase.

The long run (`python bench/faults.py`) does the same at scale and prints the table; see the README.
"""

from __future__ import annotations

import random

import pytest

from tests.faults.harness import (
    PHASES, copy_home, make_template, run_day_trial, run_night_trial, run_save_trial, table,
)

# Seconds after the phase begins: the short phases are hit near their start, training in its middle.
DELAYS = {"dreaming": 0.05, "probing": 0.02, "preparing": 0.02, "training": 0.3, "checking": 0.02, "saving": 0.0}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_template(tmp_path_factory.mktemp("faults"))


def test_kills_during_a_day_lose_no_acknowledged_action(template, tmp_path):
    rng = random.Random(14)
    trials = [run_day_trial(copy_home(template, tmp_path / f"day{i}"), i, rng, most_s=1.0) for i in range(3)]
    assert sum(t.acked for t in trials) > 0, [t.notes for t in trials]
    assert all(t.lost == 0 and t.store_ok for t in trials), table(trials)


@pytest.mark.parametrize("phase", PHASES)
def test_a_kill_in_each_phase_of_a_night_leaves_verified_weights_and_no_leftovers(template, tmp_path, phase):
    trial = run_night_trial(template, tmp_path / "night", phase, DELAYS[phase])
    assert trial.unloadable == 0 and trial.wrong_weights == 0, (trial.kind, trial.notes)
    assert trial.leftovers_after == 0 and trial.lost == 0 and trial.store_ok, (trial.kind, trial.notes)


def test_a_kill_inside_a_checkpoint_write_leaves_a_temporary_that_the_next_start_removes(template, tmp_path):
    trial = run_save_trial(template, tmp_path / "save", random.Random(1))
    assert trial.leftovers_before == 1, trial.notes  # the kill landed inside the write
    assert trial.leftovers_after == 0 and any("removed checkpoints/." in n for n in trial.notes)
    assert trial.unloadable == 0 and trial.wrong_weights == 0 and trial.store_ok
