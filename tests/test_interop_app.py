"""Interop inside the app: export from the checkpoints screen, and a birth from an open base on the
welcome screen when one is on disk."""

from __future__ import annotations

import gguf
import pytest

from companion.app import CompanionApp
from tests.test_app import SIZE, ready, until
from tests.test_interop_import import base_folder, base_tokenizer  # noqa: F401 (fixtures)
from tests.test_restore import Host, _settle
from companion.store import Store
from textual.widgets import Input

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def test_the_checkpoints_screen_exports_and_refuses_an_existing_path(tiny_home, tmp_path):
    target = tmp_path / "scout.gguf"
    with Store.open(tiny_home.store_path) as store:
        app = Host(tiny_home, store)
        async with app.run_test(size=(150, 40)) as pilot:
            await _settle(pilot)
            screen = app.screen
            await pilot.press("e")
            await until(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
            app.screen.query_one(Input).value = str(target)
            await pilot.press("enter")
            await until(pilot, lambda: "Exported checkpoint 1" in str(screen.query_one("#checkpoints-message").render()))
            assert gguf.GGUFReader(target).fields["general.name"].contents() == "Scout"
            before = target.read_bytes()
            await pilot.press("e")
            await until(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
            app.screen.query_one(Input).value = str(target)
            await pilot.press("enter")
            await until(pilot, lambda: "already exists" in str(screen.query_one("#checkpoints-message").render()))
            assert target.read_bytes() == before


async def test_the_welcome_screen_offers_a_base_on_disk_and_is_born_from_it(tmp_path, base_folder, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COMPANION_BASE", str(base_folder))
    root = tmp_path / "companions"
    app = CompanionApp(root, watch_themes=False, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        assert str(base_folder) in str(app.screen.query_one("#welcome-base").render())
        await pilot.press("ctrl+l")  # no names yet: refused, nothing written
        assert not root.exists() or not any(root.iterdir())
        await pilot.press(*"Sol", "tab", *"Trey")
        await pilot.press("ctrl+l")
        chat = await ready(pilot)
        assert "Sol" in chat.transcript.lines[0].text
    with Store.open(root / "Sol" / "companion.db") as store:
        assert [c.reason for c in store.checkpoints()] == ["import"]


async def test_without_a_base_the_welcome_screen_does_not_offer_one(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_BASE", raising=False)
    app = CompanionApp(tmp_path / "companions", watch_themes=False, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen")
        assert not app.screen.query("#from-base")
