"""The night screen follows a real night trained by the trainer thread, stays responsive, and lets the
owner annotate the dream in the morning."""

from __future__ import annotations

import pytest

import asyncio
import time

from textual.app import App

from companion.screens.night import MorningReport, NightScreen
from companion.store import Store
from companion.night.thread import TrainerThread
from tests.test_night import PROBE, night_settings, script_day
from companion.widgets.inner import AnnotationEditor
from companion.widgets.night import NightProgress
from companion.widgets.transcript import TranscriptView

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NightApp(App):
    def __init__(self, screen: NightScreen) -> None:
        super().__init__()
        self.night_screen = screen

    def on_mount(self) -> None:
        self.install_screen(self.night_screen, "night")
        self.push_screen("night")


async def wait_for(pilot, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def test_the_screen_shows_a_real_night_and_its_morning_and_the_dream_can_be_annotated(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)

        async def scenario():
            screen = NightScreen(day_number=day.number, store=store)
            trainer = TrainerThread(tiny_home, day.id, store=store, settings=night_settings(tiny_home),
                                    device="cpu", probe_windows=PROBE)
            trainer.on_event = screen.forwarder()
            app = NightApp(screen)
            async with app.run_test() as pilot:
                trainer.start()
                await wait_for(pilot, lambda: screen.finished)
                trainer.join(10)
                progress = screen.query_one(NightProgress)
                assert screen.report.status == "accepted"
                assert progress.has_class("-done") and len(progress.loss_history()) == screen.report.steps
                assert screen.has_class("-morning")
                summary = str(screen.query_one("#morning-summary").render())
                assert "accepted" in summary and "What it taught" in summary and "What it cost" in summary

                view = screen.query_one(MorningReport).query_one(TranscriptView)
                assert view.lines, "the dream is shown line by line"
                view.focus()
                view.cursor = 0
                await pilot.press("a")
                await wait_for(pilot, lambda: isinstance(app.screen, AnnotationEditor))
                await pilot.press("space")  # the first preset: keep
                await pilot.press("ctrl+s")
                await wait_for(pilot, lambda: store.annotation(dream_id=screen.report.dream_id, line_index=0) is not None)
            note = store.annotation(dream_id=screen.report.dream_id, line_index=0)
            assert note.tags == ("keep",)

        asyncio.run(scenario())


def test_stop_on_the_screen_interrupts_the_night_within_a_step(tiny_home, tokenizer):
    with Store.open(tiny_home.store_path) as store:
        day, _ = script_day(tiny_home, store, tokenizer)

        async def scenario():
            trainer_box = []
            screen = NightScreen(day_number=day.number, store=store, on_stop=lambda: trainer_box[0].stop())
            long_night = night_settings(tiny_home, **{"night.steps": 400, "night.lessons.steps": 400})  # still running when asked twice
            trainer = TrainerThread(tiny_home, day.id, store=store, settings=long_night,
                                    device="cpu", probe_windows=PROBE)
            trainer_box.append(trainer)
            trainer.on_event = screen.forwarder()
            async with NightApp(screen).run_test() as pilot:
                trainer.start()
                await wait_for(pilot, lambda: screen.query_one(NightProgress).step >= 1)
                await pilot.press("s")  # one key never stops a night: it asks first
                await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
                assert "weights stay exactly" in str(pilot.app.screen.query_one("#confirm-message").render())
                await pilot.press("y", "e", "s")  # typing by mistake: no letter says yes
                assert type(pilot.app.screen).__name__ == "ConfirmScreen" and not trainer.stopping
                await pilot.press("escape")  # no: the night goes on
                await wait_for(pilot, lambda: pilot.app.screen is screen)
                assert not trainer.stopping and not screen.finished
                await pilot.press("s")
                await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
                await pilot.press("shift+tab", "enter")  # on purpose: the Yes button
                await wait_for(pilot, lambda: screen.finished, timeout=20)
                assert screen.report.status == "interrupted"
            trainer.join(10)
            assert not trainer.is_alive()

        asyncio.run(scenario())
