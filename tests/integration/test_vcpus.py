"""``virt-qga vcpus`` against real lab guests (libvirt 9.0, QEMU 7.2 TCG, qemu-ga 7.2).

The CLI runs as a process (real exit codes, one JSON document). What it reports is
checked with tools that do not go through virt-qga: raw QMP and agent commands through
libvirt-python, the live XML, and ``/sys/devices/system/cpu`` read inside the guest.
All tests are destructive (hot-unplug leaves QEMU 7.2 unfit for more hot-plug), so
each one takes a ``fresh_guest``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from virt_qga.lab import Lab, LabGuest

ROOT = Path(__file__).resolve().parents[2]


# -- independent read-outs ---------------------------------------------------------------


def _dom(g: LabGuest) -> Any:
    import libvirt

    return libvirt.open(g.uri).lookupByName(g.name)


def qmp(g: LabGuest, cmd: str) -> Any:
    import libvirt_qemu

    return json.loads(libvirt_qemu.qemuMonitorCommand(_dom(g), json.dumps({"execute": cmd}), 0))["return"]


def qemu_present(g: LabGuest) -> set[int]:
    return {int(c["cpu-index"]) for c in qmp(g, "query-cpus-fast")}


def libvirt_view(g: LabGuest) -> tuple[int, set[int]]:
    root = ET.fromstring(_dom(g).XMLDesc(0))
    vcpu = root.find("vcpu")
    assert vcpu is not None
    enabled = {int(v.get("id", "-1")) for v in root.findall("vcpus/vcpu") if v.get("enabled") == "yes"}
    return int(vcpu.get("current", vcpu.text or "0")), enabled


def agent(g: LabGuest, cmd: str, args: dict[str, Any] | None = None) -> Any:
    import libvirt_qemu

    payload: dict[str, Any] = {"execute": cmd}
    if args:
        payload["arguments"] = args
    return json.loads(libvirt_qemu.qemuAgentCommand(_dom(g), json.dumps(payload), 20, 0))["return"]


def guest_sh(g: LabGuest, script: str, timeout: float = 30) -> tuple[int, str]:
    pid = agent(g, "guest-exec", {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True})["pid"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = agent(g, "guest-exec-status", {"pid": pid})
        if st["exited"]:
            out = base64.b64decode(st.get("out-data", "")).decode() + base64.b64decode(
                st.get("err-data", "")).decode()
            return int(st.get("exitcode", -1)), out
        time.sleep(0.1)
    raise AssertionError(f"guest command did not finish: {script}")


def sysfs_cpus(g: LabGuest) -> tuple[set[int], set[int]]:
    """(present, online) from the guest's sysfs, not through guest-get-vcpus."""
    rc, out = guest_sh(g, "cd /sys/devices/system/cpu && ls -d cpu[0-9]* && echo ONLINE && cat online")
    assert rc == 0, out
    head, online = out.split("ONLINE")
    present = {int(x[3:]) for x in head.split()}
    return present, parse_cpulist(online.strip())


def parse_cpulist(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def cli(g: LabGuest, *args: str, timeout: float = 120) -> tuple[int, Any, str]:
    proc = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", "--connect", str(g.uri), "--json",
                           *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, doc, proc.stderr


def assert_views(g: LabGuest, ids: set[int]) -> None:
    """QEMU, libvirt and the guest's sysfs all show exactly ``ids``, all online."""
    assert qemu_present(g) == ids
    current, enabled = libvirt_view(g)
    assert (current, enabled) == (len(ids), ids)
    present, online = sysfs_cpus(g)
    assert present == ids and online == ids


# -- tests -----------------------------------------------------------------------------------


def test_show_matches_the_three_views(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    rc, doc, err = cli(g, "vcpus", g.name)
    assert rc == 0, err
    rows = {r["id"]: r for r in doc["vcpus"]}
    assert [rows[i]["qemu"] for i in range(4)] == ["present", "present", "absent", "absent"]
    assert [rows[i]["guest"] for i in range(4)] == ["online", "online", "absent", "absent"]
    assert rows[0]["can_offline"] is False and rows[0]["hotpluggable"] is False
    assert doc["disagreements"] == []


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI processes keep their hot-plug safety markers out of /var/lib/virt-qga."""
    monkeypatch.setenv("VIRT_QGA_STATE_DIR", str(tmp_path / "state"))


def test_grow_2_3_4_then_shrink_to_2(fresh_guest: Callable[..., LabGuest], lab: Lab) -> None:
    g = fresh_guest()
    assert_views(g, {0, 1})
    for n in (3, 4):
        t = time.monotonic()
        rc, doc, err = cli(g, "vcpus", "set", g.name, str(n))
        assert rc == 0, err
        assert doc["state"] == "done" and doc["plugged"] == [n - 1]
        assert time.monotonic() - t < 30
        assert_views(g, set(range(n)))

    rc, doc, err = cli(g, "vcpus", "set", g.name, "2", "--timeout", "60")
    result = doc["result"] if rc else doc
    # whatever libvirt said, QEMU and the guest are the truth: 2 and 3 are gone, 0 never touched
    assert qemu_present(g) == {0, 1}
    present, online = sysfs_cpus(g)
    assert present == {0, 1} and online == {0, 1}
    assert result["unplugged"] == [2, 3]
    assert 0 not in result["changed_guest"]
    _current, enabled = libvirt_view(g)
    if enabled == {0, 1}:
        assert rc == 0 and result["state"] == "done"
    else:
        # libvirt 9.0 + QEMU 7.2: QEMU sends DEVICE_DELETED for vcpuN/lapic, libvirt waits for
        # vcpuN, times out after 5 s and keeps the vCPUs enabled in its live XML
        assert rc == 9, err
        assert result["state"] == "inconsistent"
        assert result["reconciliation"]["libvirt_unknown"] is True
        assert any("libvirt" in d for d in result["reconciliation"]["detail"])
        assert doc["undo"] and "libvirt" in doc["undo"]
        stale = sorted(enabled - {0, 1})
        assert [r["id"] for r in result["views"]["vcpus"] if r["problems"]] == stale
        # and in that state it refuses to hot-plug again (QEMU 7.2 crashed on it), touching nothing
        rc2, _doc2, err2 = cli(g, "vcpus", "set", g.name, "4")
        assert rc2 == 9 and "refusing" in err2
        assert qemu_present(g) == {0, 1}
        assert _dom(g).state()[0] == 1  # still running
        # A libvirtd restart corrects libvirt's XML (it re-reads QEMU's vCPUs), but in the lab
        # the next vCPU plug still crashed QEMU 7.2: the refusal must outlive the stale XML.
        lab.session.restart_daemon()
        assert libvirt_view(g) == (2, {0, 1})
        rc3, _doc3, err3 = cli(g, "vcpus", "set", g.name, "4")
        assert rc3 == 9 and "refusing" in err3 and "Restart the domain" in err3, err3
        rc4, _doc4, err4 = cli(g, "memory", "plug", g.name, "256M")
        assert rc4 == 9 and "refusing" in err4, err4
        assert qemu_present(g) == {0, 1}
        assert _dom(g).state()[0] == 1  # QEMU still alive: nothing was hot-plugged


def test_vcpu0_is_never_chosen(fresh_guest: Callable[..., LabGuest]) -> None:
    g = fresh_guest()
    rc, doc, err = cli(g, "vcpus", "set", g.name, "1", "--guest-only")
    assert rc == 0, err
    assert doc["changed_guest"] == [1]
    present, online = sysfs_cpus(g)
    assert present == {0, 1} and online == {0}
    # nothing can go below 1, and vCPU 0 (can-offline false, not hot-pluggable) is kept
    rc, _, err = cli(g, "vcpus", "set", g.name, "0")
    assert rc == 2 and "at least 1" in err
    rc, _, err = cli(g, "vcpus", "set", g.name, "5")
    assert rc == 2 and "between 1 and 4" in err
    assert sysfs_cpus(g) == ({0, 1}, {0})
    rc, doc, err = cli(g, "vcpus", "set", g.name, "2", "--guest-only")
    assert rc == 0 and doc["changed_guest"] == [1]


def test_guest_refusal_rolls_back(fresh_guest: Callable[..., LabGuest]) -> None:
    """A real refusal: cpu2/online is replaced by a read-only bind mount, so qemu-ga's
    write fails with EROFS. vCPU 3 was already offlined by then and must come back."""
    g = fresh_guest()
    rc, _, err = cli(g, "vcpus", "set", g.name, "4")
    assert rc == 0, err
    rc, out = guest_sh(g, "echo 1 > /run/cpu2-online && "
                          "mount --bind /run/cpu2-online /sys/devices/system/cpu/cpu2/online && "
                          "mount -o remount,ro,bind /sys/devices/system/cpu/cpu2/online")
    assert rc == 0, out
    rc, doc, err = cli(g, "vcpus", "set", g.name, "2")
    assert rc == 1, err
    assert doc["state"] == "rolled-back"
    result = doc["result"]
    assert result["changed_guest"] == [] and result["rolled_back"] == [3]
    assert "Read-only file system" in err
    assert not any(s["step"] == "host-unplug" for s in result["steps"])
    assert_views(g, {0, 1, 2, 3})
