"""DIMM hot-unplug and hot-plug, each step verified in the guest and QEMU, with rollback."""

from __future__ import annotations

import time
from typing import Any

from virt_qga.errors import BadInputError, VirtQgaError
from virt_qga.host.memory import (
    DeviceRemovedWatcher,
    MemoryDevice,
    attach,
    detach,
    dimm_xml,
    human_size,
    parse_memory_layout,
    qemu_memory_devices,
)
from virt_qga.host.vcpus import DomainLike, check_no_residue
from virt_qga.outcome import State
from virt_qga.workflows.memory.blocks import set_blocks
from virt_qga.workflows.memory.plan import check_block_multiple, choose_dimms
from virt_qga.workflows.memory.result import MemoryResult, online_hint
from virt_qga.workflows.memory.view import GUEST_POLL, AgentLike, MemoryView, read_view
from virt_qga.workflows.results import finish

# -- unplug ----------------------------------------------------------------------------


def unplug(domain: DomainLike, agent: AgentLike, *, size: int | None = None, alias: str | None = None,
           config: bool = False, timeout: float = 120.0, attempts: int = 6,
           busy_seconds: float = 30.0) -> MemoryResult:
    """Remove DIMMs (by total ``size`` or one ``alias``) with the guest's consent."""
    deadline = time.monotonic() + timeout
    view = read_view(domain, agent)
    if alias is not None:
        dev = view.layout.by_alias(alias)
        if dev is None or dev.model != "dimm":
            known = ", ".join(d.alias or "?" for d in view.layout.dimms) or "none"
            raise BadInputError(f"no DIMM with alias '{alias}' (DIMMs: {known})", field="--dimm")
        dimms = [dev]
    else:
        if size is None:
            raise BadInputError("give SIZE or --dimm ALIAS", field="SIZE")
        check_block_multiple(size, view.block_size)
        dimms = choose_dimms(view.layout, size)
    check_no_residue(domain)
    for d in dimms:
        if d.base is None:
            raise BadInputError(f"{d.alias}: no <address type='dimm' base=...> in the live XML",
                                field="--dimm")
    result = MemoryResult(domain=domain.name, action="unplug", size=sum(d.size for d in dimms))
    removed: list[str] = []
    for d in dimms:
        state = _unplug_one(domain, agent, view, d, config, deadline, attempts, busy_seconds, result)
        if state == State.DONE:
            removed.append(d.alias or "?")
            continue
        if removed and state == State.ROLLED_BACK:
            result.state = State.PARTIAL
            result.message = f"removed {removed}; {result.message}"
        else:
            result.state = state
        break
    result.view = read_view(domain, agent).to_dict()
    return finish(result)


def _unplug_one(domain: DomainLike, agent: AgentLike, view: MemoryView, dimm: MemoryDevice, config: bool,
                deadline: float, attempts: int, busy_seconds: float, result: MemoryResult) -> State:
    ids = dimm.blocks(view.block_size)
    info: dict[str, Any] = {"alias": dimm.alias, "size": dimm.size, "base": hex(dimm.base or 0),
                            "blocks": ids}
    result.devices.append(info)
    online_before = [i for i in ids if (view.block(i) or {}).get("online")]
    # 1. the guest lets go of the memory
    t = time.monotonic()
    outcome = set_blocks(agent, online_before, False, attempts=attempts, seconds=busy_seconds)
    result.step("guest-offline", t, alias=dimm.alias, **outcome.to_dict())
    info["offline"] = outcome.to_dict()
    if outcome.failed:
        back = _rollback(agent, outcome.done, result, dimm.alias)
        result.message = (f"{dimm.alias}: guest refused to offline memory: "
                          + "; ".join(f"block {k}: {v}" for k, v in outcome.failed.items()))
        if not back:
            result.hint = online_hint(domain.name, outcome.done)
            result.message += "; rollback incomplete"
        return State.ROLLED_BACK if back else State.INCONSISTENT
    # 2. the host removes the DIMM; wait for it to really go
    t = time.monotonic()
    rejected: str | None = None
    with DeviceRemovedWatcher(domain, dimm.alias or "") as watcher:
        try:
            detach(domain, dimm.xml, False)
        except VirtQgaError as exc:
            rejected = str(exc)
        removed = False if rejected and "reject" in rejected.lower() else watcher.wait(deadline)
    result.step("host-detach", t, alias=dimm.alias, removed=removed, via=watcher.via,
                **({"libvirt_error": rejected} if rejected else {}))
    if not removed:
        try:
            in_qemu = any(q.get("id") == dimm.alias for q in qemu_memory_devices(domain))
        except VirtQgaError:
            in_qemu = True
        if (rejected and "reject" in rejected.lower()) or (rejected and in_qemu):
            back = _rollback(agent, outcome.done, result, dimm.alias)
            result.message = f"{dimm.alias}: unplug refused: {rejected}; blocks onlined again"
            if not back:
                result.hint = online_hint(domain.name, outcome.done)
                return State.INCONSISTENT
            return State.ROLLED_BACK
        result.message = (f"{dimm.alias}: detach sent but the DIMM is still "
                          f"{'in QEMU' if in_qemu else 'in libvirt XML'} at the deadline; its blocks "
                          "are offline, the guest may still complete the unplug")
        result.hint = f"check: virt-qga memory {domain.name}; undo: {online_hint(domain.name, outcome.done)}"
        return State.PENDING
    # 3. verify: the guest's blocks are gone, QEMU agrees
    t = time.monotonic()
    left = _wait_blocks_gone(agent, ids, deadline)
    in_qemu = any(q.get("id") == dimm.alias for q in qemu_memory_devices(domain))
    result.step("verify", t, alias=dimm.alias, blocks_left=left, in_qemu=in_qemu)
    if left or in_qemu:
        result.message = (f"{dimm.alias}: removed from libvirt but "
                          + ("the guest still lists blocks " + str(left) if left else "QEMU still has it"))
        result.hint = f"virt-qga memory {domain.name}"
        return State.INCONSISTENT
    if config:
        _detach_config(domain, dimm, result)
    return State.DONE


def _wait_blocks_gone(agent: AgentLike, ids: list[int], deadline: float) -> list[int]:
    while True:
        listed = {int(b["phys-index"]) for b in agent.get_memory_blocks()}
        left = [i for i in ids if i in listed]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(GUEST_POLL)


def _detach_config(domain: DomainLike, dimm: MemoryDevice, result: MemoryResult) -> None:
    """Remove the matching DIMM from the persistent config, if it is there."""
    t = time.monotonic()
    inactive = parse_memory_layout(domain.xml(inactive=True))
    match = next((d for d in inactive.dimms if d.size == dimm.size and
                  (d.slot is None or d.slot == dimm.slot) and (d.base is None or d.base == dimm.base)), None)
    if match is None:
        result.step("config", t, alias=dimm.alias, detached=False, note="not in the persistent config")
        return
    from virt_qga.connection import import_libvirt

    lv = import_libvirt()
    domain.call("detachDeviceFlags", match.xml, lv.VIR_DOMAIN_AFFECT_CONFIG)
    result.step("config", t, alias=dimm.alias, detached=True)


def _rollback(agent: AgentLike, ids: list[int], result: MemoryResult, alias: str | None) -> bool:
    if not ids:
        return True
    t = time.monotonic()
    back = set_blocks(agent, ids, True, attempts=3, seconds=10.0)
    result.step("rollback", t, alias=alias, **back.to_dict())
    return not back.failed


# -- plug ------------------------------------------------------------------------------


def plug(domain: DomainLike, agent: AgentLike, size: int, *, node: int = 0, config: bool = False,
         timeout: float = 60.0) -> MemoryResult:
    """Hot-plug a DIMM of ``size`` bytes and make sure its blocks are online."""
    deadline = time.monotonic() + timeout
    view = read_view(domain, agent)
    lay = view.layout
    check_block_multiple(size, view.block_size)
    if lay.max_memory is None or lay.slots == 0:
        raise BadInputError("this domain has no DIMM slots (<maxMemory slots=...> is missing)",
                            field="DOMAIN")
    used = len([d for d in lay.devices if d.slot is not None or d.model in ("dimm", "nvdimm")])
    if used >= lay.slots:
        raise BadInputError(f"all {lay.slots} memory slots are in use", field="DOMAIN")
    if lay.memory + size > lay.max_memory:
        raise BadInputError(f"{human_size(size)} more would exceed maxMemory "
                            f"({human_size(lay.memory)} of {human_size(lay.max_memory)} used)", field="SIZE")
    check_no_residue(domain)
    before = {d.alias for d in lay.devices}
    result = MemoryResult(domain=domain.name, action="plug", size=size)
    t = time.monotonic()
    try:
        attach(domain, dimm_xml(size, node), config)
    except VirtQgaError as exc:
        result.step("host-attach", t, ok=False, error=str(exc))
        after = parse_memory_layout(domain.xml())
        if {d.alias for d in after.devices} == before:
            result.state = State.ROLLED_BACK
            result.message = f"libvirt refused the DIMM: {exc}; nothing changed"
        else:
            result.state = State.INCONSISTENT
            result.message = f"libvirt reported an error ({exc}) but a new memory device appeared"
        return finish(result)
    after = parse_memory_layout(domain.xml())
    new = [d for d in after.devices if d.alias not in before]
    result.step("host-attach", t, ok=True, alias=new[0].alias if new else None)
    if len(new) != 1 or new[0].base is None:
        result.state = State.INCONSISTENT
        result.message = "DIMM attached but not found (with a base address) in the live XML"
        return finish(result)
    dimm = new[0]
    ids = dimm.blocks(view.block_size)
    result.devices.append({"alias": dimm.alias, "size": dimm.size, "base": hex(dimm.base or 0),
                           "blocks": ids})
    # the guest sees the blocks appear; most guests online them (memhp_default_state), else we do
    t = time.monotonic()
    online: dict[int, bool] = {}
    while True:
        online = {int(b["phys-index"]): bool(b.get("online")) for b in agent.get_memory_blocks()
                  if int(b["phys-index"]) in ids}
        if len(online) == len(ids) or time.monotonic() >= deadline:
            break
        time.sleep(GUEST_POLL)
    result.step("guest-detect", t, seen=sorted(online),
                online_by_guest=sorted(i for i, o in online.items() if o))
    if len(online) != len(ids):
        result.state = State.PARTIAL
        result.message = (f"{dimm.alias} plugged but the guest lists only blocks {sorted(online)} of {ids} "
                          "at the deadline")
        result.hint = f"virt-qga memory {domain.name}"
        return finish(result)
    offline = [i for i, o in online.items() if not o]
    if offline:
        t = time.monotonic()
        out = set_blocks(agent, offline, True)
        raced: list[int] = []
        if out.failed:
            # A guest that onlines new blocks itself (memhp_default_state) may be doing so
            # right now: the kernel then answers EINVAL. What counts is the state after.
            now = {int(b["phys-index"]): bool(b.get("online")) for b in agent.get_memory_blocks()}
            raced = sorted(i for i in out.failed if now.get(i))
            for i in raced:
                del out.failed[i]
        result.step("guest-online", t, **out.to_dict(), onlined_by_guest_meanwhile=raced)
        if out.failed:
            result.state = State.PARTIAL
            result.message = f"{dimm.alias} plugged but the guest did not online: {out.failed}"
            result.hint = online_hint(domain.name, sorted(out.failed))
    result.view = read_view(domain, agent).to_dict()
    if result.state == State.DONE:
        dimm_view = next((x for x in result.view["dimms"] if x.get("alias") == dimm.alias), None)
        if dimm_view is None or not all(b["online"] for b in dimm_view["blocks"]):
            result.state = State.INCONSISTENT
            result.message = f"{dimm.alias}: not all blocks online after plugging"
    return finish(result)
