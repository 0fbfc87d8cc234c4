"""Host-side vCPU facts and actions: what libvirt and QEMU say, and the libvirt calls.

Three views of one vCPU exist and they can disagree (libvirt 9.0 + QEMU 7.2 leave
libvirt's live XML behind QEMU after a timed-out unplug):

* **libvirt**: live XML ``<vcpu current=..>MAX</vcpu>`` and ``<vcpus><vcpu id enabled
  hotpluggable order/></vcpus>``;
* **QEMU**: QMP ``query-hotpluggable-cpus`` (every slot, ``qom-path`` only when a CPU
  is plugged) and ``query-cpus-fast`` (the plugged CPUs with their ``cpu-index``);
* **guest**: ``guest-get-vcpus`` (read by the workflow, not here).

The vCPU id used everywhere is libvirt's ``<vcpu id>``, which is QEMU's ``cpu-index``
and, on x86 Linux guests, the guest's logical CPU number.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from virt_qga.errors import ProtocolError, VirtQgaError
from virt_qga.outcome import State
from virt_qga.state import state_dir


class DomainLike(Protocol):
    """What host helpers and workflows need of :class:`virt_qga.host.Domain`.

    A protocol so unit tests can hand in a fake built from recorded XML and QMP replies.
    """

    @property
    def name(self) -> str: ...
    def xml(self, inactive: bool = False) -> Any: ...
    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any: ...
    def call(self, method: str, *args: Any) -> Any: ...

#: libvirt messages seen when an unplug was sent but its outcome is unknown.
UNPLUG_UNKNOWN_MARKERS = (
    "unplug request timed out",
    "cause is unknown",
    "must be manually inspected",
)


@dataclass(frozen=True)
class LibvirtVcpu:
    """One ``<vcpus><vcpu/>`` entry of the live XML."""

    id: int
    enabled: bool
    hotpluggable: bool
    order: int | None = None


@dataclass(frozen=True)
class LibvirtVcpus:
    """libvirt's view: the maximum, ``current`` and the per-vCPU list."""

    maximum: int
    current: int
    vcpus: tuple[LibvirtVcpu, ...] = ()

    @property
    def enabled_ids(self) -> set[int]:
        if not self.vcpus:
            return set(range(self.current))
        return {v.id for v in self.vcpus if v.enabled}

    @property
    def hotpluggable_ids(self) -> set[int]:
        return {v.id for v in self.vcpus if v.hotpluggable}

    def get(self, vcpu_id: int) -> LibvirtVcpu | None:
        for v in self.vcpus:
            if v.id == vcpu_id:
                return v
        return None


@dataclass(frozen=True)
class QemuCpu:
    """One slot of ``query-hotpluggable-cpus``, with its vCPU id."""

    id: int
    present: bool
    qom_path: str | None
    props: dict[str, int] = field(default_factory=dict)


def _yes(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("yes", "on", "true", "1")


def parse_libvirt_vcpus(root: ET.Element) -> LibvirtVcpus:
    """libvirt's vCPU view from a domain XML tree (live or inactive)."""
    node = root.find("vcpu")
    if node is None or not (node.text or "").strip():
        raise ProtocolError("domain XML has no <vcpu> element")
    maximum = int((node.text or "0").strip())
    current = int(node.get("current", maximum))
    items: list[LibvirtVcpu] = []
    for v in root.findall("vcpus/vcpu"):
        order = v.get("order")
        items.append(LibvirtVcpu(
            id=int(v.get("id", "-1")),
            enabled=_yes(v.get("enabled"), default=True),
            hotpluggable=_yes(v.get("hotpluggable")),
            order=int(order) if order and order.isdigit() else None,
        ))
    items.sort(key=lambda v: v.id)
    return LibvirtVcpus(maximum=maximum, current=current, vcpus=tuple(items))


_TOPOLOGY_KEYS = ("node-id", "drawer-id", "book-id", "socket-id", "die-id", "cluster-id", "core-id",
                  "thread-id")
_ORDER_KEYS = tuple(k for k in _TOPOLOGY_KEYS if k != "node-id")


def parse_qemu_cpus(hotpluggable: list[dict[str, Any]], present: list[dict[str, Any]]) -> list[QemuCpu]:
    """QEMU's view from the two QMP replies.

    A plugged CPU gets its id from ``query-cpus-fast`` (matched by ``qom-path``); an
    empty slot gets its rank in topology order, which is how QEMU numbers x86 CPUs.
    """
    index_by_path = {str(c.get("qom-path")): int(c["cpu-index"]) for c in present if "cpu-index" in c}
    slots = []
    for entry in hotpluggable:
        props = {k: int(v) for k, v in (entry.get("props") or {}).items() if isinstance(v, int)}
        slots.append((tuple(props.get(k, 0) for k in _ORDER_KEYS), entry, props))
    slots.sort(key=lambda s: s[0])
    out: list[QemuCpu] = []
    for rank, (_key, entry, props) in enumerate(slots):
        path = entry.get("qom-path")
        vid = index_by_path.get(str(path), rank) if path else rank
        out.append(QemuCpu(id=vid, present=bool(path), qom_path=str(path) if path else None, props=props))
    out.sort(key=lambda c: c.id)
    return out


def read_libvirt_vcpus(domain: DomainLike) -> LibvirtVcpus:
    return parse_libvirt_vcpus(domain.xml())


def read_qemu_cpus(domain: DomainLike) -> list[QemuCpu]:
    hot = domain.qmp("query-hotpluggable-cpus") or []
    fast = domain.qmp("query-cpus-fast") or []
    return parse_qemu_cpus(list(hot), list(fast))


def set_vcpu(domain: DomainLike, vcpu_id: int, enable: bool, *, config: bool = False) -> None:
    """Plug (``enable``) or unplug one vCPU with ``virDomainSetVcpu`` (live, maybe config).

    Raises the mapped libvirt error; a timeout here does *not* mean nothing happened.
    """
    from virt_qga.connection import import_libvirt

    lv = import_libvirt()
    flags = lv.VIR_DOMAIN_AFFECT_LIVE
    if config:
        flags |= lv.VIR_DOMAIN_AFFECT_CONFIG
    domain.call("setVcpu", str(vcpu_id), 1 if enable else 0, flags)


def set_vcpu_count_config(domain: DomainLike, count: int) -> None:
    """Persist the vCPU count in the inactive config only (after the live change)."""
    from virt_qga.connection import import_libvirt

    lv = import_libvirt()
    domain.call("setVcpusFlags", count, lv.VIR_DOMAIN_AFFECT_CONFIG)


def unplug_residue(libvirt: LibvirtVcpus, qemu: list[QemuCpu]) -> list[int]:
    """vCPUs libvirt still lists as enabled although QEMU has unplugged them.

    Under TCG this is the trace every vCPU unplug leaves (QEMU 7.2 and 10.0 alike):
    QEMU sends DEVICE_DELETED for ``/machine/peripheral/vcpuN/lapic`` but never for
    ``vcpuN`` itself, so libvirt never learns the unplug finished. In the lab, the
    *next* device hot-plug into such a QEMU 7.2 process (a vCPU or a DIMM) crashed
    QEMU with heap corruption (QEMU 10.0 survived it, see
    :data:`NEXT_HOTPLUG_AFTER_MISSED_UNPLUG`), so callers refuse further host-side
    hot-plug while this list is not empty.
    """
    present = {c.id for c in qemu if c.present}
    return sorted(i for i in libvirt.enabled_ids if i not in present)


#: What the next hot-plug did to a QEMU process that had missed a vCPU unplug, per QEMU
#: (major, minor), measured in the lab under TCG (docs/hotplug.md). The refusal
#: messages quote the entry of the QEMU at hand, so they stay true for it.
NEXT_HOTPLUG_AFTER_MISSED_UNPLUG: dict[tuple[int, int], str] = {
    (7, 2): "QEMU 7.2 crashed on the next hot-plug in this state in the lab (3 of 3), also after "
            "libvirtd had re-read its vCPUs",
    (10, 0): "QEMU 10.0 survived the next hot-plug in this state in the lab (6 of 6), but it never "
             "finished removing the vCPU (no DEVICE_DELETED for it), so libvirt's account of this "
             "process stays unreliable",
}


def qemu_version(domain: DomainLike) -> tuple[int, int, int] | None:
    """The running QEMU's version from QMP ``query-version``; None when it cannot be read."""
    try:
        reply = domain.qmp("query-version")
        q = reply["qemu"]
        return int(q["major"]), int(q["minor"]), int(q["micro"])
    except (VirtQgaError, KeyError, TypeError, ValueError):
        return None


def hotplug_risk(domain: DomainLike) -> str:
    """What is known about hot-plugging into this domain's QEMU after a missed unplug."""
    version = qemu_version(domain)
    if version is not None and version[:2] in NEXT_HOTPLUG_AFTER_MISSED_UNPLUG:
        return NEXT_HOTPLUG_AFTER_MISSED_UNPLUG[version[:2]]
    here = f"QEMU {version[0]}.{version[1]}" if version is not None else "the QEMU version here"
    return (f"{here} was not measured; in the lab QEMU 7.2 crashed on the next hot-plug in this "
            "state and QEMU 10.0 did not")


#: Sub-directory of :func:`virt_qga.state.state_dir` holding one marker per domain UUID
#: whose *current* QEMU process took a vCPU unplug that libvirt missed.
MARKER_DIR = "hotplug-unsafe"


def _process_key(domain: DomainLike) -> tuple[str, str] | None:
    """(UUID, domain ID) from the live XML: the ID changes each time QEMU starts, and
    survives a libvirt daemon restart, so the pair names one QEMU process."""
    try:
        root = domain.xml()
    except (VirtQgaError, ET.ParseError):  # best effort: the caller reports read errors
        return None
    uuid = (root.findtext("uuid") or "").strip()
    dom_id = root.get("id")
    if not uuid or dom_id in (None, "-1"):
        return None
    return uuid, dom_id


def _marker_path(uuid: str) -> Path:
    return state_dir() / MARKER_DIR / f"{uuid}.json"


def mark_unsafe(domain: DomainLike, vcpus: list[int]) -> None:
    """Remember that this QEMU process took a vCPU unplug libvirt missed.

    Needed because the evidence in libvirt does not last: restarting libvirtd makes it
    re-read QEMU's vCPUs and its XML is right again, but QEMU 7.2 still crashes on the
    next hot-plug (measured in the lab: libvirtd restart, then a vCPU plug, QEMU died).
    """
    key = _process_key(domain)
    if key is None:
        return
    path = _marker_path(key[0])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"uuid": key[0], "id": key[1], "domain": domain.name,
                                   "vcpus": vcpus, "at": time.time()}))
        os.replace(tmp, path)
    except OSError:
        pass  # read-only state dir: the live residue check still protects this run


def unsafe_marker(domain: DomainLike) -> dict[str, Any] | None:
    """The marker of this domain's running QEMU process, if any. A marker left by an
    earlier QEMU process (another domain ID: the domain was restarted) is removed."""
    key = _process_key(domain)
    if key is None:
        return None
    path = _marker_path(key[0])
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or str(data.get("id")) != key[1]:
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return data


def check_no_residue(domain: DomainLike, libvirt: LibvirtVcpus | None = None,
                     qemu: list[QemuCpu] | None = None) -> None:
    """Raise OperationError (INCONSISTENT, nothing touched) when hot-plugging into this
    QEMU process is known to be unsafe: :func:`unplug_residue` is not empty now, or
    :func:`mark_unsafe` recorded it earlier for the same QEMU process."""
    from virt_qga.errors import OperationError

    lv_view = libvirt if libvirt is not None else read_libvirt_vcpus(domain)
    residue = unplug_residue(lv_view, qemu if qemu is not None else read_qemu_cpus(domain))
    if residue:
        mark_unsafe(domain, residue)
        raise OperationError(
            f"libvirt still lists vCPU(s) {residue} as enabled but QEMU has unplugged them (a "
            "previous unplug whose completion libvirt missed); refusing to hot-plug anything into "
            f"this QEMU process: {hotplug_risk(domain)}. Restart the domain first (restarting "
            "libvirtd corrects its XML, not QEMU)",
            state=State.INCONSISTENT, domain=domain.name,
            undo=f"virsh shutdown {domain.name} && virsh start {domain.name}")
    check_not_marked(domain)


def check_not_marked(domain: DomainLike) -> None:
    """Raise OperationError (INCONSISTENT, nothing touched) when :func:`mark_unsafe`
    recorded a missed vCPU unplug for this domain's running QEMU process."""
    from virt_qga.errors import OperationError

    marker = unsafe_marker(domain)
    if marker is not None:
        raise OperationError(
            f"this QEMU process had vCPU(s) {marker.get('vcpus')} unplugged without libvirt noticing "
            f"(recorded {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(marker.get('at', 0))))}); "
            f"refusing to hot-plug anything into it: {hotplug_risk(domain)}. Restart the domain first",
            state=State.INCONSISTENT, domain=domain.name,
            undo=f"virsh shutdown {domain.name} && virsh start {domain.name}")


def outcome_unknown(message: str) -> bool:
    """True when a libvirt error says the unplug may or may not have happened."""
    low = message.lower()
    return any(m in low for m in UNPLUG_UNKNOWN_MARKERS)
