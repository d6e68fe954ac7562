"""Thread counts: generation and the trainer each run on what the settings (or the measured default)
give them, and while a night trains, generation takes only the cores the night leaves."""

from __future__ import annotations

import pytest
import torch

from companion.day.request import SampleRequest
from companion.compute.threads import (
    default_generation_threads,
    generation_claim,
    generation_threads,
    machine_cores,
    pace,
    training_claim,
    training_threads,
)
from companion.engine import Engine
from companion.settings import SettingsError, load_settings, update_settings_file
from companion.store import Store
from companion.night.thread import TrainerThread
from companion.transcript import Turn, encode_turns
from companion.model.sampling import SamplingSettings


def test_on_two_idle_cores_generation_takes_one_thread_and_a_night_both():
    assert default_generation_threads(2) == 1
    assert generation_threads(0, cores=2) == 1
    assert training_threads(0, cores=2, load=0.3) == 2  # nobody else: the night takes every core
    assert generation_threads(0, cores=1) == 1 and training_threads(0, cores=1, load=0.0) == 1
    assert training_threads(0, cores=16, load=0.0) == 16


def test_a_night_leaves_a_busy_neighbour_its_core():
    assert training_threads(0, cores=2, load=1.1) == 1  # one core kept busy by another program
    assert training_threads(0, cores=2, load=5.0) == 1  # never below one
    assert training_threads(0, cores=2, load=2.2, ours=2) == 2  # the load is the night's own threads
    assert training_threads(0, cores=4, load=2.0) == 2


@pytest.mark.skipif(not __import__("os").path.exists("/proc/stat"), reason="measured from /proc/stat (Linux)")
def test_what_other_programs_keep_busy_is_measured_now_not_from_the_last_minutes_load_average():
    """A real neighbour spinning on a core is seen within a few readings (about a second each, as
    between training steps); this process's own work is never counted as someone else's."""
    import subprocess
    import sys
    import time

    from companion.compute.threads import OthersMeter

    meter = OthersMeter()
    meter.read()
    time.sleep(0.3)
    quiet = meter.read()  # whatever else this machine is doing now
    if quiet > machine_cores() - 1.5:  # no idle core for a neighbour to take: nothing to see
        pytest.skip(f"the machine is busy ({quiet:.1f} cores taken by other programs)")
    torch.manual_seed(0)
    a = torch.randn(256, 256)
    t = time.monotonic()
    while time.monotonic() - t < 0.6:  # our own busy work: not another program's
        a = torch.tanh(a @ a)
    assert meter.read() < quiet + 0.5
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        for _ in range(4):
            time.sleep(0.4)
            busy = meter.read()
    finally:
        neighbour.kill()
        neighbour.wait()
    assert busy > min(quiet, 1.0) + 0.5


def test_a_night_gives_a_core_back_while_a_reply_is_written_and_takes_it_again_after():
    seen = []
    with training_claim(0):
        seen.append(pace(load=0.0))
        with generation_claim(generation_threads(0, cores=2)):
            seen.append(pace(load=0.0))
            assert torch.get_num_threads() == 1
        seen.append(pace(load=0.0))
        assert torch.get_num_threads() == machine_cores()
    assert seen == [machine_cores(), max(1, machine_cores() - 1), machine_cores()]


def test_a_fixed_night_setting_is_not_paced():
    with training_claim(1):
        assert pace(load=0.0) is None
        assert torch.get_num_threads() == 1
    assert pace(load=0.0) is None  # no night: nothing to pace


def test_a_setting_overrides_the_default():
    assert generation_threads(2, cores=2) == 2
    assert training_threads(3, cores=2) == 3


def test_while_a_night_trains_generation_takes_only_the_cores_it_leaves():
    with training_claim(1):
        assert generation_threads(2, cores=2) == 1
        assert generation_threads(8, cores=8) == 7
    assert generation_threads(2, cores=2) == 2  # the night is over: the setting again
    with training_claim(4):
        assert generation_threads(2, cores=2) == 1  # never below one


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="threads"):
        generation_threads(-1)


def _generate_recording_threads(engine: Engine) -> list[int]:
    seen: list[int] = []
    ctx = encode_turns(engine.tokenizer, [Turn("owner", "Hello, how are you?")]).ids
    engine.generate(SampleRequest("reply", "companion", ctx, tuple(range(2)), SamplingSettings(max_new_tokens=4, seed=1, temperature=5.0, top_k=0)),
                    on_text=lambda row, text: seen.append(torch.get_num_threads()))
    return seen


def test_the_engine_generates_on_the_engine_threads_setting(tiny_home, one_torch_thread):
    update_settings_file(tiny_home.settings_path, "engine.threads", 2)
    with Store.open(tiny_home.store_path) as store:
        engine = Engine.load(tiny_home, store, device="cpu")
        assert engine.threads == 2
        seen = _generate_recording_threads(engine)
        assert seen and set(seen) == {2}
        engine.threads = 1  # what the settings screen's save does to a running app's engine
        assert set(_generate_recording_threads(engine)) == {1}


def test_the_trainer_thread_trains_on_the_night_threads_setting_and_generation_gives_way(tiny_home, one_torch_thread):
    settings = update_settings_file(tiny_home.settings_path, "night.threads", 2)
    seen: dict[str, int] = {}

    def job(store, emit, should_stop):
        seen["trainer"] = torch.get_num_threads()
        seen["generation_on_4_cores"] = generation_threads(4, cores=4)

    with Store.open(tiny_home.store_path) as store:
        trainer = TrainerThread(tiny_home, None, job=job, store=store, settings=settings)
        trainer.start()
        trainer.join(30)
    assert trainer.error is None
    assert seen == {"trainer": 2, "generation_on_4_cores": 2}
    assert generation_threads(4, cores=4) == 4  # the claim ends with the job


def test_a_bad_thread_setting_names_the_key_and_changes_nothing(tiny_home):
    before = tiny_home.settings_path.read_bytes()
    with pytest.raises(SettingsError, match=r"engine\.threads = -1.*0 \(auto\) to 256"):
        update_settings_file(tiny_home.settings_path, "engine.threads", -1)
    with pytest.raises(SettingsError, match=r"night\.threads = 'many'"):
        update_settings_file(tiny_home.settings_path, "night.threads", "many")
    assert tiny_home.settings_path.read_bytes() == before
    assert load_settings(tiny_home.settings_path).engine.threads == 0
