"""The app and a damaged store, a crash window, or text that is not valid Unicode: named, offered a way back, told at start."""

from __future__ import annotations

import pytest

from companion.history.backup import make_backup
from companion.store import Store
from tests.faults.test_findings import crash_window_state, damage_store, fill_store
from tests.test_app import SIZE, app_for, ready, until

pytestmark = pytest.mark.usefixtures("one_torch_thread")


async def test_the_app_offers_the_newest_verified_backup_for_a_damaged_store(tiny_home, tokenizer):
    from companion.widgets.text_prompt import ConfirmScreen

    fill_store(tiny_home, tokenizer)
    with Store.open(tiny_home.store_path) as store:
        make_backup(tiny_home, store)
    damage_store(tiny_home.store_path)
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "is damaged" in app.screen.message and "kept aside" in app.screen.message
        await pilot.press("y")
        await ready(pilot)  # the day opens on the recovered store
    assert len(list(tiny_home.path.glob("companion.db.damaged-*"))) == 1
    with Store.open(tiny_home.store_path) as store:
        assert store.integrity_check() == ["ok"]


async def test_saying_no_to_the_recovery_changes_nothing(tiny_home, tokenizer):
    from companion.widgets.text_prompt import ConfirmScreen

    fill_store(tiny_home, tokenizer)
    with Store.open(tiny_home.store_path) as store:
        make_backup(tiny_home, store)
    damage_store(tiny_home.store_path)
    before = tiny_home.store_path.read_bytes()
    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 2
    assert tiny_home.store_path.read_bytes() == before and not list(tiny_home.path.glob("companion.db.damaged-*"))


async def test_the_app_tells_the_owner_when_it_sets_current_back_from_an_unaccepted_night(tiny_home, tokenizer):
    store, day, pre, orphan = crash_window_state(tiny_home, tokenizer)
    store.close()
    (tiny_home.checkpoints_dir / f".{orphan.path.split('/')[-1]}.abc123.tmp").write_bytes(b"\0" * 1000)
    app = app_for(tiny_home)

    def said(*words) -> bool:
        return any(all(w in n.message for w in words) for n in app.notices)

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: said("removed checkpoints/.", "interrupted save"))
        await until(pilot, lambda: said(f"checkpoint {orphan.id}", "never recorded as accepted"), timeout=60)
        await until(pilot, lambda: app.engine is not None)
        assert app.engine.checkpoint_id == pre.id


async def test_a_message_with_a_lone_surrogate_is_refused_in_the_chat_with_a_message(tiny_home):
    from tests.test_app import stored_turns

    app = app_for(tiny_home)
    async with app.run_test(size=SIZE) as pilot:
        chat = await ready(pilot)
        before = len(stored_turns(tiny_home))
        chat.message_input.focus()
        chat.message_input.value = "bad \udc80 text"
        await pilot.press("enter")
        await until(pilot, lambda: any("not valid Unicode" in n.message for n in app.notices))
        assert len(stored_turns(tiny_home)) == before
