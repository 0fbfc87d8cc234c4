"""The three views of a domain's vCPUs (guest, QEMU, libvirt), read close together."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from virt_qga.errors import VirtQgaError
from virt_qga.host.vcpus import (
    DomainLike,
    LibvirtVcpus,
    QemuCpu,
    parse_libvirt_vcpus,
    parse_qemu_cpus,
)

log = logging.getLogger(__name__)

#: Guest error texts (strerror) that mean "try again shortly".
TRANSIENT_GUEST_TEXTS = ("device or resource busy", "resource temporarily unavailable",
                         "try again")


#: Poll interval while waiting for the guest to see a change (agent calls take ~1 ms).
GUEST_POLL = 0.05


class AgentLike(Protocol):
    def get_vcpus(self) -> Any: ...
    def set_vcpus(self, vcpus: Any) -> int: ...


@dataclass
class VcpuRow:
    id: int
    guest: str            # "online" | "offline" | "absent" | "unknown"
    can_offline: bool | None
    qemu: str             # "present" | "absent" | "unknown"
    libvirt: str          # "enabled" | "disabled" | "absent"
    hotpluggable: bool
    order: int | None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "guest": self.guest, "can_offline": self.can_offline, "qemu": self.qemu,
                "libvirt": self.libvirt, "hotpluggable": self.hotpluggable, "order": self.order,
                "problems": self.problems}


@dataclass
class VcpuViews:
    """guest-get-vcpus, QMP and live XML, read close together."""

    libvirt: LibvirtVcpus
    qemu: list[QemuCpu] | None
    guest: list[dict[str, Any]] | None
    qemu_error: str | None = None
    guest_error: str | None = None
    #: Why the guest view is missing (the exception), for the exit code of a refusal.
    guest_exc: VirtQgaError | None = field(default=None, repr=False)

    @property
    def qemu_present(self) -> set[int] | None:
        return None if self.qemu is None else {c.id for c in self.qemu if c.present}

    @property
    def guest_present(self) -> set[int] | None:
        return None if self.guest is None else {int(v["logical-id"]) for v in self.guest}

    @property
    def guest_online(self) -> set[int] | None:
        return None if self.guest is None else {int(v["logical-id"]) for v in self.guest if v.get("online")}

    def guest_entry(self, vcpu_id: int) -> dict[str, Any] | None:
        for v in self.guest or []:
            if int(v["logical-id"]) == vcpu_id:
                return v
        return None

    def rows(self) -> list[VcpuRow]:
        ids: set[int] = set(range(self.libvirt.maximum))
        ids |= {v.id for v in self.libvirt.vcpus}
        ids |= {c.id for c in self.qemu or []}
        ids |= self.guest_present or set()
        qemu_by_id = {c.id: c for c in self.qemu or []}
        lv_enabled = self.libvirt.enabled_ids
        out: list[VcpuRow] = []
        for i in sorted(ids):
            g = self.guest_entry(i)
            if self.guest is None:
                guest = "unknown"
            elif g is None:
                guest = "absent"
            else:
                guest = "online" if g.get("online") else "offline"
            if self.qemu is None:
                qemu = "unknown"
            else:
                q = qemu_by_id.get(i)
                qemu = "present" if q is not None and q.present else "absent"
            lv = self.libvirt.get(i)
            libvirt = "enabled" if i in lv_enabled else ("disabled" if lv is not None or
                                                        i < self.libvirt.maximum else "absent")
            row = VcpuRow(id=i, guest=guest, can_offline=(bool(g.get("can-offline")) if g and
                                                          "can-offline" in g else None),
                          qemu=qemu, libvirt=libvirt, hotpluggable=lv.hotpluggable if lv else False,
                          order=lv.order if lv else None)
            if qemu != "unknown" and (libvirt == "enabled") != (qemu == "present"):
                row.problems.append(f"libvirt says {libvirt}, QEMU says {qemu}")
            if qemu != "unknown" and guest != "unknown" and (guest != "absent") != (qemu == "present"):
                row.problems.append(f"QEMU says {qemu}, guest says {guest}")
            out.append(row)
        return out

    def disagreements(self) -> list[str]:
        out = [f"vCPU {r.id}: {p}" for r in self.rows() for p in r.problems]
        if self.libvirt.vcpus and self.libvirt.current != len(self.libvirt.enabled_ids):
            out.append(f"libvirt <vcpu current='{self.libvirt.current}'> but "
                       f"{len(self.libvirt.enabled_ids)} vCPUs enabled in <vcpus>")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "libvirt": {"maximum": self.libvirt.maximum, "current": self.libvirt.current,
                        "enabled": sorted(self.libvirt.enabled_ids)},
            "qemu": {"present": _sorted(self.qemu_present), "error": self.qemu_error},
            "guest": {"present": _sorted(self.guest_present), "online": _sorted(self.guest_online),
                      "error": self.guest_error},
            "vcpus": [r.to_dict() for r in self.rows()],
            "disagreements": self.disagreements(),
        }


def _sorted(ids: set[int] | None) -> list[int] | None:
    return None if ids is None else sorted(ids)


def read_views(domain: DomainLike, agent: AgentLike | None) -> VcpuViews:
    """Read all three views; a view that cannot be read is ``None`` with its error."""
    libvirt = parse_libvirt_vcpus(domain.xml())
    qemu: list[QemuCpu] | None = None
    qemu_error = None
    try:
        qemu = parse_qemu_cpus(list(domain.qmp("query-hotpluggable-cpus") or []),
                               list(domain.qmp("query-cpus-fast") or []))
    except VirtQgaError as exc:
        qemu_error = str(exc)
    guest: list[dict[str, Any]] | None = None
    guest_error = None
    guest_exc: VirtQgaError | None = None
    if agent is not None:
        try:
            guest = [dict(v) for v in agent.get_vcpus()]
        except VirtQgaError as exc:
            guest_error, guest_exc = str(exc), exc
    return VcpuViews(libvirt=libvirt, qemu=qemu, guest=guest, qemu_error=qemu_error,
                     guest_error=guest_error, guest_exc=guest_exc)
