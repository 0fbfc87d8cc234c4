"""Memory hot-plug and hot-unplug (DIMMs, virtio-mem) with the guest's consent.

Unplug of a DIMM, per DIMM (highest base address first):

1. map the DIMM to guest memory blocks (``base // block_size`` ...);
2. offline those blocks with ``guest-set-memory-blocks``, in passes: a block that
   answers ``operation-failed`` with EBUSY/EAGAIN is retried with backoff (bounded in
   passes and seconds); EINVAL, other errnos and ``operation-not-supported`` stop at
   once; ``not-found`` means already gone and is verified against the block list;
3. detach the DIMM exactly as the live XML shows it and wait (deadline) for libvirt's
   DEVICE_REMOVED event or for the device to leave the live XML;
4. on refusal or rejection, online the blocks again (rollback) and report.

Plug attaches a DIMM, waits for its blocks to appear in the guest and onlines any the
guest left offline. virtio-mem devices are resized through ``<requested>``.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from virt_qga.errors import BadInputError, OperationError, VirtQgaError, is_transient
from virt_qga.exitcodes import ExitCode
from virt_qga.host.memory import (
    DeviceRemovedWatcher,
    MemoryDevice,
    MemoryLayout,
    attach,
    detach,
    dimm_xml,
    human_size,
    parse_memory_layout,
    qemu_memory_devices,
    update,
    virtio_mem_resized_xml,
)
from virt_qga.host.vcpus import DomainLike, check_no_residue
from virt_qga.retry import when

#: errnos in an ``operation-failed`` reply that are worth another pass.
RETRYABLE_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN})


#: Poll interval while waiting for the guest to see a change (agent calls take ~1 ms).
GUEST_POLL = 0.05


class AgentLike(Protocol):
    def get_memory_blocks(self) -> Any: ...
    def set_memory_blocks(self, mem_blks: Any) -> Any: ...
    def get_memory_block_info(self) -> Any: ...


# -- views -----------------------------------------------------------------------------


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


# -- guest blocks: guest-set-memory-blocks with per-block outcomes ------------------------


def classify_block_response(resp: dict[str, Any]) -> str:
    """One per-block reply -> ``ok`` | ``busy`` (retry) | ``gone`` (verify) | ``fatal``."""
    kind = resp.get("response")
    if kind == "success":
        return "ok"
    if kind == "not-found":
        return "gone"
    if kind == "operation-failed" and resp.get("error-code") in RETRYABLE_ERRNOS:
        return "busy"
    return "fatal"


def describe_response(resp: dict[str, Any]) -> str:
    code = resp.get("error-code")
    if code is None:
        return str(resp.get("response"))
    name = errno.errorcode.get(int(code), str(code))
    return f"{resp.get('response')} ({name})"


class BlocksBusy(VirtQgaError):
    """Some blocks answered EBUSY/EAGAIN this pass (retryable)."""


class BlocksRefused(VirtQgaError):
    """A block answered with a non-retryable failure."""


@dataclass
class BlockOutcome:
    done: list[int] = field(default_factory=list)        # changed by us, confirmed
    gone: list[int] = field(default_factory=list)        # not-found, verified absent
    failed: dict[int, str] = field(default_factory=dict)  # id -> reason
    passes: int = 0
    busy_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "gone": self.gone, "failed": {str(k): v for k, v in self.failed.items()},
                "passes": self.passes, "busy_seen": self.busy_seen}


def set_blocks(agent: AgentLike, ids: list[int], online: bool, *, attempts: int = 6,
               seconds: float = 30.0, first_wait: float = 0.5) -> BlockOutcome:
    """Set ``ids`` online/offline in passes; see the module docstring for the policy."""
    out = BlockOutcome()
    pending = list(ids)

    def one_pass() -> None:
        nonlocal pending
        out.passes += 1
        replies = agent.set_memory_blocks([{"phys-index": i, "online": online} for i in pending])
        by_id = {int(r["phys-index"]): dict(r) for r in replies}
        busy: list[int] = []
        for i in pending:
            r = by_id.get(i, {"response": "operation-failed"})
            kind = classify_block_response(r)
            if kind == "ok":
                out.done.append(i)
            elif kind == "gone":
                out.gone.append(i)
            elif kind == "busy":
                busy.append(i)
                out.busy_seen += 1
            else:
                out.failed[i] = describe_response(r)
        pending = busy
        if out.failed:
            raise BlocksRefused("; ".join(f"block {k}: {v}" for k, v in out.failed.items()))
        if busy:
            raise BlocksBusy(f"block(s) {busy} busy")

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, BlocksBusy) or is_transient(exc)

    try:
        when(retryable, attempts=attempts, seconds=seconds, first_wait=first_wait)(one_pass)
    except BlocksBusy:
        for i in pending:
            out.failed[i] = "operation-failed (EBUSY) after retries"
    except BlocksRefused:
        pass
    except VirtQgaError as exc:
        for i in pending:
            out.failed.setdefault(i, str(exc))
    if out.gone:  # "not-found" must really mean gone: check the guest's list
        present = {int(b["phys-index"]): bool(b.get("online")) for b in agent.get_memory_blocks()}
        for i in list(out.gone):
            if i in present and present[i] != online:
                out.gone.remove(i)
                out.failed[i] = "not-found, but the guest still lists it"
    return out


# -- results ---------------------------------------------------------------------------


@dataclass
class MemoryResult:
    domain: str
    action: str
    state: str = "done"
    size: int = 0
    devices: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] | None = None
    message: str = ""
    hint: str | None = None

    def step(self, name: str, started: float, **info: Any) -> None:
        self.steps.append({"step": name, "seconds": round(time.monotonic() - started, 3), **info})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


EXIT_BY_STATE = {"done": ExitCode.OK, "pending": ExitCode.PARTIAL, "partial": ExitCode.PARTIAL,
                 "rolled-back": ExitCode.FAILED, "inconsistent": ExitCode.INCONSISTENT}


def finish(result: MemoryResult) -> MemoryResult:
    if result.state == "done":
        return result
    raise OperationError(result.message or f"memory change ended {result.state}",
                         exit_code=EXIT_BY_STATE.get(result.state, ExitCode.FAILED), state=result.state,
                         undo=result.hint, result=result.to_dict(), domain=result.domain)


def _online_hint(domain: str, ids: list[int]) -> str:
    blks = ",".join(f'{{"phys-index":{i},"online":true}}' for i in ids)
    return f"virt-qga call {domain} guest-set-memory-blocks --args '{{\"mem-blks\":[{blks}]}}'"


# -- planning --------------------------------------------------------------------------


def choose_dimms(layout: MemoryLayout, size: int) -> list[MemoryDevice]:
    """DIMMs that add up to exactly ``size``, highest base address first."""
    dimms = sorted(layout.dimms, key=lambda d: d.base or 0, reverse=True)
    if not dimms:
        raise BadInputError("this domain has no hot-plugged DIMMs to remove", field="SIZE")
    chosen: list[MemoryDevice] = []
    total = 0
    for d in dimms:
        if total + d.size <= size:
            chosen.append(d)
            total += d.size
        if total == size:
            return chosen
    sizes = ", ".join(f"{d.alias}={human_size(d.size)}" for d in dimms)
    raise BadInputError(f"{human_size(size)} is not a sum of whole DIMMs taken from the highest "
                        f"address down ({sizes})", field="SIZE")


def _check_multiple(size: int, block_size: int) -> None:
    if size % block_size:
        raise BadInputError(f"SIZE {human_size(size)} is not a multiple of the guest's memory block "
                            f"size ({human_size(block_size)})", field="SIZE")


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
        _check_multiple(size, view.block_size)
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
        if state == "done":
            removed.append(d.alias or "?")
            continue
        if removed and state == "rolled-back":
            result.state = "partial"
            result.message = f"removed {removed}; {result.message}"
        else:
            result.state = state
        break
    result.view = read_view(domain, agent).to_dict()
    return finish(result)


def _unplug_one(domain: DomainLike, agent: AgentLike, view: MemoryView, dimm: MemoryDevice, config: bool,
                deadline: float, attempts: int, busy_seconds: float, result: MemoryResult) -> str:
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
            result.hint = _online_hint(domain.name, outcome.done)
            result.message += "; rollback incomplete"
        return "rolled-back" if back else "inconsistent"
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
                result.hint = _online_hint(domain.name, outcome.done)
                return "inconsistent"
            return "rolled-back"
        result.message = (f"{dimm.alias}: detach sent but the DIMM is still "
                          f"{'in QEMU' if in_qemu else 'in libvirt XML'} at the deadline; its blocks "
                          "are offline, the guest may still complete the unplug")
        result.hint = f"check: virt-qga memory {domain.name}; undo: {_online_hint(domain.name, outcome.done)}"
        return "pending"
    # 3. verify: the guest's blocks are gone, QEMU agrees
    t = time.monotonic()
    left = _wait_blocks_gone(agent, ids, deadline)
    in_qemu = any(q.get("id") == dimm.alias for q in qemu_memory_devices(domain))
    result.step("verify", t, alias=dimm.alias, blocks_left=left, in_qemu=in_qemu)
    if left or in_qemu:
        result.message = (f"{dimm.alias}: removed from libvirt but "
                          + ("the guest still lists blocks " + str(left) if left else "QEMU still has it"))
        result.hint = f"virt-qga memory {domain.name}"
        return "inconsistent"
    if config:
        _detach_config(domain, dimm, result)
    return "done"


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
    _check_multiple(size, view.block_size)
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
            result.state = "rolled-back"
            result.message = f"libvirt refused the DIMM: {exc}; nothing changed"
        else:
            result.state = "inconsistent"
            result.message = f"libvirt reported an error ({exc}) but a new memory device appeared"
        return finish(result)
    after = parse_memory_layout(domain.xml())
    new = [d for d in after.devices if d.alias not in before]
    result.step("host-attach", t, ok=True, alias=new[0].alias if new else None)
    if len(new) != 1 or new[0].base is None:
        result.state = "inconsistent"
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
        result.state = "partial"
        result.message = (f"{dimm.alias} plugged but the guest lists only blocks {sorted(online)} of {ids} "
                          "at the deadline")
        result.hint = f"virt-qga memory {domain.name}"
        return finish(result)
    offline = [i for i, o in online.items() if not o]
    if offline:
        t = time.monotonic()
        out = set_blocks(agent, offline, True)
        result.step("guest-online", t, **out.to_dict())
        if out.failed:
            result.state = "partial"
            result.message = f"{dimm.alias} plugged but the guest did not online: {out.failed}"
            result.hint = _online_hint(domain.name, sorted(out.failed))
    result.view = read_view(domain, agent).to_dict()
    if result.state == "done":
        dimm_view = next((x for x in result.view["dimms"] if x.get("alias") == dimm.alias), None)
        if dimm_view is None or not all(b["online"] for b in dimm_view["blocks"]):
            result.state = "inconsistent"
            result.message = f"{dimm.alias}: not all blocks online after plugging"
    return finish(result)


# -- virtio-mem ------------------------------------------------------------------------


def virtio_mem_state(requested: int, current: int | None, shrinking: bool) -> str:
    """``done`` when the guest reached the request; else ``pending``.

    ``current`` above ``requested`` after a shrink is the usual case of a guest that
    cannot (yet) give memory back (unmovable pages in the device's blocks).
    """
    if current is None:
        return "pending"
    if current == requested:
        return "done"
    if shrinking and current > requested:
        return "pending"
    if not shrinking and current < requested:
        return "pending"
    return "inconsistent"


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
        if (state == "done" and qstate == "done") or time.monotonic() >= deadline:
            break
        time.sleep(poll)
    if state == "done" and qstate != "done":
        state = qstate
    result.step("wait-current", t, current=current, qemu_size=qemu_size, requested=new)
    result.devices.append({"alias": dev.alias, "requested": new, "current": current, "qemu_size": qemu_size})
    result.state = state
    if state != "done":
        result.message = (f"{dev.alias}: current {human_size(current or 0)} stays "
                          f"{'above' if not grow else 'below'} requested {human_size(new)} at the deadline")
        result.hint = f"virt-qga memory {domain.name}"
    return finish(result)
