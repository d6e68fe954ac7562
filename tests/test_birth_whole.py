"""A birth appears whole or not at all: it is built aside, a retry continues it, the app offers it,
and the same weights read the same probe figure in every list and report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from companion.app import CompanionApp
from companion.birth.create import adopt_seedling, create_home, finish_birth
from companion.cli import main
from companion.home import Home, is_born, list_companions, list_unborn
from companion.night.pipeline import run_night
from companion.night.report import report_lines
from companion.store import Store
from companion.history.weights import Weights
from companion.model.checkpoint import CheckpointMeta, save_checkpoint
from tests.test_app import SIZE, ready, until
from tests.test_birth import REPO, run_cli
from tests.test_night import night_settings, script_day


@pytest.fixture()
def seedling(tmp_path, tokenizer, tiny_model):
    """A tiny stand-in for the bundled seedling: a real tokenizer and real (untrained) weights."""
    folder = tmp_path / "seedling"
    folder.mkdir()
    tokenizer.save(folder / "tokenizer.json")
    save_checkpoint(folder / "seedling.safetensors", tiny_model, CheckpointMeta(tiny_model.config, reason="seedling"))
    return folder


def test_a_birth_killed_midway_leaves_no_companion_and_the_same_command_continues_it(tmp_path):
    root = tmp_path / "companions"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "companion", "birth", "--name", "Scout", "--owner", "Trey",
                             "--steps", "100000", "--home", str(root)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    try:
        line = proc.stderr.readline()  # "training the tokenizer ...": the birth is under way
        assert "tokenizer" in line, line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert list_companions(root) == [] and not (root / "Scout").exists()
    assert [p.name for p in list_unborn(root)] == [".Scout.unborn"]

    retry = run_cli("birth", "--name", "Scout", "--owner", "Trey", "--from-seedling", home=root)
    assert retry.returncode == 0, retry.stderr
    assert "continuing the unfinished birth of Scout" in retry.stderr
    assert list_companions(root) == ["Scout"] and list_unborn(root) == []
    assert is_born(root / "Scout")
    with Store.open(root / "Scout" / "companion.db") as store:
        assert Weights(Home(root / "Scout"), store).load_current().checkpoint.reason == "seedling"


def test_a_folder_an_older_version_left_without_a_tokenizer_is_continued_in_place(tmp_path, seedling):
    root = tmp_path / "companions"
    Home.create(root, "Scout", owner="Trey")  # what a failed adoption used to leave: settings, no weights
    assert list_unborn(root) == [root / "Scout"] and not is_born(root / "Scout")
    home, notes = create_home(root, "Scout", "Trey", "seedling", [])
    assert home.path == root / "Scout" and "continuing" in notes[-1]
    with Store.open(home.store_path) as store:
        adopt_seedling(home, store, seedling)
    assert finish_birth(home).path == root / "Scout"
    assert is_born(root / "Scout") and list_unborn(root) == []


def test_bad_birth_input_changes_nothing(tmp_path, capsys):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    assert main(["birth", "--name", "Scout", "--owner", "Trey", "--from-seedling", "--home", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    for minutes in ("0", "-3"):
        with pytest.raises(SystemExit) as exit_:
            main(["birth", "--name", "Scout", "--owner", "Trey", "--minutes", minutes, "--home", str(tmp_path / "c")])
        assert exit_.value.code == 2
        assert "must be more than 0" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


async def test_a_failed_adoption_leaves_nothing_and_a_retry_succeeds(tmp_path, seedling):
    root = tmp_path / "companions"
    good = (seedling / "seedling.safetensors").read_bytes()
    (seedling / "seedling.safetensors").write_bytes(good[: len(good) // 3])  # a damaged seedling
    app = CompanionApp(root, watch_themes=False, device="cpu", seedling_dir=seedling)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        await pilot.press(*"Scout", "enter", *"Trey", "enter")  # Enter walks the fields, then adopts
        status = app.screen.query_one("#welcome-status")
        await until(pilot, lambda: "Birth failed" in str(status.render()))
        assert not (root / "Scout").exists() and list_unborn(root) == []

        (seedling / "seedling.safetensors").write_bytes(good)
        await pilot.press("ctrl+o")
        chat = await ready(pilot)
        assert "Scout" in chat.transcript.lines[0].text
    assert is_born(root / "Scout") and list_unborn(root) == []


async def test_an_unfinished_birth_is_offered_and_can_be_removed_after_a_confirmation(tmp_path, seedling):
    root = tmp_path / "companions"
    home, _ = create_home(root, "Scout", "Trey", "seedling", [])
    app = CompanionApp(root, watch_themes=False, device="cpu", seedling_dir=seedling)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        assert "did not finish" in str(app.screen.query_one("#welcome-title").render())
        await pilot.press("ctrl+r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        assert str(home.path) in str(app.screen.query_one("#confirm-message").render()).replace("\n", "")
        await pilot.press("n")  # no: nothing removed
        assert home.path.is_dir()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen" and app.screen.resume_home is None)
    assert not home.path.exists() and list_unborn(root) == []


async def test_the_seedling_can_be_adopted_into_an_unfinished_birth(tmp_path, seedling):
    root = tmp_path / "companions"
    create_home(root, "Scout", "Trey", "seedling", [])
    app = CompanionApp(root, watch_themes=False, device="cpu", seedling_dir=seedling)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        await pilot.press("ctrl+o")
        chat = await ready(pilot)
        assert "Scout" in chat.transcript.lines[0].text
    assert is_born(root / "Scout") and list_unborn(root) == []


def test_one_checkpoint_reads_one_probe_figure_in_the_list_and_the_night_report(tmp_path, tokenizer, seedling,
                                                                                capsys, one_torch_thread):
    root = tmp_path / "companions"
    home, _ = create_home(root, "Scout", "Trey", "seedling", [])
    with Store.open(home.store_path) as store:
        adopt_seedling(home, store, seedling)
    home = finish_birth(home)
    with Store.open(home.store_path) as store:
        [adopted] = store.checkpoints()
        assert adopted.probe_set.startswith("starter held-out, 32 windows")
    assert main(["checkpoints", "--home", str(root)]) == 0
    listed = capsys.readouterr().out
    assert f"{adopted.probe_ppl:.2f}" in listed

    with Store.open(home.store_path) as store:
        day, _ = script_day(home, store, tokenizer)
        report = run_night(home, store, day.id, night_settings(home), "cpu")
        assert report.status == "accepted", report.reason
        assert report.probe_before["starter_ppl"] == pytest.approx(adopted.probe_ppl, rel=1e-6)
        night = Weights(home, store).current()
        assert night.probe_ppl == pytest.approx(report.probe_after["starter_ppl"], rel=1e-9)
    lines = "\n".join(report_lines(report))
    assert f"probe perplexity {adopted.probe_ppl:.2f} -> {night.probe_ppl:.2f}" in lines
