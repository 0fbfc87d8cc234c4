"""Host-side memory devices: DIMMs and virtio-mem in the live XML, and the libvirt calls.

A DIMM's place in guest physical memory is ``<address type='dimm' slot= base=>``; with
the guest's memory block size (``guest-get-memory-block-info``) that gives the guest
block ids it covers: ``base // block_size`` up to ``(base + size) // block_size - 1``.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from virt_qga.errors import BadInputError, ProtocolError
from virt_qga.host.vcpus import DomainLike

_UNITS = {
    "": 1, "b": 1, "bytes": 1,
    "k": 1 << 10, "kb": 1000, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1000**2, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1000**4, "tib": 1 << 40,
}


def parse_size(text: str, field: str = "SIZE", allow_zero: bool = False) -> int:
    """"256M", "1G", "262144K", "268435456" -> bytes. Single letters are binary units
    (K = KiB, as libvirt and QEMU read them)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS:
        raise BadInputError(f"{field} '{text}' is not a size (examples: 256M, 1G, 262144K)", field=field)
    value = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0 and not allow_zero:
        raise BadInputError(f"{field} must be positive", field=field)
    return value


def human_size(n: int) -> str:
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


def _xml_size(elem: ET.Element | None) -> int | None:
    """A libvirt scaled integer (``<size unit='KiB'>N</size>``) in bytes."""
    if elem is None or not (elem.text or "").strip():
        return None
    unit = elem.get("unit", "KiB")
    try:
        return parse_size(f"{elem.text.strip() if elem.text else ''}{unit}", field=elem.tag, allow_zero=True)
    except BadInputError as exc:
        raise ProtocolError(f"unreadable <{elem.tag}> in domain XML: {exc}") from exc


@dataclass(frozen=True)
class MemoryDevice:
    """One ``<memory>`` device of the live XML (model dimm, virtio-mem, nvdimm, ...)."""

    model: str
    alias: str | None
    size: int                          # bytes (target/size)
    node: int | None
    slot: int | None = None
    base: int | None = None            # guest physical address (DIMM)
    requested: int | None = None       # virtio-mem
    current: int | None = None         # virtio-mem
    block: int | None = None           # virtio-mem block size
    xml: str = ""                      # the element as in the live XML

    def blocks(self, block_size: int) -> list[int]:
        """Guest memory block ids this DIMM covers (empty when its base is unknown)."""
        if self.base is None or block_size <= 0:
            return []
        first = self.base // block_size
        return list(range(first, (self.base + self.size) // block_size))

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "xml" and v is not None}
        if self.base is not None:
            out["base_hex"] = hex(self.base)
        return out


@dataclass(frozen=True)
class MemoryLayout:
    """What libvirt says about memory: the devices, and the hotplug limits."""

    devices: tuple[MemoryDevice, ...]
    max_memory: int | None             # <maxMemory> in bytes (None: no hotplug)
    slots: int                          # <maxMemory slots=>
    memory: int                         # <memory> (total, including DIMMs) in bytes
    current_memory: int | None

    @property
    def dimms(self) -> list[MemoryDevice]:
        return [d for d in self.devices if d.model == "dimm"]

    @property
    def virtio_mem(self) -> list[MemoryDevice]:
        return [d for d in self.devices if d.model == "virtio-mem"]

    def by_alias(self, alias: str) -> MemoryDevice | None:
        for d in self.devices:
            if d.alias == alias:
                return d
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def parse_memory_layout(root: ET.Element) -> MemoryLayout:
    """Memory devices and limits from a domain XML tree."""
    devices: list[MemoryDevice] = []
    for m in root.findall("devices/memory"):
        target = m.find("target")
        alias = m.find("alias")
        addr = m.find("address")
        size = _xml_size(target.find("size")) if target is not None else None
        if size is None:
            raise ProtocolError("a <memory> device has no <target><size>")
        node = target.find("node") if target is not None else None
        devices.append(MemoryDevice(
            model=m.get("model", "?"),
            alias=alias.get("name") if alias is not None else None,
            size=size,
            node=_int(node.text) if node is not None else None,
            slot=_int(addr.get("slot")) if addr is not None and addr.get("type") == "dimm" else None,
            base=_int(addr.get("base")) if addr is not None and addr.get("type") == "dimm" else None,
            requested=_xml_size(target.find("requested")) if target is not None else None,
            current=_xml_size(target.find("current")) if target is not None else None,
            block=_xml_size(target.find("block")) if target is not None else None,
            xml=ET.tostring(m, encoding="unicode"),
        ))
    mx = root.find("maxMemory")
    mem = _xml_size(root.find("memory")) or 0
    return MemoryLayout(
        devices=tuple(devices),
        max_memory=_xml_size(mx) if mx is not None else None,
        slots=int(mx.get("slots", "0")) if mx is not None else 0,
        memory=mem,
        current_memory=_xml_size(root.find("currentMemory")),
    )


def read_layout(domain: DomainLike, inactive: bool = False) -> MemoryLayout:
    return parse_memory_layout(domain.xml(inactive=inactive))


def dimm_xml(size: int, node: int = 0) -> str:
    """The device XML to hot-plug a DIMM of ``size`` bytes on NUMA ``node``."""
    return (f"<memory model='dimm'><target><size unit='KiB'>{size // 1024}</size>"
            f"<node>{node}</node></target></memory>")


def virtio_mem_resized_xml(device: MemoryDevice, requested: int) -> str:
    """The device's live XML with ``<requested>`` set to ``requested`` bytes (for update)."""
    elem = ET.fromstring(device.xml)
    target = elem.find("target")
    if target is None:
        raise ProtocolError("virtio-mem device without <target>")
    req = target.find("requested")
    if req is None:
        req = ET.SubElement(target, "requested")
    req.set("unit", "KiB")
    req.text = str(requested // 1024)
    cur = target.find("current")
    if cur is not None:  # output-only; libvirt ignores it on update, drop it for clarity
        target.remove(cur)
    return ET.tostring(elem, encoding="unicode")


def _flags(config: bool) -> int:
    from virt_qga.connection import import_libvirt

    lv = import_libvirt()
    flags = int(lv.VIR_DOMAIN_AFFECT_LIVE)
    if config:
        flags |= int(lv.VIR_DOMAIN_AFFECT_CONFIG)
    return flags


def attach(domain: DomainLike, xml: str, config: bool = False) -> None:
    domain.call("attachDeviceFlags", xml, _flags(config))


def detach(domain: DomainLike, xml: str, config: bool = False) -> None:
    domain.call("detachDeviceFlags", xml, _flags(config))


def update(domain: DomainLike, xml: str, config: bool = False) -> None:
    domain.call("updateDeviceFlags", xml, _flags(config))


class DeviceRemovedWatcher:
    """Waits for libvirt's DEVICE_REMOVED event for one alias, polling the live XML too.

    The event needs libvirt's event loop (:func:`virt_qga.connection.start_event_loop`
    before the connection was opened); without it, or if registration fails, polling
    alone decides. Use as a context manager around the detach call.
    """

    def __init__(self, domain: Any, alias: str) -> None:
        self.domain = domain
        self.alias = alias
        self.event = threading.Event()
        self.callback_id: int | None = None
        self.via = "poll"

    def __enter__(self) -> DeviceRemovedWatcher:
        try:
            from virt_qga.connection import import_libvirt

            lv = import_libvirt()
            conn = getattr(self.domain, "conn", None)
            dom = getattr(self.domain, "dom", None)
            if conn is not None and dom is not None:
                def on_removed(_c: Any, _d: Any, alias: str, _o: Any) -> None:
                    if alias == self.alias:
                        self.event.set()

                self.callback_id = conn.domainEventRegisterAny(
                    dom, lv.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed, None)
        except Exception:
            self.callback_id = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.callback_id is not None:
            try:
                self.domain.conn.domainEventDeregisterAny(self.callback_id)
            except Exception:
                pass

    def gone_from_xml(self) -> bool:
        return read_layout(self.domain).by_alias(self.alias) is None

    def wait(self, deadline: float, poll: float = 0.5) -> bool:
        """True once the device is removed (event or live XML), False at the deadline."""
        while True:
            if self.event.is_set():
                self.via = "event"
                return True
            if self.gone_from_xml():
                self.via = "xml-poll"
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.event.wait(min(poll, left))


def qemu_memory_devices(domain: DomainLike) -> list[dict[str, Any]]:
    """QEMU's own list (``query-memory-devices``): [{"type", "id", "addr", "size", ...}]."""
    out: list[dict[str, Any]] = []
    for entry in domain.qmp("query-memory-devices") or []:
        data = dict(entry.get("data") or {})
        data["type"] = entry.get("type")
        out.append(data)
    return out
