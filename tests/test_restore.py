"""Restoring a checkpoint: undoable, exact (the logits equal the checkpoint's), refused while a night
runs, and honest about files deleted behind the app's back. Headless and through the menu."""

from __future__ import annotations

import pytest
import torch
from textual.app import App

from companion.history.cli import cmd_checkpoints, cmd_restore
from companion.history.restore import RestoreError, plan_restore, restore
from companion.screens.checkpoints import CheckpointsScreen
from companion.day.scripted import Exchange
from companion.store import Store
from companion.history.weights import Weights
from companion.model.atomic import file_sha256 as file_checksum
from tests.test_history import live_day
from companion.widgets.lists import CheckpointList
from companion.widgets.text_prompt import ConfirmScreen

EXCHANGE = [Exchange("Hello there", ("Hi!", "Hey."), pick=0)]


def live_nights(home, store, nights: int = 2) -> list:
    """Birth, then ``nights`` days each followed by an accepted night whose weights differ."""
    weights = Weights(home, store)
    checkpoints = [weights.current()]
    for n in range(nights):
        loaded = weights.load_current()
        day = live_day(home, store, EXCHANGE, checkpoint_id=checkpoints[-1].id)
        night = store.start_night(day.id, pre_checkpoint_id=checkpoints[-1].id)
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.add_(0.01 * (n + 1))
        saved = weights.save(loaded.model, "night", step=10 * (n + 1), day_id=day.id, day_number=day.number,
                             parent_id=checkpoints[-1].id, probe_ppl=50.0 - n)
        store.finish_night(night.id, "accepted", post_checkpoint_id=saved.id)
        checkpoints.append(saved)
    return checkpoints


def logits(model, tokens=(5, 9, 17, 33, 2)) -> torch.Tensor:
    with torch.no_grad():
        out = model(torch.tensor([list(tokens)]))
    return out[0] if isinstance(out, tuple) else out


def test_restore_then_undo_gives_back_exactly_the_weights(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        birth, night1, night2 = live_nights(tiny_home, store)
        weights = Weights(tiny_home, store)
        plan = plan_restore(tiny_home, store, night1.id)
        assert plan.days_leaving == (2,) and plan.current.id == night2.id

        result = restore(tiny_home, store, night1.id)
        assert weights.current().id == night1.id
        # The weights it lived on are already night 2's file: referred to, not written again.
        assert result.saved.id == night2.id and store.checkpoints(reason="pre-restore") == []
        assert result.days_marked == 1
        assert [d.in_weights for d in store.days()] == [True, False]  # day 2 stays, marked out
        assert len(store.turns(store.days()[1].id)) == 5  # greeting, prompt, indicator, reply, good night
        expected = weights.load(night1).model
        assert torch.equal(logits(weights.load_current().model), logits(expected))

        undo = restore(tiny_home, store, result.saved.id)
        assert weights.current().id == result.saved.id
        assert [d.in_weights for d in store.days()] == [True, True]
        assert undo.saved.id == night1.id
        assert torch.equal(logits(weights.load_current().model), logits(weights.load(night2).model))
        # Restore and undo: the same three checkpoints, no two with one checksum.
        live = store.checkpoints()
        assert len(live) == 3 and len({c.checksum for c in live}) == 3



def test_restore_is_refused_while_a_night_runs_and_changes_nothing(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        birth, night1 = live_nights(tiny_home, store, 1)
        day = live_day(tiny_home, store, EXCHANGE)
        store.start_night(day.id, pre_checkpoint_id=night1.id)
        before = (tiny_home.checkpoints_dir / "CURRENT").read_bytes(), len(store.checkpoints())
        with pytest.raises(RestoreError, match="a night is running"):
            restore(tiny_home, store, birth.id)
        assert ((tiny_home.checkpoints_dir / "CURRENT").read_bytes(), len(store.checkpoints())) == before


def test_a_deleted_file_is_refused_before_anything_is_saved(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        birth, night1 = live_nights(tiny_home, store, 1)
        (tiny_home.path / birth.path).unlink()
        with pytest.raises(RestoreError, match="missing"):
            restore(tiny_home, store, birth.id)
        assert len(store.checkpoints()) == 2
        with pytest.raises(RestoreError, match="already"):
            restore(tiny_home, store, night1.id)


class Host(App):
    def __init__(self, home, store) -> None:
        super().__init__()
        self.home, self.store = home, store
        self.restored: list[int] = []

    def on_mount(self) -> None:
        self.push_screen(CheckpointsScreen(self.home, self.store))

    def on_checkpoints_screen_restored(self, message: CheckpointsScreen.Restored) -> None:
        self.restored.append(message.checkpoint_id)


async def _settle(pilot, times: int = 4) -> None:
    for _ in range(times):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def test_the_menu_restores_after_confirmation_and_can_undo(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        birth, night1, night2 = live_nights(tiny_home, store)
        app = Host(tiny_home, store)
        async with app.run_test(size=(150, 40)) as pilot:
            await _settle(pilot)
            screen = app.screen
            rows = screen.query_one(CheckpointList).rows
            assert [(r.id, r.reason, r.day, r.current) for r in rows] == [
                (birth.id, "birth", None, False), (night1.id, "night", 1, False), (night2.id, "night", 2, True)]
            status = str(screen.query_one("#checkpoints-status").render())
            assert "on disk" in status and "no backup yet" in status

            await pilot.press("up")  # night 1
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen), str(screen.query_one("#checkpoints-message").render()) + repr(screen.query_one(CheckpointList).highlighted) + repr(app.focused)
            message = str(app.screen.query_one("#confirm-message").render())
            assert f"Restore checkpoint {night1.id}" in message and "Day 2 stay" in message
            await pilot.press("n")
            await _settle(pilot)
            assert Weights(tiny_home, store).current().id == night2.id and app.restored == []

            await pilot.press("r")
            await pilot.pause()
            await pilot.press("y")
            await _settle(pilot)
            assert app.restored == [night1.id]
            assert Weights(tiny_home, store).current().id == night1.id
            said = str(screen.query_one("#checkpoints-message").render())
            pre = night2  # the weights it lived on already had a file: referred to, not copied
            assert f"restore checkpoint {pre.id} (night)" in said and store.checkpoints(reason="pre-restore") == []

            rows = screen.query_one(CheckpointList).rows
            assert [r.current for r in rows] == [False, True, False]
            screen.query_one(CheckpointList).highlighted = len(rows) - 1
            await pilot.press("r")
            await pilot.pause()
            await pilot.press("y")
            await _settle(pilot)
            assert app.restored == [night1.id, pre.id]
            assert file_checksum(tiny_home.path / pre.path) and Weights(tiny_home, store).current().id == pre.id
            assert torch.equal(logits(Weights(tiny_home, store).load_current().model),
                               logits(Weights(tiny_home, store).load(night2).model))


async def test_the_menu_says_missing_and_refuses_during_a_night(tiny_home):
    with Store.open(tiny_home.store_path) as store:
        birth, night1 = live_nights(tiny_home, store, 1)
        (tiny_home.path / birth.path).unlink()
        app = Host(tiny_home, store)
        async with app.run_test(size=(150, 40)) as pilot:
            await _settle(pilot)
            screen = app.screen
            rows = screen.query_one(CheckpointList).rows
            assert rows[0].missing and "missing" in rows[0].prompt().plain
            screen.query_one(CheckpointList).highlighted = 0
            await pilot.pause()
            assert "MISSING" in str(screen.query_one("#checkpoint-story").render())
            await pilot.press("r")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
            assert "missing" in str(screen.query_one("#checkpoints-message").render())

            # a night starts (another day's): restore is refused until it ends, with a message
            pre_night = store.checkpoints()[-1]
            day = live_day(tiny_home, store, EXCHANGE)
            store.start_night(day.id, pre_checkpoint_id=pre_night.id)
            restore_target = len(rows) - 1
            screen.query_one(CheckpointList).highlighted = restore_target
            await pilot.press("r")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
            assert "a night is running" in str(screen.query_one("#checkpoints-message").render())
            assert app.restored == []


def test_checkpoints_and_restore_commands(tiny_home, capsys):
    with Store.open(tiny_home.store_path) as store:
        birth, night1 = live_nights(tiny_home, store, 1)

    class Args:
        home, name, checkpoint_id, yes = str(tiny_home.path), None, birth.id, True

    assert cmd_checkpoints(Args) == 0
    out = capsys.readouterr().out
    assert "birth" in out and "night" in out and "no backup yet" in out and f"* {night1.id:>4}" in out
    assert cmd_restore(Args) == 0
    out = capsys.readouterr().out
    assert f"restored checkpoint {birth.id}" in out and "undoes this" in out
    Args.checkpoint_id = 999
    assert cmd_restore(Args) == 2
    assert "no checkpoint 999" in capsys.readouterr().err
