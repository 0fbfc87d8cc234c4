"""virtio-mem resize through ``<requested>``, confirmed by the guest's and QEMU's sizes."""

from __future__ import annotations

import time

from virt_qga.errors import BadInputError, VirtQgaError
from virt_qga.host.memory import (
    human_size,
    parse_memory_layout,
    qemu_memory_devices,
    update,
    virtio_mem_resized_xml,
)
from virt_qga.host.vcpus import DomainLike
from virt_qga.outcome import State
from virt_qga.workflows.memory.result import MemoryResult
from virt_qga.workflows.results import finish


def virtio_mem_state(requested: int, current: int | None, shrinking: bool) -> State:
    """``done`` when the guest reached the request; else ``pending``.

    ``current`` above ``requested`` after a shrink is the usual case of a guest that
    cannot (yet) give memory back (unmovable pages in the device's blocks).
    """
    if current is None:
        return State.PENDING
    if current == requested:
        return State.DONE
    if shrinking and current > requested:
        return State.PENDING
    if not shrinking and current < requested:
        return State.PENDING
    return State.INCONSISTENT


def virtio_mem_qemu_size(domain: DomainLike, alias: str) -> int | None:
    """QEMU's plugged size of a virtio-mem device (``query-memory-devices`` ``size``)."""
    try:
        for q in qemu_memory_devices(domain):
            if q.get("type") == "virtio-mem" and q.get("id") == alias:
                return int(q["size"])
    except (VirtQgaError, KeyError, TypeError, ValueError):
        return None
    return None


def resize_virtio_mem(domain: DomainLike, delta: int, *, grow: bool, alias: str | None = None,
                      timeout: float = 60.0, poll: float = 0.5) -> MemoryResult:
    """Change a virtio-mem device's ``<requested>`` by ``delta`` bytes, then follow libvirt's
    ``<current>`` and QEMU's plugged ``size`` until both reach it (or the deadline)."""
    deadline = time.monotonic() + timeout
    layout = parse_memory_layout(domain.xml())
    devs = layout.virtio_mem
    if alias is not None:
        devs = [d for d in devs if d.alias == alias]
    if not devs:
        raise BadInputError("this domain has no virtio-mem device" + (f" named '{alias}'" if alias else ""),
                            field="--virtio-mem")
    dev = devs[0]
    req = dev.requested or 0
    new = req + delta if grow else req - delta
    block = dev.block or 0
    if block and delta % block:
        raise BadInputError(f"SIZE must be a multiple of the virtio-mem block size ({human_size(block)})",
                            field="SIZE")
    if new < 0 or new > dev.size:
        raise BadInputError(f"requested size would be {human_size(max(new, 0))}, "
                            f"outside 0..{human_size(dev.size)}",
                            field="SIZE")
    result = MemoryResult(domain=domain.name, action="grow" if grow else "shrink", size=delta)
    t = time.monotonic()
    update(domain, virtio_mem_resized_xml(dev, new))
    result.step("host-update", t, alias=dev.alias, requested=new)
    t = time.monotonic()
    current = dev.current
    qemu_size: int | None = None
    while True:
        now = parse_memory_layout(domain.xml()).by_alias(dev.alias or "")
        current = now.current if now else None
        qemu_size = virtio_mem_qemu_size(domain, dev.alias or "")
        state = virtio_mem_state(new, current, shrinking=not grow)
        qstate = virtio_mem_state(new, qemu_size, shrinking=not grow)
        if (state == State.DONE and qstate == State.DONE) or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if state == State.DONE and qstate != State.DONE:
        state = qstate
    result.step("wait-current", t, current=current, qemu_size=qemu_size, requested=new)
    result.devices.append({"alias": dev.alias, "requested": new, "current": current, "qemu_size": qemu_size})
    result.state = state
    if state != State.DONE:
        result.message = (f"{dev.alias}: current {human_size(current or 0)} stays "
                          f"{'above' if not grow else 'below'} requested {human_size(new)} at the deadline")
        result.hint = f"virt-qga memory {domain.name}"
    return finish(result)
