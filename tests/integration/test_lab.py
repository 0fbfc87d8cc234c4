"""The lab itself: real agents answer, fsfreeze really freezes, hotplug works, lifecycle is clean.

No mocks: every test talks to real QEMU guests running the real qemu-ga. Every test runs
on each lab stack (see conftest.py) unless it says otherwise; the lifecycle tests check
that ``down`` leaves no process and no mount of either stack.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import Lab, LabGuest
from virt_qga.lab.proc import pid_alive, pid_cmdline
from virt_qga.lab.stacks import HOST

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")


# ------------------------------------------------------------------ helpers


def lv_command(
    lab: Lab, guest: LabGuest, execute: str, arguments: dict[str, Any] | None = None, timeout: int = 10
) -> Any:
    """One agent command through libvirt's qemuAgentCommand; returns ``return``."""
    conn = libvirt.open(lab.uri)
    try:
        dom = conn.lookupByName(guest.name)
        cmd: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            cmd["arguments"] = arguments
        return json.loads(libvirt_qemu.qemuAgentCommand(dom, json.dumps(cmd), timeout, 0))["return"]
    finally:
        conn.close()


class RawChannel:
    """The smallest honest channel-socket client: 0xFF + guest-sync-delimited, then
    discard everything up to the 0xFF sentinel and the reply with our id."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        sync_id = random.randint(1, 2**31 - 1)
        self.sock.sendall(
            b"\xff"
            + json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}).encode()
            + b"\n"
        )
        while True:
            while b"\xff" not in self.buf:
                self.buf = self._recv()
            self.buf = self.buf.split(b"\xff", 1)[1]
            if self._line().get("return") == sync_id:
                break

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        assert chunk, "agent channel closed"
        return chunk

    def _line(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            self.buf += self._recv()
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            value = json.loads(line)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def command(self, execute: str, arguments: dict[str, Any] | None = None) -> Any:
        cmd: dict[str, Any] = {"execute": execute}
        if arguments is not None:
            cmd["arguments"] = arguments
        self.sock.sendall(json.dumps(cmd).encode() + b"\n")
        reply = self._line()
        assert "return" in reply, reply
        return reply["return"]

    def close(self) -> None:
        self.sock.close()


def lv_exec(lab: Lab, guest: LabGuest, script: str) -> int:
    return int(
        lv_command(
            lab, guest, "guest-exec", {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}
        )["pid"]
    )


def lv_exec_wait(lab: Lab, guest: LabGuest, pid: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = lv_command(lab, guest, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            st["out"] = base64.b64decode(st.get("out-data", "")).decode()
            return dict(st)
        time.sleep(0.1)
    raise AssertionError(f"guest process {pid} did not exit within {timeout} s")


def lv_run(lab: Lab, guest: LabGuest, script: str) -> str:
    st = lv_exec_wait(lab, guest, lv_exec(lab, guest, script))
    assert st["exitcode"] == 0, st
    return str(st["out"])


# ------------------------------------------------------------------ the agents answer


@pytest.mark.parametrize("key", ["libvirt-7.2", "libvirt-10.0"])
def test_agent_answers_over_libvirt(lab: Lab, guests: dict[str, LabGuest], key: str) -> None:
    guest = guests[key]
    assert guest.kind == "libvirt" and guest.uri == lab.uri
    conn = libvirt.open(lab.uri)
    try:
        dom = conn.lookupByName(guest.name)
        reply = json.loads(libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 10, 0))
        assert reply == {"return": {}}
        info = json.loads(libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-info"}', 10, 0))["return"]
    finally:
        conn.close()
    assert info["version"].startswith(guest.agent + "."), info["version"]


@pytest.mark.parametrize("key", ["plain-7.2", "plain-10.0"])
def test_agent_answers_over_plain_socket(guests: dict[str, LabGuest], key: str) -> None:
    guest = guests[key]
    assert guest.kind == "plain" and guest.socket and Path(guest.socket).is_socket()
    assert guest.qmp and Path(guest.qmp).is_socket()
    chan = RawChannel(guest.socket)
    try:
        assert chan.command("guest-ping") == {}
        assert chan.command("guest-info")["version"].startswith(guest.agent + ".")
    finally:
        chan.close()


@pytest.mark.stacks(HOST)  # plain QEMU: no libvirt stack involved
def test_plain_guest_has_qmp(guests: dict[str, LabGuest]) -> None:
    guest = guests["plain-7.2"]
    assert guest.qmp is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(guest.qmp)
        f = s.makefile("rwb")
        assert "QMP" in json.loads(f.readline())
        for cmd in ({"execute": "qmp_capabilities"}, {"execute": "query-status"}):
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            reply = json.loads(f.readline())
        assert reply["return"]["status"] == "running"


def test_guest_userland(lab: Lab, guests: dict[str, LabGuest]) -> None:
    """What other tests rely on: /data is ext4 on vda, tester exists, applets, fsprobe, hostname."""
    guest = guests["libvirt-10.0"]
    out = lv_run(
        lab,
        guest,
        "grep ' /data ' /proc/mounts; grep ^tester: /etc/passwd; test -d /home/tester && "
        "echo home-ok; for t in hwclock chpasswd taskset sha256sum fsprobe shutdown; "
        "do command -v $t >/dev/null && echo have-$t; done; hostname",
    )
    assert "/dev/vda /data ext4" in out
    assert "tester:x:1000:1000:" in out and "home-ok" in out
    for tool in ("hwclock", "chpasswd", "taskset", "sha256sum", "fsprobe", "shutdown"):
        assert f"have-{tool}" in out, out
    assert out.strip().splitlines()[-1] == guest.name


# ------------------------------------------------------------------ fsfreeze is real


@pytest.mark.parametrize("key", ["libvirt-7.2", "libvirt-10.0"])
def test_fsfreeze_blocks_data_writes_until_thaw(lab: Lab, guests: dict[str, LabGuest], key: str) -> None:
    """A write+sync to /data started just before the freeze can only finish after thaw.

    While frozen the agent refuses guest-exec-status, so the proof uses the guest's own
    clock: the writer prints /proc/uptime when done; a probe run right after thaw prints
    it too. Unfrozen, the writer would finish ~2.5 s before the thaw.
    """
    guest = guests[key]
    writer = lv_exec(lab, guest, "sleep 0.5; echo x > /data/frozen-write; sync; cut -d' ' -f1 /proc/uptime")
    try:
        assert lv_command(lab, guest, "guest-fsfreeze-freeze") >= 1
        assert lv_command(lab, guest, "guest-fsfreeze-status") == "frozen"
        time.sleep(3.0)
        assert lv_command(lab, guest, "guest-fsfreeze-status") == "frozen"
    finally:
        lv_command(lab, guest, "guest-fsfreeze-thaw")
    thawed_at = float(lv_run(lab, guest, "cut -d' ' -f1 /proc/uptime"))
    st = lv_exec_wait(lab, guest, writer)
    assert st["exitcode"] == 0
    done_at = float(st["out"])
    assert done_at >= thawed_at - 0.5, f"write finished at {done_at}, thaw at ~{thawed_at}: not blocked"
    assert lv_command(lab, guest, "guest-fsfreeze-status") == "thawed"


def test_fsprobe_measures_the_frozen_window(lab: Lab, guests: dict[str, LabGuest]) -> None:
    guest = guests["libvirt-10.0"]
    lv_run(lab, guest, "rm -f /data/probe")
    probe = lv_exec(lab, guest, "fsprobe /data/probe 6")
    time.sleep(1.5)
    try:
        lv_command(lab, guest, "guest-fsfreeze-freeze")
        time.sleep(2.0)
    finally:
        lv_command(lab, guest, "guest-fsfreeze-thaw")
    st = lv_exec_wait(lab, guest, probe, timeout=30)
    assert st["exitcode"] == 0
    out = lv_run(
        # %.0f, not %d: busybox awk clamps %d to 32 bits, and a gap over 2.147 s (the 2 s
        # freeze plus a slow thaw under load) printed as -2147483648.
        lab, guest, "awk 'NR>1 {d=$1-p; if (d>m) m=d} {p=$1} END {printf \"%.0f %d\\n\", m, NR}' /data/probe"
    )
    max_gap_ns, lines = (int(v) for v in out.split())
    assert lines > 200, f"fsprobe wrote only {lines} lines"
    assert 1.5e9 <= max_gap_ns <= 10e9, f"largest gap {max_gap_ns / 1e9:.3f} s"


# ------------------------------------------------------------------ hot-plug layout


def test_vcpus_two_online_of_hotpluggable_layout(lab: Lab, fresh_guest: Any) -> None:
    guest = fresh_guest(agent="7.2")
    vcpus = lv_command(lab, guest, "guest-get-vcpus")
    assert sorted(v["logical-id"] for v in vcpus if v["online"]) == [0, 1]
    assert {v["logical-id"]: v["can-offline"] for v in vcpus}[0] is False
    conn = libvirt.open(lab.uri)
    try:
        dom = conn.lookupByName(guest.name)
        assert dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM) == 4
        dom.setVcpusFlags(3, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    finally:
        conn.close()
    deadline = time.monotonic() + 15
    ids: list[int] = []
    while time.monotonic() < deadline:
        ids = sorted(v["logical-id"] for v in lv_command(lab, guest, "guest-get-vcpus"))
        if ids == [0, 1, 2]:
            break
        time.sleep(0.3)
    assert ids == [0, 1, 2]


def test_dimm_hotplug_adds_memory_blocks(lab: Lab, fresh_guest: Any) -> None:
    guest = fresh_guest(agent="10.0")
    block = lv_command(lab, guest, "guest-get-memory-block-info")["size"]
    before = {b["phys-index"] for b in lv_command(lab, guest, "guest-get-memory-blocks")}
    conn = libvirt.open(lab.uri)
    try:
        conn.lookupByName(guest.name).attachDeviceFlags(
            "<memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target></memory>",
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )
    finally:
        conn.close()
    expected = 256 * 1024 * 1024 // block
    deadline = time.monotonic() + 20
    new: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        new = [b for b in lv_command(lab, guest, "guest-get-memory-blocks") if b["phys-index"] not in before]
        if len(new) == expected and all(b["online"] for b in new):
            break
        time.sleep(0.3)
    assert len(new) == expected and all(b["online"] for b in new), new
    # libvirt places the first DIMM at 4 GiB
    assert min(b["phys-index"] for b in new) == (4 << 30) // block


def test_guest_without_agent_channel_boots(lab: Lab, fresh_guest: Any) -> None:
    guest = fresh_guest(agent="7.2", agent_channel=False)
    assert "agent not started" in guest.console_log.read_text()
    conn = libvirt.open(lab.uri)
    try:
        xml = conn.lookupByName(guest.name).XMLDesc()
    finally:
        conn.close()
    assert "org.qemu.guest_agent.0" not in xml


def test_guest_shutdown_really_reboots_and_powers_off(lab: Lab, fresh_guest: Any) -> None:
    """qemu-ga runs /sbin/shutdown -h -r|-P +0: the lab's script must really do it."""
    guest = fresh_guest(agent="7.2")
    with pytest.raises(libvirt.libvirtError):  # no reply: the agent goes away
        lv_command(lab, guest, "guest-shutdown", {"mode": "reboot"}, timeout=5)
    lab.wait_ready([guest], timeout=60)
    console = guest.console_log.read_text(errors="replace")
    assert "reboot: Restarting system" in console
    assert console.count("Linux version") == 2  # the kernel booted a second time
    with pytest.raises(libvirt.libvirtError):
        lv_command(lab, guest, "guest-shutdown", {"mode": "powerdown"}, timeout=5)
    assert _wait_state(lab, guest.name, timeout=20) == "shut off"


# ------------------------------------------------------------------ lifecycle (its own lab root)


@pytest.fixture
def side_lab(lab: Lab) -> Iterator[Lab]:
    """A second, independent lab (own root, daemon, guests) sharing the main build cache.

    Lifecycle tests run ``down`` on it, so the session's shared guests are never touched.
    """
    lab.build("7.2")
    lab.build("10.0")
    root = Path(f"/tmp/vqlab-{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o755)
    for part in ("apt", "debs", "images", "roots"):
        (lab.paths.root / part).mkdir(exist_ok=True)
        (root / part).symlink_to(lab.paths.root / part)
    side = Lab(root, stack=lab.stack)
    yield side
    side.down()
    shutil.rmtree(root, ignore_errors=True)


def _processes_of(lab: Lab) -> list[str]:
    """Every process of this lab root, whoever runs it: named in its environment or
    command line (session libvirtd, virtlogd, QEMU), or living in a chroot under the
    root (a root stack's daemons and QEMU)."""
    root = str(lab.root) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            chroot = os.readlink(entry / "root")
        except OSError:
            continue
        cmd = pid_cmdline(pid)
        if not pid_alive(pid):
            continue
        if f"={root}" in environ or any(root in a for a in cmd) or (chroot + "/").startswith(root):
            found.append(f"{pid} {' '.join(cmd)[:80]}")
    return found


def _mounts_under(root: Path) -> list[str]:
    """Mount points under ``root`` in *any* mount namespace on the machine (each
    process's mountinfo), not only in ours: a root stack mounts in its own."""
    prefix = str(root).rstrip("/") + "/"
    found: set[str] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            lines = (entry / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 4 and (fields[4] + "/").startswith(prefix):
                found.add(f"{fields[4]} (ns of pid {entry.name})")
    return sorted(found)


def _wait_state(lab: Lab, name: str, bad: str = "running", timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    state = bad
    while time.monotonic() < deadline:
        state = {s.name: s.state for s in lab.status()}.get(name, "absent")
        if state != bad:
            break
        time.sleep(0.2)
    return state


def test_lifecycle_up_idempotent_kill_status_down(side_lab: Lab) -> None:
    lab = side_lab
    first = lab.up(count=2, agent="7.2", name="lc")
    plain = lab.up(count=1, agent="7.2", plain=True, name="lcp")
    assert [g.name for g in first] == ["lc-1", "lc-2"]
    again = lab.up(count=2, agent="7.2", name="lc")
    assert [(g.name, g.pid) for g in again] == [(g.name, g.pid) for g in first]
    status = lab.status()
    assert sorted(s.name for s in status) == ["lc-1", "lc-2", "lcp"]
    assert all(s.state == "running" and s.pid for s in status)

    # QEMU killed from outside: libvirt guest and plain guest are reported as not running
    assert first[0].pid is not None and plain[0].pid is not None
    os.kill(first[0].pid, signal.SIGKILL)
    os.kill(plain[0].pid, signal.SIGKILL)
    assert _wait_state(lab, "lc-1") in ("crashed", "shut off", "dead")
    assert _wait_state(lab, "lcp") == "dead"
    assert _wait_state(lab, "lc-2", bad="absent") == "running"

    # up again replaces the dead guest, keeps the live one
    revived = lab.up(count=2, agent="7.2", name="lc")
    assert revived[0].pid != first[0].pid and revived[1].pid == first[1].pid

    if lab.stack != HOST:  # a root stack mounts only inside its own namespace
        mine = _mounts_under(lab.root)
        assert mine and not [m for m in Path("/proc/self/mounts").read_text().splitlines()
                             if f" {lab.root}/" in m], mine

    lab.down()
    assert _processes_of(lab) == []
    assert _mounts_under(lab.root) == []
    run = lab.paths.run
    assert not run.exists() or not [p for p in run.rglob("*") if p.is_socket()]
    assert not lab.paths.guests.exists() or not any(lab.paths.guests.iterdir())
    stack_dir = lab.paths.stack_dir(lab.stack)
    assert not stack_dir.exists() or sorted(p.name for p in stack_dir.iterdir()) in ([], ["log"])
    assert lab.status() == []
    lab.down()  # idempotent
    assert lab.status() == []
    assert _processes_of(lab) == [] and _mounts_under(lab.root) == []


def test_daemon_that_went_away_is_respawned(side_lab: Lab) -> None:
    lab = side_lab
    [guest] = lab.up(agent="10.0", name="dg")
    [daemon] = [p for p in lab.session.daemon_pids() if "libvirtd" in " ".join(pid_cmdline(p))]
    os.kill(daemon, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(daemon) and time.monotonic() < deadline:
        time.sleep(0.05)
    # the guest survives its daemon; status brings a new daemon up and sees it running
    assert guest.pid is not None and pid_alive(guest.pid)
    fresh = Lab(lab.root, stack=lab.stack)
    assert {s.name: s.state for s in fresh.status()} == {"dg": "running"}
    assert lab.session.daemon_alive()
    # libvirt 9.0 has the agent back as soon as its socket accepts; libvirt 11.3 connects
    # to the agent channel of a re-attached domain asynchronously ("QEMU guest agent is
    # not connected" for about a second, measured), so the agent gets a bounded wait
    deadline = time.monotonic() + 15
    while True:
        try:
            assert lv_command(fresh, guest, "guest-ping") == {}
            break
        except libvirt.libvirtError as exc:
            if "not connected" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    fresh.close()


def test_boot_failure_is_one_clear_line(side_lab: Lab) -> None:
    """A guest whose agent never answers: LabError within the deadline, with the console tail."""
    from virt_qga.lab import LabError

    lab = side_lab
    [guest] = lab.up(agent="7.2", name="nf", wait=False)
    start = time.monotonic()
    with pytest.raises(LabError) as info:
        lab.wait_ready([guest], timeout=0.5)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert "\n" not in msg and "guest-ping" in msg and "console" in msg
