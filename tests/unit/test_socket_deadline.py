"""One call, one deadline: connect + sync + command over the socket end by ``timeout``.

A stopped agent (SIGSTOP in a real guest; here a scripted peer that accepts and stays
silent, which is what QEMU's chardev does for a stopped qemu-ga) used to hold
``virt-qga --timeout 1 ping`` for the sync's own 5 s. The margins below are for a
loaded 2-core machine: the transport itself overshoots by a few milliseconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.unit.scripted_peer import Expect, Hold, ScriptedPeer, Send, Sleep, SyncReply
from virt_qga.errors import AgentNotConnectedError, AgentTimeoutError
from virt_qga.exitcodes import ExitCode
from virt_qga.transport.socket import SocketTransport

pytestmark = pytest.mark.timeout(60)

SYNC = "guest-sync-delimited"
#: What the transport may overshoot its deadline by (poll granularity, scheduling).
MARGIN = 0.25


@pytest.fixture
def sock_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="qga-", dir="/tmp")
    yield os.path.join(d, "qga.sock")
    shutil.rmtree(d, ignore_errors=True)


def test_silent_agent_fails_by_the_call_deadline_not_the_sync_limit(sock_path: str) -> None:
    # connect_timeout and sync_timeout keep their 5 s defaults: the call's 0.4 s wins.
    with ScriptedPeer(sock_path, [[Hold()]]) as peer, SocketTransport(sock_path, timeout=0.4) as t:
        start = time.monotonic()
        with pytest.raises(AgentNotConnectedError) as ei:
            t.execute("guest-ping")
        elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 0.4 + MARGIN
    assert str(ei.value) == (f"agent not responding on {sock_path}: "
                             "no reply to guest-sync-delimited within 0.4 s")
    assert peer.commands() == []


def test_per_call_timeout_bounds_the_sync_too(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [[Hold()]]), SocketTransport(sock_path, timeout=30) as t:
        start = time.monotonic()
        with pytest.raises(AgentNotConnectedError, match=r"within 0\.3 s"):
            t.execute("guest-ping", timeout=0.3)
        assert time.monotonic() - start < 0.3 + MARGIN


def test_a_slow_sync_leaves_the_command_only_what_is_left(sock_path: str) -> None:
    script = [Expect(SYNC), Sleep(0.3), SyncReply(),
              Expect("test-slow"), Sleep(0.5), Send(b'{"return": 1}\n')]
    with ScriptedPeer(sock_path, [script]), SocketTransport(sock_path, timeout=0.5) as t:
        start = time.monotonic()
        with pytest.raises(AgentTimeoutError) as ei:
            t.execute("test-slow")
        elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 0.5 + MARGIN
    assert str(ei.value) == "test-slow: no reply within 0.5 s"


def test_the_sync_keeps_its_own_shorter_limit(sock_path: str) -> None:
    with ScriptedPeer(sock_path, [[Hold()]]), \
            SocketTransport(sock_path, timeout=10, sync_timeout=0.2) as t:
        start = time.monotonic()
        with pytest.raises(AgentNotConnectedError, match=r"within 0\.2 s"):
            t.execute("guest-ping")
        assert time.monotonic() - start < 0.2 + MARGIN


def test_cli_ping_over_a_silent_socket_ends_by_timeout(sock_path: str) -> None:
    """The defect as a user met it: ``virt-qga --socket S --timeout 1 ping x`` took 5 s."""
    with ScriptedPeer(sock_path, [[Hold()]]):
        start = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "--socket", sock_path,
                            "--timeout", "1", "ping", "x"], capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - start
    assert p.returncode == ExitCode.AGENT_UNAVAILABLE, p.stderr
    assert p.stderr.strip() == (f"virt-qga: error: x: agent not responding on {sock_path}: "
                                "no reply to guest-sync-delimited within 1.0 s")
    # 1 s of deadline; the rest is the process starting and exiting on a loaded machine.
    assert 1.0 <= elapsed < 1.0 + 1.5, f"took {elapsed:.2f} s"
