"""vCPU hot-unplug on both stacks, watched on QEMU's monitor, and what the next hot-plug does.

The vCPU shrink times out in libvirt on both stacks (libvirt 9.0 + QEMU 7.2 and libvirt
11.3 + QEMU 10.0, TCG). The cause is visible in QEMU's own events, read here with
``libvirt_qemu.qemuMonitorEventRegister``: QEMU removes the vCPU (the guest and QMP no
longer list it) and emits ``DEVICE_DELETED`` for its child ``.../vcpuN/lapic``, but never
for ``vcpuN`` itself, the event libvirt waits for. Where the stacks differ is what a
hot-plug into that QEMU process does next: QEMU 7.2 crashes, QEMU 10.0 carries on. See
docs/hotplug.md.

These tests use raw libvirt-python, not virt-qga: they pin down the platform behaviour
that virt-qga's reconciliation and refusal are built on.
"""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from virt_qga.lab import LabGuest

libvirt = pytest.importorskip("libvirt")
libvirt_qemu = pytest.importorskip("libvirt_qemu")

_loop_started = False
_loop_lock = threading.Lock()


def event_loop() -> None:
    """libvirt's default event loop in a daemon thread, once per process (events need it,
    and it must be registered before the connection is opened)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


class Watched:
    """A domain with QEMU's monitor events recorded (name, data, seconds since start)."""

    def __init__(self, g: LabGuest) -> None:
        event_loop()
        self.conn = libvirt.open(g.uri)
        self.dom = self.conn.lookupByName(g.name)
        self.t0 = time.monotonic()
        self.events: list[tuple[str, dict[str, Any], float]] = []
        self._cb = libvirt_qemu.qemuMonitorEventRegister(self.conn, self.dom, None, self._on_event, None, 0)

    def _on_event(self, _conn: Any, _dom: Any, event: str, _s: int, _us: int, details: str | None,
                  _opaque: Any) -> None:
        data = json.loads(details) if details else {}
        self.events.append((event, data, time.monotonic() - self.t0))

    def close(self) -> None:
        try:
            libvirt_qemu.qemuMonitorEventDeregister(self.conn, self._cb)
        except libvirt.libvirtError:
            pass
        self.conn.close()

    def agent(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        payload: dict[str, Any] = {"execute": cmd, **({"arguments": args} if args else {})}
        return json.loads(libvirt_qemu.qemuAgentCommand(self.dom, json.dumps(payload), 20, 0))["return"]

    def qmp(self, cmd: str) -> Any:
        reply = libvirt_qemu.qemuMonitorCommand(self.dom, json.dumps({"execute": cmd}), 0)
        return json.loads(reply)["return"]

    def qemu_version(self) -> tuple[int, int]:
        v = self.qmp("query-version")["qemu"]
        return int(v["major"]), int(v["minor"])

    def qemu_cpus(self) -> set[int]:
        return {int(c["cpu-index"]) for c in self.qmp("query-cpus-fast")}

    def guest_cpus(self) -> dict[int, bool]:
        return {int(v["logical-id"]): bool(v["online"]) for v in self.agent("guest-get-vcpus")}

    def libvirt_enabled(self) -> set[int]:
        root = ET.fromstring(self.dom.XMLDesc(0))
        return {int(v.get("id", "-1")) for v in root.findall("vcpus/vcpu") if v.get("enabled") == "yes"}

    def wait_guest(self, want: Callable[[dict[int, bool]], bool], timeout: float = 20) -> dict[int, bool]:
        deadline = time.monotonic() + timeout
        cpus = self.guest_cpus()
        while not want(cpus) and time.monotonic() < deadline:
            time.sleep(0.2)
            cpus = self.guest_cpus()
        assert want(cpus), cpus
        return cpus

    def deleted(self) -> list[dict[str, Any]]:
        return [d for e, d, _t in self.events if e == "DEVICE_DELETED"]


def missed_unplug(w: Watched) -> None:
    """Plug vCPU 2, online it, offline it in the guest, unplug it: the sequence whose
    completion libvirt never sees. Asserts what each party shows afterwards."""
    w.dom.setVcpusFlags(3, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    w.wait_guest(lambda c: 2 in c)
    assert w.agent("guest-set-vcpus", {"vcpus": [{"logical-id": 2, "online": True}]}) == 1
    assert w.agent("guest-set-vcpus", {"vcpus": [{"logical-id": 2, "online": False}]}) == 1
    start = time.monotonic()
    with pytest.raises(libvirt.libvirtError) as info:
        w.dom.setVcpu("2", 0, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    # libvirt waited its fixed 5 s for DEVICE_DELETED of vcpu2 and gave up
    assert info.value.get_error_code() == libvirt.VIR_ERR_OPERATION_TIMEOUT
    assert "vcpu unplug request timed out" in info.value.get_error_message()
    assert 4.5 < time.monotonic() - start < 30
    # QEMU and the guest did remove it; libvirt still lists it
    assert w.qemu_cpus() == {0, 1}
    w.wait_guest(lambda c: set(c) == {0, 1})
    assert 2 in w.libvirt_enabled()


def test_unplugged_vcpu_never_gets_its_device_deleted(fresh_guest: Callable[..., LabGuest]) -> None:
    """The cause, on both stacks: QEMU's only DEVICE_DELETED is the vCPU's lapic child
    (a path, no device id); none names ``vcpu2``, even 10 s after libvirt gave up."""
    g = fresh_guest(agent="10.0")
    w = Watched(g)
    try:
        missed_unplug(w)
        time.sleep(5)  # well after libvirt's 5 s wait: a late event would be here by now
        deleted = w.deleted()
        assert {"path": "/machine/peripheral/vcpu2/lapic"} in deleted, w.events
        assert not [d for d in deleted if d.get("device") == "vcpu2" or d.get("path") ==
                    "/machine/peripheral/vcpu2"], deleted
        # the eject itself did complete on the ACPI side: QEMU reported the OST status
        osts = [d["info"] for e, d, _t in w.events if e == "ACPI_DEVICE_OST"]
        assert any(i.get("slot") == "2" and i.get("source") == 3 for i in osts), osts
        assert w.libvirt_enabled() == {0, 1, 2}  # and it stays stale
    finally:
        w.close()


def test_next_hotplug_after_missed_unplug(fresh_guest: Callable[..., LabGuest]) -> None:
    """What the next hot-plug does to that QEMU process, per QEMU version.

    QEMU 7.2: it dies at once (heap corruption; libvirt reports the monitor connection
    reset and the domain ends "crashed"), which is why virt-qga refuses hot-plug there.
    QEMU 10.0: it carries on; the new vCPU works in the guest and a DIMM can be added too.
    """
    g = fresh_guest(agent="10.0")
    w = Watched(g)
    try:
        version = w.qemu_version()
        missed_unplug(w)
        if version[:2] == (7, 2):
            try:
                w.dom.setVcpu("3", 1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError:
                pass  # "Unable to read from monitor: Connection reset by peer"
            deadline = time.monotonic() + 20
            while w.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and time.monotonic() < deadline:
                time.sleep(0.2)
            assert w.dom.state() == [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED]
            return
        assert version[:2] == (10, 0), f"QEMU {version} not measured: extend this test and docs/hotplug.md"
        w.dom.setVcpu("3", 1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        w.wait_guest(lambda c: 3 in c)
        assert w.agent("guest-set-vcpus", {"vcpus": [{"logical-id": 3, "online": True}]}) == 1
        assert w.wait_guest(lambda c: c.get(3) is True)[3] is True
        w.dom.attachDeviceFlags(
            "<memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target></memory>",
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )
        deadline = time.monotonic() + 30
        blocks: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            blocks = [b for b in w.agent("guest-get-memory-blocks") if b["phys-index"] >= 32]
            if len(blocks) == 2 and all(b["online"] for b in blocks):
                break
            time.sleep(0.3)
        assert len(blocks) == 2 and all(b["online"] for b in blocks), blocks
        time.sleep(10)  # QEMU 7.2 died within a second of such a plug; 10.0 must still run
        assert w.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert w.qemu_cpus() == {0, 1, 3}
        assert w.agent("guest-ping") == {}
    finally:
        w.close()
