"""Invariant 5: the app opens no network connection unless the owner configures a teacher.

A Python audit hook sees every real `socket.connect` in this process while a whole day and its night
run in the app (nothing is patched: the hook only watches).
"""

from __future__ import annotations

import socket
import sys

import pytest

from tests.test_app_night import QUICK_NIGHT, live_a_day_and_say_good_night
from tests.test_app import app_for, quick, until

_watch = {"on": False, "seen": []}


def _audit(event: str, args: tuple) -> None:
    if _watch["on"] and event == "socket.connect":
        sock, address = args[0], args[1]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _watch["seen"].append(address)


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records while switched on

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def watching():
    _watch["on"], _watch["seen"] = True, []
    yield _watch["seen"]
    _watch["on"] = False


def test_the_hook_sees_a_real_connection(watching):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    address = server.getsockname()
    with socket.create_connection(address):
        pass
    server.close()
    assert watching == [address]


async def test_a_day_and_its_night_open_no_connection(tiny_home, watching):
    quick(tiny_home, **QUICK_NIGHT)
    app = app_for(tiny_home)
    async with app.run_test(size=(110, 40)) as pilot:
        await live_a_day_and_say_good_night(pilot)
        await until(pilot, lambda: getattr(app.screen, "finished", False), timeout=120)
    assert watching == []
