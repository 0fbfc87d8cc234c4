"""Unit tests for vCPU/memory hotplug logic, on XML and replies recorded in the lab.

The recorded data come from a lab guest (libvirt 9.0, QEMU 7.2 TCG, qemu-ga 7.2). The
fakes only stand in for edge cases a real agent cannot produce on demand: a block that
is busy and then frees up, partial guest-set-vcpus replies, libvirt lagging forever.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from virt_qga.errors import AgentTimeoutError, BadInputError, GuestError, OperationError
from virt_qga.exitcodes import ExitCode
from virt_qga.host.memory import (
    dimm_xml,
    parse_memory_layout,
    parse_size,
    virtio_mem_resized_xml,
)
from virt_qga.host.vcpus import check_no_residue, parse_libvirt_vcpus, parse_qemu_cpus, unplug_residue
from virt_qga.workflows import memory as wm
from virt_qga.workflows import vcpus as wv

# -- recorded in the lab ---------------------------------------------------------------

LIVE_XML = """<domain type='qemu'><name>hpx</name>
  <maxMemory slots='4' unit='KiB'>2097152</maxMemory>
  <memory unit='KiB'>1310720</memory>
  <currentMemory unit='KiB'>1310720</currentMemory>
  <vcpu placement='static' current='3'>4</vcpu>
  <vcpus>
    <vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>
    <vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>
    <vcpu id='2' enabled='yes' hotpluggable='yes' order='3'/>
    <vcpu id='3' enabled='no' hotpluggable='yes'/>
  </vcpus>
  <devices>
    <memory model='dimm'>
      <target><size unit='KiB'>262144</size><node>0</node></target>
      <alias name='dimm0'/>
      <address type='dimm' slot='0' base='0x100000000'/>
    </memory>
    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>524288</size><node>0</node><block unit='KiB'>2048</block>
        <requested unit='KiB'>262144</requested><current unit='KiB'>262144</current>
      </target>
      <alias name='virtiomem0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </memory>
  </devices>
</domain>"""

HOTPLUGGABLE_3: list[dict[str, Any]] = [
    {"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 3}, "vcpus-count": 1,
     "type": "qemu64-x86_64-cpu"},
    {"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 2}, "vcpus-count": 1,
     "qom-path": "/machine/peripheral/vcpu2", "type": "qemu64-x86_64-cpu"},
    {"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 1}, "vcpus-count": 1,
     "qom-path": "/machine/peripheral/vcpu1", "type": "qemu64-x86_64-cpu"},
    {"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 0}, "vcpus-count": 1,
     "qom-path": "/machine/unattached/device[0]", "type": "qemu64-x86_64-cpu"},
]
CPUS_FAST_3: list[dict[str, Any]] = [
    {"thread-id": 7431, "props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 0},
     "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"},
    {"thread-id": 7432, "props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 1},
     "qom-path": "/machine/peripheral/vcpu1", "cpu-index": 1, "target": "x86_64"},
    {"thread-id": 9108, "props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 2},
     "qom-path": "/machine/peripheral/vcpu2", "cpu-index": 2, "target": "x86_64"},
]
MEMORY_DEVICES: list[dict[str, Any]] = [
    {"type": "dimm", "data": {"memdev": "/objects/memdimm0", "hotplugged": True, "addr": 4294967296,
                              "hotpluggable": True, "size": 268435456, "slot": 0, "node": 0, "id": "dimm0"}},
    {"type": "virtio-mem", "data": {"memdev": "/objects/memvirtiomem0", "memaddr": 4563402752,
                                    "block-size": 2097152, "size": 268435456, "node": 0,
                                    "max-size": 536870912, "requested-size": 268435456, "id": "virtiomem0"}},
]
GUEST_VCPUS_3 = [
    {"logical-id": 0, "online": True, "can-offline": False},
    {"logical-id": 1, "online": True, "can-offline": True},
    {"logical-id": 2, "online": True, "can-offline": True},
]
GUEST_BLOCKS = [{"phys-index": i, "online": True, "can-offline": True} for i in (0, 1, 2, 3, 32, 33)]


# -- fakes -----------------------------------------------------------------------------


class FakeDomain:
    """Live XML + QMP replies; setVcpu/updateDeviceFlags change them like QEMU 7.2 did."""

    def __init__(self, xml: str = LIVE_XML, *, libvirt_follows: bool = True) -> None:
        self.root = ET.fromstring(xml)
        self.hot = copy.deepcopy(HOTPLUGGABLE_3)
        self.fast = copy.deepcopy(CPUS_FAST_3)
        self.memdev = copy.deepcopy(MEMORY_DEVICES)
        self.libvirt_follows = libvirt_follows
        self.calls: list[tuple[Any, ...]] = []
        self.guest: FakeVcpuAgent | None = None

    @property
    def name(self) -> str:
        return "fake"

    def xml(self, inactive: bool = False) -> ET.Element:
        return copy.deepcopy(self.root)

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        return copy.deepcopy({"query-hotpluggable-cpus": self.hot, "query-cpus-fast": self.fast,
                              "query-memory-devices": self.memdev}[command])

    def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        if method == "setVcpu":
            vid, enable = int(args[0]), bool(args[1])
            self._qemu_set(vid, enable)
            if self.guest is not None:
                self.guest.plug(vid, enable)
            if not self.libvirt_follows and not enable:
                from virt_qga.errors import AgentTimeoutError as T

                raise T("libvirt operation timed out (Timed out during operation: vcpu unplug request "
                        "timed out. Unplug result must be manually inspected in the domain)")
            self._libvirt_set(vid, enable)
            return 0
        raise AssertionError(f"unexpected call {method}")

    def _qemu_set(self, vid: int, enable: bool) -> None:
        for e in self.hot:
            if e["props"]["socket-id"] == vid:
                if enable:
                    e["qom-path"] = f"/machine/peripheral/vcpu{vid}"
                else:
                    e.pop("qom-path", None)
        self.fast = [c for c in self.fast if c["cpu-index"] != vid]
        if enable:
            self.fast.append({"qom-path": f"/machine/peripheral/vcpu{vid}", "cpu-index": vid, "props": {}})

    def _libvirt_set(self, vid: int, enable: bool) -> None:
        for v in self.root.findall("vcpus/vcpu"):
            if int(v.get("id", "-1")) == vid:
                v.set("enabled", "yes" if enable else "no")
        n = len([v for v in self.root.findall("vcpus/vcpu") if v.get("enabled") == "yes"])
        vcpu = self.root.find("vcpu")
        assert vcpu is not None
        vcpu.set("current", str(n))


class FakeVcpuAgent:
    """guest-get-vcpus / guest-set-vcpus with qemu-ga's partial-success semantics."""

    def __init__(self, vcpus: list[dict[str, Any]], refuse: dict[int, str] | None = None,
                 transient_failures: int = 0) -> None:
        self.vcpus = {v["logical-id"]: dict(v) for v in copy.deepcopy(vcpus)}
        self.refuse = refuse or {}
        self.transient_failures = transient_failures
        self.sent: list[list[dict[str, Any]]] = []

    def plug(self, vid: int, enable: bool) -> None:
        if enable:
            self.vcpus[vid] = {"logical-id": vid, "online": False, "can-offline": True}
        else:
            self.vcpus.pop(vid, None)

    def get_vcpus(self) -> list[dict[str, Any]]:
        return [dict(v) for _, v in sorted(self.vcpus.items())]

    def set_vcpus(self, vcpus: list[dict[str, Any]]) -> int:
        self.sent.append(vcpus)
        if self.transient_failures:
            self.transient_failures -= 1
            raise AgentTimeoutError("no reply from the guest agent within 1 s")
        done = 0
        for entry in vcpus:
            vid = entry["logical-id"]
            if vid in self.refuse:
                if done == 0:
                    raise GuestError(f"guest error GenericError: {self.refuse[vid]}")
                return done
            self.vcpus[vid]["online"] = entry["online"]
            done += 1
        return done


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("256M", 256 << 20), ("1G", 1 << 30), ("262144K", 256 << 20), ("268435456", 256 << 20),
    ("256MiB", 256 << 20), ("1 GiB", 1 << 30), ("128m", 128 << 20),
])
def test_parse_size_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12Q", "-1G", "0", "1.5G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_size(text)


def test_libvirt_vcpus_from_recorded_xml() -> None:
    lv = parse_libvirt_vcpus(ET.fromstring(LIVE_XML))
    assert (lv.maximum, lv.current) == (4, 3)
    assert lv.enabled_ids == {0, 1, 2}
    assert lv.hotpluggable_ids == {1, 2, 3}
    assert lv.get(1) is not None and lv.get(1).order == 2  # type: ignore[union-attr]


def test_qemu_cpus_ids_from_cpu_index_and_topology() -> None:
    cpus = parse_qemu_cpus(HOTPLUGGABLE_3, CPUS_FAST_3)
    assert [(c.id, c.present) for c in cpus] == [(0, True), (1, True), (2, True), (3, False)]


def test_unplug_residue_is_libvirt_enabled_but_qemu_absent() -> None:
    lv = parse_libvirt_vcpus(ET.fromstring(LIVE_XML))
    hot = copy.deepcopy(HOTPLUGGABLE_3)
    del hot[1]["qom-path"]                     # vcpu2 gone in QEMU, libvirt still says enabled
    fast = [c for c in CPUS_FAST_3 if c["cpu-index"] != 2]
    assert unplug_residue(lv, parse_qemu_cpus(hot, fast)) == [2]


def test_memory_layout_dimm_blocks_and_virtio_mem() -> None:
    lay = parse_memory_layout(ET.fromstring(LIVE_XML))
    assert (lay.slots, lay.max_memory) == (4, 2 << 30)
    [dimm] = lay.dimms
    assert (dimm.alias, dimm.base, dimm.size, dimm.slot) == ("dimm0", 0x100000000, 256 << 20, 0)
    assert dimm.blocks(128 << 20) == [32, 33]          # the lab: base 4 GiB, 128 MiB blocks
    [vm] = lay.virtio_mem
    assert (vm.requested, vm.current, vm.block) == (256 << 20, 256 << 20, 2 << 20)


def test_dimm_xml_is_kib() -> None:
    assert "<size unit='KiB'>262144</size>" in dimm_xml(256 << 20)


def test_virtio_mem_update_xml_sets_requested_and_drops_current() -> None:
    [vm] = parse_memory_layout(ET.fromstring(LIVE_XML)).virtio_mem
    out = ET.fromstring(virtio_mem_resized_xml(vm, 64 << 20))
    assert out.findtext("target/requested") == "65536"
    assert out.find("target/current") is None
    assert out.find("alias") is not None and out.find("address") is not None


@pytest.mark.parametrize(("req", "cur", "shrinking", "state"), [
    (64, 64, True, "done"), (64, 128, True, "pending"), (256, 128, False, "pending"),
    (64, None, True, "pending"), (64, 32, True, "inconsistent"),
])
def test_virtio_mem_state(req: int, cur: int | None, shrinking: bool, state: str) -> None:
    assert wm.virtio_mem_state(req, cur, shrinking) == state


class FakeVirtioMemDomain(FakeDomain):
    """updateDeviceFlags sets <requested>; the guest never gives back more than ``floor``."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self.floor = floor

    def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        assert method == "updateDeviceFlags"
        req = int(ET.fromstring(args[0]).findtext("target/requested") or "0") * 1024
        for m in self.root.findall("devices/memory"):
            if m.get("model") == "virtio-mem":
                t = m.find("target")
                assert t is not None
                t.find("requested").text = str(req // 1024)  # type: ignore[union-attr]
                t.find("current").text = str(max(req, self.floor) // 1024)  # type: ignore[union-attr]
        self.memdev[1]["data"]["size"] = max(req, self.floor)
        self.memdev[1]["data"]["requested-size"] = req
        return 0


def test_virtio_mem_shrink_reports_current_above_requested() -> None:
    dom = FakeVirtioMemDomain(floor=192 << 20)
    with pytest.raises(OperationError) as ei:
        wm.resize_virtio_mem(dom, 128 << 20, grow=False, timeout=0.3, poll=0.05)
    assert ei.value.exit_code == ExitCode.PARTIAL and ei.value.state == "pending"
    assert "stays above requested" in str(ei.value)
    assert ei.value.result is not None
    assert ei.value.result["devices"][0]["qemu_size"] == 192 << 20


def test_virtio_mem_shrink_done_when_guest_follows() -> None:
    dom = FakeVirtioMemDomain(floor=0)
    res = wm.resize_virtio_mem(dom, 128 << 20, grow=False, timeout=1)
    assert res.state == "done" and res.devices[0]["current"] == 128 << 20


def test_virtio_mem_bad_sizes() -> None:
    dom = FakeVirtioMemDomain(floor=0)
    with pytest.raises(BadInputError):
        wm.resize_virtio_mem(dom, 1 << 20, grow=True)          # not a multiple of 2 MiB blocks
    with pytest.raises(BadInputError):
        wm.resize_virtio_mem(dom, 512 << 20, grow=True)        # above the device size
    assert dom.calls == []


# -- vCPU planning and guest semantics ---------------------------------------------------


def _views(guest: list[dict[str, Any]] = GUEST_VCPUS_3) -> wv.VcpuViews:
    return wv.VcpuViews(libvirt=parse_libvirt_vcpus(ET.fromstring(LIVE_XML)),
                        qemu=parse_qemu_cpus(HOTPLUGGABLE_3, CPUS_FAST_3), guest=copy.deepcopy(guest))


def test_victims_highest_first_never_zero() -> None:
    assert wv.choose_victims(_views(), 2) == [2, 1]
    with pytest.raises(BadInputError, match="only 2 vCPU"):
        wv.choose_victims(_views(), 3)


def test_victims_skip_can_offline_false() -> None:
    guest = copy.deepcopy(GUEST_VCPUS_3)
    guest[2]["can-offline"] = False
    assert wv.choose_victims(_views(guest), 1) == [1]


def test_views_agree_on_recorded_data() -> None:
    v = _views()
    assert v.disagreements() == []
    assert [r.guest for r in v.rows()] == ["online", "online", "online", "absent"]


def test_set_guest_online_resends_the_rest_to_get_the_error() -> None:
    agent = FakeVcpuAgent([*GUEST_VCPUS_3, {"logical-id": 3, "online": True, "can-offline": True}],
                          refuse={2: "Read-only file system"})
    with pytest.raises(wv.GuestVcpuRefused) as ei:
        wv.set_guest_online(agent, [3, 2, 1], False)
    assert ei.value.done == [3] and ei.value.failed == 2
    assert [len(s) for s in agent.sent] == [3, 2]         # the rest re-sent, then the error


def test_set_guest_online_retries_transient() -> None:
    agent = FakeVcpuAgent(GUEST_VCPUS_3, transient_failures=2)
    assert wv.set_guest_online(agent, [2], False, attempts=4, seconds=10) == [2]
    assert len(agent.sent) == 3


def test_ebusy_text_is_transient_but_erofs_is_not() -> None:
    assert wv.guest_error_is_transient(GuestError("failed: Device or resource busy"))
    assert not wv.guest_error_is_transient(GuestError("open(...): Read-only file system"))


def test_shrink_guest_refusal_rolls_back_and_touches_no_host() -> None:
    dom = FakeDomain()
    agent = FakeVcpuAgent(GUEST_VCPUS_3, refuse={1: "Read-only file system"})
    dom.guest = agent
    with pytest.raises(OperationError) as ei:
        wv.set_vcpu_count(dom, agent, 1, timeout=2)
    assert ei.value.exit_code == ExitCode.FAILED and ei.value.state == "rolled-back"
    assert ei.value.result is not None and ei.value.result["rolled_back"] == [2]
    assert all(v["online"] for v in agent.get_vcpus())
    assert [c for c in dom.calls if c[0] == "setVcpu"] == []


def test_shrink_with_libvirt_timeout_is_inconsistent_fast() -> None:
    """QEMU and guest follow, libvirt never does (the QEMU 7.2 case): inconsistent, not a hang."""
    dom = FakeDomain(libvirt_follows=False)
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    dom.guest = agent
    with pytest.raises(OperationError) as ei:
        wv.set_vcpu_count(dom, agent, 2, timeout=30, libvirt_grace=0.5)
    err = ei.value
    assert err.exit_code == ExitCode.INCONSISTENT and err.state == "inconsistent"
    assert err.result is not None
    assert err.result["unplugged"] == [2]
    assert err.result["reconciliation"]["libvirt_unknown"] is True
    assert err.result["reconciliation"]["waited"] < 5           # the libvirt grace, not the deadline
    assert "libvirt" in (err.undo or "")


def test_shrink_and_grow_done_when_all_views_follow() -> None:
    dom = FakeDomain()
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    dom.guest = agent
    res = wv.set_vcpu_count(dom, agent, 2, timeout=5)
    assert res.state == "done" and res.unplugged == [2]
    res = wv.set_vcpu_count(dom, agent, 4, timeout=5)
    assert res.state == "done" and res.plugged == [2, 3]
    assert sorted(v["logical-id"] for v in agent.get_vcpus() if v["online"]) == [0, 1, 2, 3]


def test_grow_refused_after_missed_unplug() -> None:
    dom = FakeDomain(libvirt_follows=False)
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    dom.guest = agent
    with pytest.raises(OperationError):
        wv.set_vcpu_count(dom, agent, 2, timeout=30, libvirt_grace=0.5)
    n_calls = len(dom.calls)
    with pytest.raises(OperationError) as ei:
        wv.set_vcpu_count(dom, agent, 4, timeout=5)
    assert ei.value.exit_code == ExitCode.INCONSISTENT and "refusing" in str(ei.value)
    assert len(dom.calls) == n_calls                              # nothing sent to libvirt


WITH_ID = LIVE_XML.replace("<domain type='qemu'><name>hpx</name>",
                           "<domain type='qemu' id='7'><name>hpx</name>"
                           "<uuid>4f9c2b1e-0000-4000-8000-00000000abcd</uuid>")


def _libvirtd_restarted(dom: FakeDomain) -> None:
    """What a libvirtd restart did in the lab: it re-read QEMU's vCPUs, XML right again."""
    present = {c["cpu-index"] for c in dom.fast}
    for vid in range(4):
        dom._libvirt_set(vid, vid in present)


def test_missed_unplug_is_remembered_across_a_libvirtd_restart() -> None:
    """In the lab, a libvirtd restart fixed libvirt's XML and the next vCPU plug still
    crashed QEMU 7.2: the refusal must not depend on libvirt's XML staying stale."""
    from virt_qga.host.vcpus import unsafe_marker

    dom = FakeDomain(WITH_ID, libvirt_follows=False)
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    dom.guest = agent
    with pytest.raises(OperationError):
        wv.set_vcpu_count(dom, agent, 2, timeout=30, libvirt_grace=0.2)
    marker = unsafe_marker(dom)
    assert marker is not None and marker["vcpus"] == [2] and marker["id"] == "7"
    _libvirtd_restarted(dom)
    assert unplug_residue(parse_libvirt_vcpus(dom.xml()), parse_qemu_cpus(dom.hot, dom.fast)) == []
    n_calls = len(dom.calls)
    with pytest.raises(OperationError) as ei:
        wv.set_vcpu_count(dom, agent, 3, timeout=5)
    assert ei.value.exit_code == ExitCode.INCONSISTENT and "refusing" in str(ei.value)
    assert "Restart the domain" in str(ei.value)
    assert len(dom.calls) == n_calls                              # nothing sent to libvirt
    with pytest.raises(OperationError):  # the guard DIMM plug/unplug call before touching anything
        check_no_residue(dom)


def test_marker_of_an_earlier_qemu_process_is_dropped() -> None:
    from virt_qga.host.vcpus import mark_unsafe, unsafe_marker

    dom = FakeDomain(WITH_ID)
    mark_unsafe(dom, [2])
    assert unsafe_marker(dom) is not None
    dom.root.set("id", "8")                                       # the domain was restarted
    assert unsafe_marker(dom) is None
    dom.root.set("id", "7")
    assert unsafe_marker(dom) is None                             # and the old marker is gone
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    dom.guest = agent
    assert wv.set_vcpu_count(dom, agent, 4, timeout=5).state == "done"


def test_bad_n() -> None:
    dom = FakeDomain()
    agent = FakeVcpuAgent(GUEST_VCPUS_3)
    for n in (0, 5):
        with pytest.raises(BadInputError):
            wv.set_vcpu_count(dom, agent, n)
    assert dom.calls == []


# -- memory block policy (recorded agent replies) ------------------------------------------


class ScriptedBlockAgent:
    """guest-set-memory-blocks answering from a script, one list of replies per pass."""

    def __init__(self, passes: list[list[dict[str, Any]]],
                 blocks: list[dict[str, Any]] | None = None) -> None:
        self.passes = list(passes)
        self.blocks = blocks if blocks is not None else copy.deepcopy(GUEST_BLOCKS)
        self.sent: list[list[int]] = []

    def get_memory_block_info(self) -> dict[str, int]:
        return {"size": 128 << 20}

    def get_memory_blocks(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.blocks)

    def set_memory_blocks(self, mem_blks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.sent.append([b["phys-index"] for b in mem_blks])
        replies = self.passes.pop(0)
        for r in replies:
            if r["response"] == "success":
                for b in self.blocks:
                    if b["phys-index"] == r["phys-index"]:
                        b["online"] = mem_blks[0]["online"]
        return replies


def ok(i: int) -> dict[str, Any]:
    return {"response": "success", "phys-index": i}


def busy(i: int) -> dict[str, Any]:  # as qemu-ga 7.2 answered for a block with unmovable pages
    return {"response": "operation-failed", "error-code": 16, "phys-index": i}


def test_ebusy_is_retried_until_it_clears() -> None:
    agent = ScriptedBlockAgent([[busy(32), ok(33)], [busy(32)], [ok(32)]])
    out = wm.set_blocks(agent, [32, 33], False, attempts=5, seconds=10, first_wait=0.01)
    assert out.failed == {} and sorted(out.done) == [32, 33]
    assert agent.sent == [[32, 33], [32], [32]] and out.passes == 3 and out.busy_seen == 2


def test_ebusy_gives_up_after_bounded_passes() -> None:
    agent = ScriptedBlockAgent([[busy(32)]] * 3)
    out = wm.set_blocks(agent, [32], False, attempts=3, seconds=10, first_wait=0.01)
    assert out.passes == 3 and 32 in out.failed and "EBUSY" in out.failed[32]


@pytest.mark.parametrize("reply", [
    {"response": "operation-failed", "error-code": 22, "phys-index": 32},   # EINVAL
    {"response": "operation-not-supported", "phys-index": 32},
    {"response": "operation-failed", "error-code": 30, "phys-index": 32},   # EROFS
])
def test_non_retryable_stop_at_once(reply: dict[str, Any]) -> None:
    agent = ScriptedBlockAgent([[reply]])
    out = wm.set_blocks(agent, [32], False, attempts=5, seconds=10, first_wait=0.01)
    assert out.passes == 1 and 32 in out.failed


def test_not_found_is_verified() -> None:
    gone = {"response": "not-found", "phys-index": 40}
    agent = ScriptedBlockAgent([[gone]])
    assert wm.set_blocks(agent, [40], False).gone == [40]
    agent = ScriptedBlockAgent([[{"response": "not-found", "phys-index": 33}]])  # but it is listed
    out = wm.set_blocks(agent, [33], False)
    assert out.gone == [] and 33 in out.failed


class FakeMemDomain(FakeDomain):
    def __init__(self) -> None:
        super().__init__()
        self.detached: list[str] = []

    def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        raise AssertionError("no host call expected")


def test_unplug_rolls_back_when_a_block_stays_busy() -> None:
    dom = FakeMemDomain()
    agent = ScriptedBlockAgent([[ok(32), busy(33)], [busy(33)], [busy(33)], [ok(32)]])
    with pytest.raises(OperationError) as ei:
        wm.unplug(dom, agent, size=256 << 20, attempts=3, busy_seconds=10)
    assert ei.value.exit_code == ExitCode.FAILED and ei.value.state == "rolled-back"
    assert agent.sent[-1] == [32]                               # the rollback onlined 32 again
    assert all(b["online"] for b in agent.blocks)
    assert dom.calls == []                                      # the DIMM was never detached


def test_unplug_input_checks() -> None:
    dom = FakeMemDomain()
    agent = ScriptedBlockAgent([])
    with pytest.raises(BadInputError, match="multiple"):
        wm.unplug(dom, agent, size=100 << 20)
    with pytest.raises(BadInputError, match="no DIMM with alias"):
        wm.unplug(dom, agent, alias="dimm7")
    with pytest.raises(BadInputError, match="whole DIMMs"):
        wm.unplug(dom, agent, size=512 << 20)
    assert agent.sent == [] and dom.calls == []


def test_choose_dimms_highest_base_first() -> None:
    xml = LIVE_XML.replace("</devices>", """<memory model='dimm'><target><size unit='KiB'>262144</size>
      <node>0</node></target><alias name='dimm1'/><address type='dimm' slot='1' base='0x110000000'/>
      </memory></devices>""")
    lay = parse_memory_layout(ET.fromstring(xml))
    assert [d.alias for d in wm.choose_dimms(lay, 256 << 20)] == ["dimm1"]
    assert [d.alias for d in wm.choose_dimms(lay, 512 << 20)] == ["dimm1", "dimm0"]


# -- CLI routing (no libvirt needed: these fail or stop before connecting) -------------------


def _run_cli(args: list[str]) -> tuple[int, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "virt_qga.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "VIRT_QGA_CONNECT": "test:///default"})
    return proc.returncode, proc.stdout + proc.stderr


def test_cli_vcpus_set_validates_before_connecting() -> None:
    rc, out = _run_cli(["vcpus", "set", "dom", "0"])
    assert rc == 2 and "at least 1" in out and "Traceback" not in out


def test_cli_memory_unplug_needs_size_or_dimm() -> None:
    rc, out = _run_cli(["memory", "unplug", "dom"])
    assert rc == 2 and "exactly one" in out
    rc, out = _run_cli(["memory", "plug", "dom", "12Q"])
    assert rc == 2 and "not a size" in out


def test_cli_domain_alone_means_show() -> None:
    # libvirt's test driver has no domain "nosuchdom": the show path ran and said so (exit 6)
    rc, out = _run_cli(["vcpus", "nosuchdom"])
    assert rc == 6 and "nosuchdom" in out
    rc, out = _run_cli(["memory", "nosuchdom"])
    assert rc == 6 and "nosuchdom" in out
