"""The libvirt connection cache: a connection whose daemon went away is reopened.

A real libvirtd restart is exercised in tests/integration/test_backup_chains.py
(``test_libvirtd_restart_mid_job_is_waited_out``); these cases pin the decision itself
with a stand-in for libvirt-python, including one a real daemon produces only by chance
(``isAlive()`` true, the next call failing).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from virt_qga import connection


class FakeError(Exception):
    pass


class FakeConn:
    def __init__(self, alive: bool = True, broken: bool = False) -> None:
        self.alive, self.broken, self.closed = alive, broken, False

    def isAlive(self) -> bool:
        return self.alive

    def getLibVersion(self) -> int:
        if self.broken:
            raise FakeError("Cannot write data: Broken pipe")
        return 9000000

    def close(self) -> int:
        self.closed = True
        return 0


@pytest.fixture
def fake_libvirt(monkeypatch: pytest.MonkeyPatch) -> list[FakeConn]:
    opened: list[FakeConn] = []

    def open_(_uri: str | None) -> FakeConn:
        opened.append(FakeConn())
        return opened[-1]

    lv = SimpleNamespace(libvirtError=FakeError, open=open_, openReadOnly=open_)
    monkeypatch.setattr(connection, "import_libvirt", lambda: lv)
    monkeypatch.setattr(connection, "_connections", {})
    return opened


def test_a_live_connection_is_reused(fake_libvirt: list[FakeConn]) -> None:
    first: Any = connection.open_connection("test:///x")
    assert connection.open_connection("test:///x") is first and len(fake_libvirt) == 1


@pytest.mark.parametrize("state", [{"alive": False}, {"broken": True}],
                         ids=["isAlive-false", "alive-but-daemon-gone"])
def test_a_dead_connection_is_closed_and_reopened(fake_libvirt: list[FakeConn],
                                                  state: dict[str, bool]) -> None:
    first: Any = connection.open_connection("test:///x")
    for name, value in state.items():
        setattr(first, name, value)
    second = connection.open_connection("test:///x")
    assert second is not first and len(fake_libvirt) == 2
    assert first.closed
    assert connection.open_connection("test:///x") is second
