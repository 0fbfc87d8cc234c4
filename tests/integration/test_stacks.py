"""What differs between the lab's host stacks, and what must not.

``host`` is this machine's libvirt (9.0 on Debian 12) in **session** mode as the lab
user; ``debian13`` is libvirt 11.3 + QEMU 10.0 in **system** mode (libvirtd as root,
QEMU as libvirt-qemu, DAC relabelling). Each test runs on both and states, where they
differ, what it expects on which and why. Expectations follow the versions and the mode
the stack reports, not its name, so a Debian 13 host (whose ``host`` stack is itself
libvirt 11.3) gets the right ones.

Everything is checked without virt-qga's own code paths where it can be: ``/proc`` for
processes and mounts, ``os.stat`` for ownership, raw libvirt-python for error codes.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virt_qga import errors as E
from virt_qga.agent import GuestAgent
from virt_qga.lab import Lab, LabGuest
from virt_qga.lab.stacks import HOST

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")

ROOT = Path(__file__).resolve().parents[2]

#: virErrorNumber values libvirt 11.2 added (absent from the 9.0 bindings' constants).
VIR_ERR_AGENT_COMMAND_TIMEOUT = 112
VIR_ERR_AGENT_COMMAND_FAILED = 113


def versions(lab: Lab) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(libvirt, QEMU) versions of the stack's daemon, as tuples."""
    conn = libvirt.open(lab.uri)
    try:
        lib, hyp = conn.getLibVersion(), conn.getVersion()
    finally:
        conn.close()
    return (lib // 1_000_000, lib // 1000 % 1000), (hyp // 1_000_000, hyp // 1000 % 1000)


def raw_agent(g: LabGuest, cmd: str, args: dict[str, Any] | None = None, timeout: int = 10) -> Any:
    conn = libvirt.open(g.uri)
    try:
        payload: dict[str, Any] = {"execute": cmd, **({"arguments": args} if args else {})}
        return json.loads(libvirt_qemu.qemuAgentCommand(conn.lookupByName(g.name), json.dumps(payload),
                                                        timeout, 0))["return"]
    finally:
        conn.close()


def raw_error(g: LabGuest, cmd: str, args: dict[str, Any] | None = None, timeout: int = 10) -> Any:
    """The libvirtError libvirt raises for this agent command (AssertionError if none)."""
    try:
        raw_agent(g, cmd, args, timeout)
    except libvirt.libvirtError as exc:
        return exc
    raise AssertionError(f"{cmd} did not fail")


def guest_sh(g: LabGuest, script: str) -> str:
    args = {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}
    pid = raw_agent(g, "guest-exec", args)["pid"]
    for _ in range(300):
        st = raw_agent(g, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            assert st["exitcode"] == 0, st
            return base64.b64decode(st.get("out-data", "")).decode()
        time.sleep(0.1)
    raise AssertionError(f"guest command did not finish: {script}")


def stop_agent(g: LabGuest) -> None:
    """SIGSTOP qemu-ga inside the guest, after it has answered the guest-exec that asks
    for it (a direct ``kill -STOP`` can stop it before it replies)."""
    qga = guest_sh(g, "pidof qemu-ga").split()[0]
    raw_agent(g, "guest-exec", {"path": "/bin/sh", "arg": ["-c", f"sleep 0.5; kill -STOP {qga}"]})
    time.sleep(1.5)


def proc_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def root_passwd_uid(lab: Lab, user: str) -> int:
    """The uid of ``user`` as the stack's own /etc/passwd defines it."""
    root = lab.stack_info()["root"]
    for line in Path(root, "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2])
    raise AssertionError(f"{user} not in {root}/etc/passwd")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


# ------------------------------------------------------------------ what the stack is


def test_stack_is_what_it_says(lab: Lab, stack: str, guests: dict[str, LabGuest]) -> None:
    info = lab.stack_info()
    assert info["name"] == stack and info["daemon"] is True and info["uri"] == lab.uri
    lib, qemu = versions(lab)
    if stack == HOST:
        # whatever this machine has, in session mode as the lab user
        assert info["mode"] == "session" and "/session?" in lab.uri
    else:
        # Debian 13: libvirt 11.3, QEMU 10.0, a system-mode daemon
        assert info["mode"] == "system" and "/system?" in lab.uri
        assert (lib, qemu) == ((11, 3), (10, 0)), (lib, qemu)
        assert info["libvirt"].startswith("11.3.") and info["qemu"].startswith("10.0.")
    assert all(g.stack == stack and g.uri == lab.uri for g in guests.values() if g.kind == "libvirt")


def test_status_and_env_name_the_stack(lab: Lab, stack: str, guests: dict[str, LabGuest]) -> None:
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "--json", "lab", "status"], env=env,
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    by_name = {g["name"]: g for g in doc["guests"]}
    for g in guests.values():
        assert by_name[g.name]["stack"] == g.stack and by_name[g.name]["state"] == "running"
    stacks = {s["name"]: s for s in doc["stacks"]}
    assert stacks[stack]["daemon"] is True and stacks[stack]["uri"] == lab.uri
    human = cli("lab", "status")
    row = next(ln for ln in human.stdout.splitlines() if ln.startswith(guests["libvirt-7.2"].name))
    assert row.split()[1] == stack
    p = cli("lab", "env", "--stack", stack)
    assert p.returncode == 0, p.stderr
    assert f"export VIRT_QGA_CONNECT='{lab.uri}'" in p.stdout.splitlines()


# ------------------------------------------------------------------ session vs system mode


def test_qemu_user_and_disk_ownership(lab: Lab, stack: str, fresh_guest: Callable[..., LabGuest]) -> None:
    """Who QEMU runs as and who owns the disk it writes.

    host (session mode): QEMU is the lab user's process and the lab gives it its files.
    debian13 (system mode): libvirtd is root, QEMU runs as libvirt-qemu, and libvirt's
    DAC driver chowns the disk to libvirt-qemu for the run, then gives it back to its
    owner (root) when QEMU stops: the behaviour of a real qemu:///system host.
    """
    g = fresh_guest()
    assert g.pid is not None
    disk = g.data_disk
    if lab.session.mode == "session":
        ids = lab.host.user_ids()
        assert ids is not None
        assert proc_uid(g.pid) == ids[0] and disk.stat().st_uid == ids[0]
        return
    qemu_uid = root_passwd_uid(lab, "libvirt-qemu")
    assert qemu_uid != 0 and pwd.getpwuid(qemu_uid).pw_uid == qemu_uid
    assert proc_uid(g.pid) == qemu_uid
    assert [proc_uid(p) for p in lab.session.daemon_pids()] == [0, 0]  # libvirtd, virtlogd
    assert (disk.stat().st_uid, disk.stat().st_gid) == (qemu_uid, qemu_uid)
    assert disk.stat().st_mode & 0o777 == 0o644  # relabelled, not chmod'ed
    conn = libvirt.open(lab.uri)
    try:
        conn.lookupByName(g.name).destroy()
    finally:
        conn.close()
    deadline = time.monotonic() + 10
    while disk.stat().st_uid != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (disk.stat().st_uid, disk.stat().st_gid) == (0, 0), "libvirt did not restore the owner"


def test_agent_errors_come_back_with_the_stacks_codes(lab: Lab, stack: str,
                                                      fresh_guest: Callable[..., LabGuest]) -> None:
    """The same agent failures, as each libvirt reports them, and as virt-qga maps them.

    libvirt >= 11.2 (debian13) has codes of its own: AGENT_COMMAND_FAILED (113) when the
    agent answers with an error and AGENT_COMMAND_TIMEOUT (112) when it does not answer
    in time. libvirt 9.0 (host) reports an agent error as INTERNAL_ERROR (1) and a silent
    agent as AGENT_UNRESPONSIVE (86), with the cause only in the text. virt-qga must give
    the same error classes on both.
    """
    g = fresh_guest(agent="10.0")
    (lib, _qemu) = versions(lab)
    new_codes = lib >= (11, 2)
    failed = VIR_ERR_AGENT_COMMAND_FAILED if new_codes else libvirt.VIR_ERR_INTERNAL_ERROR

    err = raw_error(g, "guest-file-open", {"path": "/no/such/file", "mode": "r"})
    assert err.get_error_code() == failed, err.get_error_message()
    assert "No such file or directory" in err.get_error_message()
    err = raw_error(g, "guest-frobnicate")
    assert err.get_error_code() == failed, err.get_error_message()

    agent = GuestAgent.for_domain(g.name, g.uri, timeout=3.0)
    try:
        with pytest.raises(E.GuestError) as info:
            agent.file_open(path="/no/such/file", mode="r")
        assert not isinstance(info.value, E.CommandNotSupportedError)
        assert "No such file or directory" in str(info.value)
        with pytest.raises(E.CommandNotSupportedError):
            agent.transport.execute("guest-frobnicate", None, timeout=10)

        stop_agent(g)  # fresh_guest destroys the guest afterwards
        start = time.monotonic()
        err = raw_error(g, "guest-ping", timeout=3)
        took = time.monotonic() - start
        if new_codes:
            # the command was sent and not answered: libvirt's own timeout code
            assert err.get_error_code() == VIR_ERR_AGENT_COMMAND_TIMEOUT, err.get_error_message()
            assert "didn't respond to command within '3' seconds" in err.get_error_message()
        else:
            assert err.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE, err.get_error_message()
        assert took < 3 + 5
        # libvirt is now out of sync with the agent: the next call fails at the sync
        err = raw_error(g, "guest-ping", timeout=3)
        assert err.get_error_code() == libvirt.VIR_ERR_AGENT_UNRESPONSIVE, err.get_error_message()
        start = time.monotonic()
        with pytest.raises((E.AgentTimeoutError, E.AgentNotConnectedError)) as tinfo:
            agent.ping()
        assert time.monotonic() - start < 3 + 6
        assert E.is_transient(tinfo.value)
    finally:
        agent.close()


def test_timeout_code_maps_to_agent_timeout(lab: Lab, stack: str,
                                            fresh_guest: Callable[..., LabGuest]) -> None:
    """On libvirt >= 11.2 the first unanswered command is AGENT_COMMAND_TIMEOUT, and
    virt-qga must report exactly AgentTimeoutError (exit 4) for it, not a generic error.
    On libvirt 9.0 the same situation is AGENT_UNRESPONSIVE: AgentNotConnectedError (3)."""
    g = fresh_guest(agent="7.2")
    (lib, _qemu) = versions(lab)
    stop_agent(g)
    p = cli("--connect", lab.uri, "--json", "--timeout", "3", "ping", g.name)
    doc = json.loads(p.stdout)
    assert doc["ok"] is False
    if lib >= (11, 2):
        assert (p.returncode, doc["error"]) == (4, "AgentTimeoutError"), (p.returncode, p.stderr)
    else:
        assert p.returncode in (3, 4) and doc["error"] in ("AgentNotConnectedError", "AgentTimeoutError")
    assert "\n" not in p.stderr.strip()
