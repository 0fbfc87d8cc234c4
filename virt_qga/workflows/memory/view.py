"""The memory views of a domain: the layout libvirt describes and the guest's memory blocks."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Protocol

from virt_qga.errors import VirtQgaError
from virt_qga.host.memory import (
    MemoryLayout,
    parse_memory_layout,
    qemu_memory_devices,
)
from virt_qga.host.vcpus import DomainLike

#: errnos in an ``operation-failed`` reply that are worth another pass.
RETRYABLE_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN})


#: Poll interval while waiting for the guest to see a change (agent calls take ~1 ms).
GUEST_POLL = 0.05


class AgentLike(Protocol):
    def get_memory_blocks(self) -> Any: ...
    def set_memory_blocks(self, mem_blks: Any) -> Any: ...
    def get_memory_block_info(self) -> Any: ...


@dataclass
class MemoryView:
    block_size: int
    blocks: list[dict[str, Any]]
    layout: MemoryLayout
    qemu: list[dict[str, Any]] | None
    qemu_error: str | None = None

    def block(self, idx: int) -> dict[str, Any] | None:
        for b in self.blocks:
            if int(b["phys-index"]) == idx:
                return b
        return None

    def owner(self, idx: int) -> str | None:
        for d in self.layout.dimms:
            if idx in d.blocks(self.block_size):
                return d.alias or f"slot {d.slot}"
        return None

    def disagreements(self) -> list[str]:
        out: list[str] = []
        qemu_ids = None if self.qemu is None else {q.get("id") for q in self.qemu}
        for d in self.layout.dimms:
            ids = d.blocks(self.block_size)
            missing = [i for i in ids if self.block(i) is None]
            if missing:
                out.append(f"{d.alias}: guest has no block(s) {missing}")
            if qemu_ids is not None and d.alias not in qemu_ids:
                out.append(f"{d.alias}: in libvirt's XML but not in QEMU")
        if self.qemu is not None:
            lv = {d.alias for d in self.layout.devices}
            for q in self.qemu:
                if q.get("id") and q.get("id") not in lv:
                    out.append(f"{q.get('id')}: in QEMU but not in libvirt's XML")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_size": self.block_size,
            "memory": self.layout.memory,
            "max_memory": self.layout.max_memory,
            "slots": self.layout.slots,
            "dimms": [{**d.to_dict(), "blocks": [
                {"id": i, "online": (self.block(i) or {}).get("online"),
                 "present": self.block(i) is not None} for i in d.blocks(self.block_size)]}
                for d in self.layout.dimms],
            "virtio_mem": [d.to_dict() for d in self.layout.virtio_mem],
            "blocks": [{"id": int(b["phys-index"]), "online": bool(b.get("online")),
                        "can_offline": b.get("can-offline"), "dimm": self.owner(int(b["phys-index"]))}
                       for b in sorted(self.blocks, key=lambda b: int(b["phys-index"]))],
            "qemu": self.qemu,
            "qemu_error": self.qemu_error,
            "disagreements": self.disagreements(),
        }


def read_view(domain: DomainLike, agent: AgentLike) -> MemoryView:
    layout = parse_memory_layout(domain.xml())
    block_size = int(agent.get_memory_block_info()["size"])
    blocks = [dict(b) for b in agent.get_memory_blocks()]
    qemu: list[dict[str, Any]] | None = None
    err = None
    try:
        qemu = qemu_memory_devices(domain)
    except VirtQgaError as exc:
        err = str(exc)
    return MemoryView(block_size=block_size, blocks=blocks, layout=layout, qemu=qemu, qemu_error=err)
