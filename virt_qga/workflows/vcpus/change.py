"""The vCPU workflows (shrink, grow, guest-only) and their result."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from virt_qga.errors import (
    BadInputError,
    OperationError,
    VirtQgaError,
    is_transient,
    option_ref,
)
from virt_qga.host.vcpus import (
    DomainLike,
    check_no_residue,
    check_not_marked,
    mark_unsafe,
    outcome_unknown,
    unplug_residue,
)
from virt_qga.outcome import State
from virt_qga.workflows.results import ChangeResult, finish
from virt_qga.workflows.vcpus.guest import GuestVcpuRefused, set_guest_online
from virt_qga.workflows.vcpus.plan import choose_new, choose_victims
from virt_qga.workflows.vcpus.reconcile import reconcile
from virt_qga.workflows.vcpus.views import GUEST_POLL, AgentLike, VcpuViews, read_views


@dataclass(kw_only=True)
class VcpuResult(ChangeResult):
    """A vCPU change; ``action`` is shrink, grow, online, offline or none."""

    what: ClassVar[str] = "vCPU change"

    target: int
    changed_guest: list[int] = field(default_factory=list)
    plugged: list[int] = field(default_factory=list)
    unplugged: list[int] = field(default_factory=list)
    rolled_back: list[int] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None
    views: dict[str, Any] | None = None


def _rollback_guest(agent: AgentLike, ids: list[int], result: VcpuResult) -> bool:
    """Online again what this workflow offlined. True when all came back."""
    if not ids:
        return True
    t = time.monotonic()
    try:
        back = set_guest_online(agent, ids, True)
    except GuestVcpuRefused as exc:
        result.rolled_back = list(exc.done)
        result.step("rollback", t, ok=False, error=str(exc))
        return False
    result.rolled_back = sorted(back)
    result.step("rollback", t, ok=True, onlined=sorted(back))
    return True


def set_vcpu_count(domain: DomainLike, agent: AgentLike, target: int, *, guest_only: bool = False,
                   config: bool = False, timeout: float = 60.0, libvirt_grace: float = 5.0) -> VcpuResult:
    """Bring the domain to ``target`` vCPUs (present in QEMU and online in the guest).

    Returns a ``done`` result or raises :class:`OperationError` (state, exit code,
    partial result attached); BadInputError before anything is touched.
    """
    deadline = time.monotonic() + timeout
    views = read_views(domain, agent)
    if views.guest is None:
        raise OperationError(f"cannot read the guest's vCPUs: {views.guest_error}",
                             state=State.UNCHANGED, cause=views.guest_exc, domain=domain.name)
    if guest_only:
        return _guest_only(domain, agent, views, target)
    maximum = views.libvirt.maximum
    if target < 1 or target > maximum:
        raise BadInputError(f"{option_ref('count')} must be between 1 and {maximum} (the domain's maximum "
                            f"vCPUs), got {target}",
                            field="count")
    if not views.libvirt.hotpluggable_ids:
        raise BadInputError("this domain has no hot-pluggable vCPUs (<vcpus> lists none with "
                            "hotpluggable='yes')", field="DOMAIN")
    if views.qemu is not None:
        # raises with the explanation, nothing touched: a stale unplug now, or recorded earlier
        check_no_residue(domain, views.libvirt, views.qemu)
    else:  # QEMU's view unreadable: at least honour a missed unplug recorded earlier
        check_not_marked(domain)
    current = views.libvirt.enabled_ids
    if target < len(current):
        return _shrink(domain, agent, views, target, config, deadline, libvirt_grace)
    return _grow(domain, agent, views, target, config, deadline, libvirt_grace)


def _guest_only(domain: DomainLike, agent: AgentLike, views: VcpuViews, target: int) -> VcpuResult:
    present = sorted(views.guest_present or set())
    online = views.guest_online or set()
    if target < 1 or target > len(present):
        raise BadInputError(f"{option_ref('count')} must be between 1 and {len(present)} (vCPUs the guest "
                            f"has), got {target}",
                            field="count")
    result = VcpuResult(domain=domain.name, action="none", target=target)
    t = time.monotonic()
    if target < len(online):
        cands = [i for i in sorted(online, reverse=True)
                 if i != 0 and (views.guest_entry(i) or {}).get("can-offline", True)]
        need = len(online) - target
        if len(cands) < need:
            raise BadInputError(f"only {len(cands)} vCPU(s) can be offlined in the guest", field="count")
        ids, want, result.action = cands[:need], False, "offline"
    elif target > len(online):
        ids = sorted(i for i in present if i not in online)[: target - len(online)]
        want, result.action = True, "online"
    else:
        ids, want = [], True
    if ids:
        try:
            result.changed_guest = set_guest_online(agent, ids, want)
            result.step(f"guest-{result.action}", t, vcpus=ids)
        except GuestVcpuRefused as exc:
            result.step(f"guest-{result.action}", t, ok=False, error=str(exc))
            ok = _rollback_guest(agent, exc.done, result) if not want else True
            partial = exc.done and not (ok and not want)
            result.state = State.PARTIAL if partial else State.ROLLED_BACK
            if not ok:
                result.state = State.INCONSISTENT
            result.message = str(exc)
    after = read_views(domain, agent)
    result.views = after.to_dict()
    if result.state == State.DONE and len(after.guest_online or set()) != target:
        result.state = State.INCONSISTENT
        result.message = f"guest reports {len(after.guest_online or set())} vCPUs online, expected {target}"
    return finish(result)


def _shrink(domain: DomainLike, agent: AgentLike, views: VcpuViews, target: int, config: bool,
            deadline: float, libvirt_grace: float) -> VcpuResult:
    from virt_qga.host.vcpus import set_vcpu

    current = views.libvirt.enabled_ids
    victims = choose_victims(views, len(current) - target)
    result = VcpuResult(domain=domain.name, action="shrink", target=target)
    # 1. the guest agrees first: offline the victims it still has online
    to_offline = [i for i in victims if i in (views.guest_online or set())]
    t = time.monotonic()
    try:
        result.changed_guest = set_guest_online(agent, to_offline, False) if to_offline else []
        result.step("guest-offline", t, vcpus=to_offline)
    except GuestVcpuRefused as exc:
        result.step("guest-offline", t, ok=False, error=str(exc))
        ok = _rollback_guest(agent, exc.done, result)
        result.state = State.ROLLED_BACK if ok else State.INCONSISTENT
        result.message = f"{exc}; nothing was unplugged" + ("" if ok else "; rollback incomplete")
        result.views = read_views(domain, agent).to_dict()
        return finish(result)
    # 2. the host unplugs, one vCPU at a time (each call waits for QEMU's event)
    attempted: list[int] = []
    unknown = False
    hard_error: str | None = None
    for vid in victims:
        t = time.monotonic()
        attempted.append(vid)
        try:
            set_vcpu(domain, vid, False)
            result.step("host-unplug", t, vcpu=vid, libvirt="ok")
        except VirtQgaError as exc:
            if outcome_unknown(str(exc)):
                unknown = True
                result.step("host-unplug", t, vcpu=vid, libvirt="unknown", error=str(exc))
                continue  # QEMU may well have done it: go on, reconciliation decides
            hard_error = str(exc)
            result.step("host-unplug", t, vcpu=vid, libvirt="error", error=hard_error)
            attempted.pop()
            break
    # 3. reconcile against what QEMU, the guest and libvirt really show
    expected = current - set(attempted)
    online_expected: set[int] | None = (views.guest_online or set()) - set(victims)
    t = time.monotonic()
    rec = reconcile(domain, agent, expected, online_expected if hard_error is None else None, deadline,
                    libvirt_grace=libvirt_grace)
    result.step("reconcile", t, state=rec.state, polls=rec.polls)
    if rec.views.qemu is not None and (stale := unplug_residue(rec.views.libvirt, rec.views.qemu)):
        mark_unsafe(domain, stale)  # survives a libvirtd restart that would hide the residue
    result.reconciliation = {"needed": unknown or rec.polls > 1, "libvirt_unknown": unknown,
                             "state": rec.state, "polls": rec.polls, "waited": round(rec.waited, 3),
                             "detail": rec.detail}
    qemu_now = rec.views.qemu_present or set()
    result.unplugged = sorted(set(victims) - qemu_now) if rec.views.qemu_present is not None else []
    # 4. roll back what the host did not take: victims still present and not in flight
    not_attempted = [i for i in victims if i not in attempted]
    if hard_error is not None:
        back = [i for i in result.changed_guest if i in not_attempted or i in qemu_now]
        ok = _rollback_guest(agent, back, result)
        if not result.unplugged:
            result.state = State.ROLLED_BACK if ok else State.INCONSISTENT
        else:
            result.state = State.PARTIAL if ok and rec.state == State.DONE else State.INCONSISTENT
        result.message = (f"host refused to unplug vCPU {not_attempted[0]}: {hard_error}; "
                          f"unplugged {result.unplugged or 'none'}, onlined again {result.rolled_back}")
    else:
        result.state = rec.state
        if rec.state != State.DONE:
            result.message = "; ".join(rec.detail)
            result.hint = rec.hint
    if config and result.state == State.DONE:
        from virt_qga.host.vcpus import set_vcpu_count_config

        t = time.monotonic()
        set_vcpu_count_config(domain, target)
        result.step("config", t, vcpus=target)
    result.views = rec.views.to_dict()
    return finish(result)


def _wait_guest_sees(agent: AgentLike, ids: set[int], deadline: float) -> set[int]:
    """Poll guest-get-vcpus until it lists ``ids`` (new CPUs take a moment to appear)."""
    seen: set[int] = set()
    while True:
        try:
            seen = {int(v["logical-id"]) for v in agent.get_vcpus()}
        except VirtQgaError as exc:
            if not is_transient(exc):
                raise
        if ids <= seen or time.monotonic() >= deadline:
            return ids & seen
        time.sleep(GUEST_POLL)


def _grow(domain: DomainLike, agent: AgentLike, views: VcpuViews, target: int, config: bool,
          deadline: float, libvirt_grace: float) -> VcpuResult:
    from virt_qga.host.vcpus import set_vcpu

    current = views.libvirt.enabled_ids
    result = VcpuResult(domain=domain.name, action="grow" if target > len(current) else "online",
                        target=target)
    new = choose_new(views, target - len(current)) if target > len(current) else []
    unknown = False
    hard_error: str | None = None
    attempted: list[int] = []
    for vid in new:
        t = time.monotonic()
        try:
            set_vcpu(domain, vid, True)
            attempted.append(vid)
            result.step("host-plug", t, vcpu=vid, libvirt="ok")
        except VirtQgaError as exc:
            if outcome_unknown(str(exc)):
                unknown = True
                attempted.append(vid)
                result.step("host-plug", t, vcpu=vid, libvirt="unknown", error=str(exc))
                continue
            hard_error = str(exc)
            result.step("host-plug", t, vcpu=vid, libvirt="error", error=hard_error)
            break
    expected = current | set(attempted)
    # the guest sees hot-plugged CPUs offline: online every present-but-offline one we need
    t = time.monotonic()
    seen = _wait_guest_sees(agent, expected, deadline) if expected else set()
    result.step("guest-detect", t, seen=sorted(seen))
    online_now = {int(v["logical-id"]) for v in agent.get_vcpus() if v.get("online")}
    want_online = sorted(i for i in seen if i not in online_now)[: max(0, target - len(online_now))]
    guest_failed: str | None = None
    if want_online:
        t = time.monotonic()
        try:
            result.changed_guest = set_guest_online(agent, want_online, True)
            result.step("guest-online", t, vcpus=want_online)
        except GuestVcpuRefused as exc:
            result.changed_guest = list(exc.done)
            guest_failed = str(exc)
            result.step("guest-online", t, ok=False, error=guest_failed)
    online_expected = online_now | set(result.changed_guest)
    t = time.monotonic()
    rec = reconcile(domain, agent, expected, online_expected, deadline, libvirt_grace=libvirt_grace)
    result.step("reconcile", t, state=rec.state, polls=rec.polls)
    if rec.views.qemu is not None and (stale := unplug_residue(rec.views.libvirt, rec.views.qemu)):
        mark_unsafe(domain, stale)  # survives a libvirtd restart that would hide the residue
    result.reconciliation = {"needed": unknown or rec.polls > 1, "libvirt_unknown": unknown,
                             "state": rec.state, "polls": rec.polls, "waited": round(rec.waited, 3),
                             "detail": rec.detail}
    qemu_now = rec.views.qemu_present or set()
    result.plugged = sorted(set(new) & qemu_now)
    result.views = rec.views.to_dict()
    if hard_error is not None:
        result.state = State.ROLLED_BACK if not result.plugged and rec.state == State.DONE else State.PARTIAL
        result.message = f"host refused to plug vCPU(s): {hard_error}; plugged {result.plugged or 'none'}"
    elif guest_failed is not None:
        result.state = State.PARTIAL
        result.message = f"{guest_failed}; the vCPU is plugged but offline in the guest"
        result.hint = f"virt-qga vcpus set {domain.name} {target} --guest-only"
    else:
        result.state = rec.state
        if rec.state != State.DONE:
            result.message = "; ".join(rec.detail)
            result.hint = rec.hint
        elif len(rec.views.guest_online or set()) != target:
            result.state = State.INCONSISTENT
            n_online = len(rec.views.guest_online or set())
            result.message = f"guest has {n_online} vCPUs online, expected {target}"
    if config and result.state == State.DONE:
        from virt_qga.host.vcpus import set_vcpu_count_config

        t = time.monotonic()
        set_vcpu_count_config(domain, target)
        result.step("config", t, vcpus=target)
    return finish(result)
