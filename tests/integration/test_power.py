"""shutdown (and reboot) on fresh guests: the effect is confirmed, within a deadline."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_exec import vq, vq_json
from virt_qga.host import Domain
from virt_qga.workflows.power import PMSUSPENDED


@pytest.mark.parametrize("agent", ["7.2", "10.0"])
def test_shutdown_over_libvirt_ends_shut_off(fresh_guest: Any, agent: str) -> None:
    g = fresh_guest(agent=agent)
    rc, doc = vq_json(g, "shutdown", "--wait", "60")
    assert rc == 0, doc
    assert doc["confirmed"] is True and doc["final_state"] == "shut off" and doc["duration"] < 60
    assert Domain.lookup(g.name, g.uri).state() == "shut off"


@pytest.mark.stacks("host")  # a plain QEMU guest: no libvirt stack involved
def test_shutdown_over_socket_says_what_was_not_confirmed(fresh_guest: Any) -> None:
    g = fresh_guest(agent="10.0", plain=True)
    rc, doc = vq_json(g, "shutdown", "--mode", "halt", "--wait", "60")
    assert rc == 0, doc
    assert doc["agent_gone"] is True and doc["final_state"] is None
    assert doc["not_confirmed"] and "domain state" in doc["not_confirmed"][0]


def test_reboot_over_libvirt_agent_comes_back(fresh_guest: Any) -> None:
    g = fresh_guest(agent="7.2")
    rc, doc = vq_json(g, "shutdown", "--mode", "reboot", "--wait", "90")
    assert rc == 0, doc
    assert doc["confirmed"] and doc["agent_gone"] and doc["final_state"] == "running"
    assert vq(g, "exec", "--", "true").returncode == 0


def test_suspend_ram_is_confirmed_or_refused_clearly(fresh_guest: Any) -> None:
    """The lab guest may or may not support S3; either way the outcome is explicit."""
    g = fresh_guest(agent="10.0")
    p = vq(g, "suspend", "ram", "--wait", "30")
    err = p.stderr.decode()
    assert "Traceback" not in err
    if p.returncode == 0:
        assert "dompmwakeup" in err
        assert Domain.lookup(g.name, g.uri).state() == PMSUSPENDED
    else:
        assert len(err.strip().splitlines()) == 1 and err.startswith("virt-qga: error:")
