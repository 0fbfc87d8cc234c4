"""Stopping qemu-ga inside a lab guest, for the tests that need an agent that hangs."""

from __future__ import annotations

import time

from virt_qga import errors as E
from virt_qga.agent import GuestAgent


def stop_agent(agent: GuestAgent) -> None:
    """SIGSTOP qemu-ga inside the guest, and wait until it really stopped answering.

    The signal is sent by a shell a moment after guest-exec returns: signalled at once,
    qemu-ga can stop before it has written the guest-exec reply (seen under load, where
    the forked child runs before its parent writes). Each probe waits 1 s; over libvirt a
    probe that times out leaves libvirt out of sync with the agent, so the caller's next
    call may fail at the sync instead of at its own command. guest-exec gets its own 30 s
    deadline: the agent under test may have been given a short one.
    """
    script = "sleep 1; kill -STOP $(pidof qemu-ga)"
    agent.call("guest-exec", {"path": "/bin/sh", "arg": ["-c", script]}, timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            agent.transport.execute("guest-ping", None, timeout=1)
        except (E.AgentTimeoutError, E.AgentNotConnectedError):
            return
    raise AssertionError("qemu-ga still answers 30 s after SIGSTOP")
