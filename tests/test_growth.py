"""Growing a companion, end to end on a tiny real home: the plan and its refusals, widening and
stretching as checkpoints, a night on the grown model, restore across sizes, and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from companion.day import DaySession
from companion.growth.grow import run_growth
from companion.growth.plan import GrowthError, checkpoint_size, parse_width, plan_growth
from companion.night.pipeline import run_night
from companion.history.restore import restore
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import load_tensors, read_meta
from tests.test_night import night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROBE = 4


def quick_settings(home):
    return night_settings(home, **{"night.batch_tokens": 512})


def current_state(home):
    """What must not change when a growth is refused: the current pointer and every recorded checkpoint."""
    with Store.open(home.store_path) as store:
        return (Weights(home, store).current().id, [c.id for c in store.checkpoints()],
                (home.checkpoints_dir / "CURRENT").read_bytes())


def grow(home, store, **kwargs):
    plan = plan_growth(home, store, width=kwargs.pop("width", None), context=kwargs.pop("context", None),
                       memory=None)
    return run_growth(home, store, plan, quick_settings(home), probe_windows=PROBE, **kwargs)


def test_widening_is_a_growth_checkpoint_with_its_story(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        before = Weights(tiny_home, store).current()
        events = []
        result = grow(tiny_home, store, width=96, on_event=events.append)
        assert result.status == "grown", result.reason
        assert result.max_logit_change < 1e-4
        grown = Weights(tiny_home, store).current()
        assert grown.id == result.checkpoint.id != before.id
        assert grown.reason == "growth" and grown.parent_id == before.id
        meta = read_meta(Weights(tiny_home, store).path_of(grown))
        assert meta.config.n_embd == 96 and meta.extra["growth"] == "width"
        assert json.loads(meta.extra["before"])["n_embd"] == 64 and json.loads(meta.extra["after"])["n_embd"] == 96
        size, story = checkpoint_size(Weights(tiny_home, store).path_of(grown))
        assert size == "w96 ctx256" and story == ("grown from 64 wide x 2 layers, 4 heads, 256 tokens to "
                                                  "96 wide x 2 layers, 6 heads, 256 tokens")
        assert checkpoint_size(Weights(tiny_home, store).path_of(before)) == ("w64 ctx256", "")
    assert [e.phase for e in events if e.kind == "phase"] == ["loading", "widening", "checking", "saving"]
    assert events[-1].kind == "done" and "Grown" in events[-1].text


def test_a_night_on_the_widened_model_runs_and_moves_its_new_slices(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        result = grow(tiny_home, store, width=96)
        grown = result.checkpoint
        day, _ = script_day(tiny_home, store, tokenizer)
        report = run_night(tiny_home, store, day.id, quick_settings(tiny_home), "cpu", probe_windows=PROBE,
                           lessons=[])  # an ordinary night: a lesson night freezes the tied embeddings
        assert report.status == "accepted", report.reason
        after = Weights(tiny_home, store).current()
        assert after.reason == "night" and after.parent_id == grown.id
        old, _ = load_tensors(Weights(tiny_home, store).path_of(grown))
        new, _ = load_tensors(Weights(tiny_home, store).path_of(after))
    for name, cut in {"embed.weight": lambda t: t[:, 64:], "blocks.0.attn.proj.weight": lambda t: t[64:],
                      "blocks.1.mlp.down.weight": lambda t: t[64:]}.items():
        assert cut(old[name]).abs().max() == 0, name
        assert cut(new[name]).abs().max() > 0, f"{name}: the night did not move its zero slice"


def test_restore_across_a_growth_and_back_loads_the_right_size(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        small = weights.current()
        grown = grow(tiny_home, store, width=96).checkpoint
        back = restore(tiny_home, store, small.id)
        assert weights.load_current().model.config.n_embd == 64
        restore(tiny_home, store, back.saved.id)  # undo: the grown weights, saved as pre-restore
        loaded = weights.load_current()
        assert loaded.model.config.n_embd == 96 and loaded.checkpoint.checksum == grown.checksum


def test_stretching_gives_the_next_day_a_longer_budget(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        first, _ = script_day(tiny_home, store, tokenizer)
        assert first.budget_tokens == 192
        events = []
        result = grow(tiny_home, store, context=512, steps=3, on_event=events.append)
        assert result.status == "grown", result.reason
        s = result.stretch
        assert s["steps"] == 3 and s["day_windows"] >= 0 and s["starter_windows"] > 0
        for key in ("inside_original", "inside_before", "inside_after", "beyond_before", "beyond_after"):
            assert s[key] is not None and s[key] == s[key], key
        loaded = Weights(tiny_home, store).load_current()
        assert loaded.model.config.block_size == 512 and loaded.model.config.rope_scaling == 2.0
        session = DaySession(tiny_home, store, tokenizer, block_size=loaded.model.config.block_size,
                             checkpoint_id=loaded.checkpoint.id)
        assert session.budget == 384
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3] and steps[-1].total == 3


def test_a_stretch_night_refused_by_its_guard_keeps_nothing(tiny_home):
    before = current_state(tiny_home)
    with Store.open(tiny_home.store_path) as store:
        plan = plan_growth(tiny_home, store, context=512, memory=None)
        settings = quick_settings(tiny_home).with_value("night.spike_factor", 1.01)
        result = run_growth(tiny_home, store, plan, settings, steps=8, learning_rate=5e-2, probe_windows=PROBE)
    assert result.status == "refused" and result.reason
    assert current_state(tiny_home) == before


@pytest.mark.parametrize("kwargs, words", [
    ({"width": 48}, "not larger"),
    ({"width": 64}, "not larger"),
    ({"width": 100}, "multiple of the head size 16"),
    ({"context": 256}, "not larger"),
    ({"context": 100}, "not larger"),
])
def test_a_growth_that_cannot_be_is_refused_and_changes_nothing(tiny_home, kwargs, words):
    before = current_state(tiny_home)
    with Store.open(tiny_home.store_path) as store, pytest.raises(GrowthError, match=words):
        plan_growth(tiny_home, store, **kwargs)
    assert current_state(tiny_home) == before


def test_a_growth_too_large_for_memory_is_refused_before_it_starts(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        with pytest.raises(GrowthError, match=r"needs about .* of memory .* available"):
            plan_growth(tiny_home, store, width=4096, memory=512 * 1024 * 1024)
        assert plan_growth(tiny_home, store, width=128, memory=512 * 1024 * 1024).params_after > 0


def test_growing_while_a_night_runs_is_refused(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        plan = plan_growth(tiny_home, store, width=96, memory=None)
        day, _ = script_day(tiny_home, store, tokenizer)
        store.start_night(day.id, Weights(tiny_home, store).current().id)
        with pytest.raises(GrowthError, match="night is running"):
            plan_growth(tiny_home, store, width=96, memory=None)
        before = current_state(tiny_home)
        result = run_growth(tiny_home, store, plan, quick_settings(tiny_home))
        assert result.status == "refused" and "night is running" in result.reason
    assert current_state(tiny_home) == before


def test_a_stop_or_a_full_disk_during_growth_leaves_the_old_weights_current(tiny_home, monkeypatch):
    before = current_state(tiny_home)
    with Store.open(tiny_home.store_path) as store:
        plan = plan_growth(tiny_home, store, context=512, memory=None)
        asked = []
        result = run_growth(tiny_home, store, plan, quick_settings(tiny_home), steps=5, probe_windows=PROBE,
                            on_event=lambda e: asked.append(e), should_stop=lambda: any(e.kind == "step" for e in asked))
        assert result.status == "stopped"
        assert current_state(tiny_home) == before

        import companion.model.checkpoint as checkpoint

        def full_disk(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(checkpoint, "atomic_write_bytes", full_disk)
        plan = plan_growth(tiny_home, store, width=96, memory=None)
        with pytest.raises(OSError):
            run_growth(tiny_home, store, plan, quick_settings(tiny_home))
    assert current_state(tiny_home) == before
    leftovers = [p.name for p in tiny_home.checkpoints_dir.iterdir() if p.suffix != ".safetensors" and p.name != "CURRENT"]
    assert leftovers == []


def run_cli(home, *args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1", COMPANION_HOME=str(home.path.parent))
    return subprocess.run([sys.executable, "-m", "companion", "--name", home.name, "grow", *args],
                          capture_output=True, text=True, env=env, timeout=300, **kwargs)


def test_the_cli_refuses_bad_input_in_one_line_without_a_traceback(tiny_home, capsys):
    from companion.cli import main

    before = current_state(tiny_home)
    for args, words in [(["--width", "60"], "not larger"), (["--width", "huge"], "neither a number"),
                        (["--width", "72"], "multiple of the head size"), (["--context", "64"], "not larger"),
                        (["--add-tokens", "./nope.txt"], "no such file"),
                        (["--context", "512", "--steps", "0"], "at least 1"),
                        (["--context", "512", "--lr", "0"], "--lr 0.0 must be above 0"),
                        (["--width", "96", "--no-measure"], "not confirmed")]:
        code = main(["--home", str(tiny_home.path.parent), "grow", *args])
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.startswith("companion grow: ") and words in err and err.count("\n") == 1, (args, err)
    assert current_state(tiny_home) == before


def test_the_cli_widens_with_a_preview_and_lists_both_sizes(tiny_home):
    done = run_cli(tiny_home, "--width", "96", "--yes")
    assert done.returncode == 0, done.stderr
    assert "parameters" in done.stdout and "time a step" in done.stdout and "Grown" in done.stdout
    env = dict(os.environ, COMPANION_HOME=str(tiny_home.path.parent))
    listing = subprocess.run([sys.executable, "-m", "companion", "checkpoints"], capture_output=True, text=True,
                             env=env, timeout=120).stdout
    assert "w64 ctx256" in listing and "w96 ctx256" in listing


def test_a_kill_during_the_stretch_night_leaves_the_old_weights_current(tiny_home):
    before = current_state(tiny_home)
    env = dict(os.environ, OMP_NUM_THREADS="1", COMPANION_HOME=str(tiny_home.path.parent))
    proc = subprocess.Popen([sys.executable, "-m", "companion", "grow", "--context", "1024", "--yes", "--steps",
                             "500", "--no-measure"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "stretch night" in line or time.monotonic() > deadline:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert current_state(tiny_home) == before
    with Store.open(tiny_home.store_path) as store:
        loaded = Weights(tiny_home, store).load_current()
        assert loaded.model.config.block_size == 256 and not loaded.notes


def test_a_preset_name_is_a_width():
    assert parse_width("v2") == 512 and parse_width(" 384 ") == 384
    with pytest.raises(GrowthError, match="positive"):
        parse_width("-64")


def test_a_damaged_current_file_is_refused_in_one_line(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        path = Weights(tiny_home, store).path_of(Weights(tiny_home, store).current())
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    done = run_cli(tiny_home, "--width", "96", "--yes")
    assert done.returncode == 2 and "checksum mismatch" in done.stderr and "Traceback" not in done.stderr
