"""vCPU hot-plug and hot-unplug with the guest's consent, retries and reconciliation.

The algorithm (see docs/hotplug.md for the why):

* **shrink to N**: pick victims (never vCPU 0, never one the guest cannot offline,
  never one libvirt cannot unplug; highest ids first), offline them in the guest
  (``guest-set-vcpus``), unplug each from the host (``virDomainSetVcpu``), then
  *reconcile*: poll guest, QEMU and libvirt until they agree or the deadline passes.
  A failure before the host acted puts the vCPUs back online (rollback).
* **grow to N**: plug on the host, wait for the guest to see the new vCPUs (they
  arrive offline), online them through the agent, reconcile.
* **guest-only**: change online state inside the guest, nothing on the host.

No step is trusted on its return value alone: the final state comes from reading
the three views. States: ``done``, ``pending`` (an unplug request is still in
flight in QEMU), ``rolled-back``, ``partial``, ``inconsistent``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from virt_qga.errors import (
    BadInputError,
    GuestError,
    OperationError,
    VirtQgaError,
    is_transient,
)
from virt_qga.exitcodes import ExitCode
from virt_qga.host.vcpus import (
    DomainLike,
    LibvirtVcpus,
    QemuCpu,
    check_no_residue,
    check_not_marked,
    mark_unsafe,
    outcome_unknown,
    parse_libvirt_vcpus,
    parse_qemu_cpus,
    unplug_residue,
)
from virt_qga.retry import when

log = logging.getLogger(__name__)

#: Guest error texts (strerror) that mean "try again shortly".
TRANSIENT_GUEST_TEXTS = ("device or resource busy", "resource temporarily unavailable",
                         "try again")


#: Poll interval while waiting for the guest to see a change (agent calls take ~1 ms).
GUEST_POLL = 0.05


class AgentLike(Protocol):
    def get_vcpus(self) -> Any: ...
    def set_vcpus(self, vcpus: Any) -> int: ...


# -- the three views ------------------------------------------------------------------


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
    if agent is not None:
        try:
            guest = [dict(v) for v in agent.get_vcpus()]
        except VirtQgaError as exc:
            guest_error = str(exc)
    return VcpuViews(libvirt=libvirt, qemu=qemu, guest=guest, qemu_error=qemu_error,
                     guest_error=guest_error)


# -- guest side: guest-set-vcpus with its partial-success reply -------------------------


class GuestVcpuRefused(VirtQgaError):
    """The guest would not change one vCPU; ``done`` lists the ones changed before it."""

    def __init__(self, message: str, *, done: list[int], failed: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.done = done
        self.failed = failed


def guest_error_is_transient(exc: BaseException) -> bool:
    """Agent timeouts/disconnects, and guest errors whose text says EBUSY/EAGAIN."""
    if is_transient(exc):
        return True
    if isinstance(exc, GuestError):
        low = exc.message.lower()
        return any(t in low for t in TRANSIENT_GUEST_TEXTS)
    return False


def set_guest_online(agent: AgentLike, ids: list[int], online: bool, *, attempts: int = 4,
                     seconds: float = 20.0) -> list[int]:
    """Online/offline ``ids`` in the guest; returns the ids it processed (all of them).

    ``guest-set-vcpus`` stops at the first entry it cannot apply and answers with the
    count processed so far; it raises only when the *first* entry fails. So the rest
    is re-sent until everything is processed or the guest names the failing entry.
    Transient failures are retried (bounded); others raise :class:`GuestVcpuRefused`.
    """
    done: list[int] = []
    remaining = list(ids)
    policy = when(guest_error_is_transient, attempts=attempts, seconds=seconds)
    while remaining:
        payload = [{"logical-id": i, "online": online} for i in remaining]
        try:
            count = int(policy(agent.set_vcpus, payload))
        except VirtQgaError as exc:
            verb = "online" if online else "offline"
            raise GuestVcpuRefused(f"guest refused to {verb} vCPU {remaining[0]}: {exc}",
                                   done=done, failed=remaining[0]) from exc
        if count <= 0 or count > len(remaining):
            raise GuestVcpuRefused(f"guest-set-vcpus answered {count} for {len(remaining)} entries",
                                   done=done, failed=remaining[0])
        done.extend(remaining[:count])
        remaining = remaining[count:]
    return done


# -- planning -------------------------------------------------------------------------


def choose_victims(views: VcpuViews, count: int) -> list[int]:
    """The ``count`` vCPUs to remove: highest ids first, never 0, only ones the guest can
    offline (or already has offline) and libvirt can unplug. BadInputError if too few."""
    enabled = views.libvirt.enabled_ids
    hot = views.libvirt.hotpluggable_ids if views.libvirt.vcpus else set(range(1, views.libvirt.maximum))
    candidates: list[int] = []
    for i in sorted(enabled, reverse=True):
        if i == 0 or i not in hot:
            continue
        g = views.guest_entry(i)
        if g is not None and g.get("online") and g.get("can-offline") is False:
            continue
        candidates.append(i)
    if len(candidates) < count:
        raise BadInputError(f"only {len(candidates)} vCPU(s) can be removed "
                            f"({', '.join(map(str, sorted(candidates))) or 'none'}): vCPU 0, "
                            "non-hotpluggable ones and ones the guest cannot offline are kept",
                            field="N")
    return candidates[:count]


def choose_new(views: VcpuViews, count: int) -> list[int]:
    """The ``count`` disabled hot-pluggable vCPUs to plug, lowest ids first."""
    enabled = views.libvirt.enabled_ids
    free = sorted(i for i in views.libvirt.hotpluggable_ids if i not in enabled)
    if len(free) < count:
        raise BadInputError(f"only {len(free)} more vCPU(s) can be hot-plugged", field="N")
    return free[:count]


# -- reconciliation -------------------------------------------------------------------


@dataclass
class Reconciled:
    state: str                    # done | pending | inconsistent
    views: VcpuViews
    waited: float
    polls: int
    detail: list[str] = field(default_factory=list)
    hint: str | None = None


def agree(views: VcpuViews, expected: set[int], online: set[int] | None) -> list[str]:
    """What still differs from the expected outcome (empty list: all three agree)."""
    diff: list[str] = []
    if views.libvirt.enabled_ids != expected:
        diff.append(f"libvirt enabled {sorted(views.libvirt.enabled_ids)} (expected {sorted(expected)})")
    if views.libvirt.current != len(expected):
        diff.append(f"libvirt current={views.libvirt.current} (expected {len(expected)})")
    if views.qemu_present is None:
        diff.append(f"QEMU view unreadable: {views.qemu_error}")
    elif views.qemu_present != expected:
        diff.append(f"QEMU has {sorted(views.qemu_present)} (expected {sorted(expected)})")
    if views.guest_present is None:
        diff.append(f"guest view unreadable: {views.guest_error}")
    else:
        if views.guest_present != expected:
            diff.append(f"guest lists {sorted(views.guest_present)} (expected {sorted(expected)})")
        if online is not None and views.guest_online != online:
            diff.append(f"guest online {sorted(views.guest_online or [])} (expected {sorted(online)})")
    return diff


def reconcile(domain: DomainLike, agent: AgentLike | None, expected: set[int], online: set[int] | None,
              deadline: float, poll: float = 0.5, libvirt_grace: float = 5.0) -> Reconciled:
    """Poll the three views until they agree with ``expected`` or the deadline passes.

    Once QEMU and the guest agree, libvirt gets ``libvirt_grace`` more seconds to catch
    up (it never does on QEMU 7.2, see :func:`virt_qga.host.vcpus.unplug_residue`).

    At the deadline: QEMU still holding a vCPU it should not -> ``pending`` (the
    guest has not acted on the eject request); QEMU and guest right but libvirt
    wrong -> ``inconsistent`` (libvirt's live XML is stale, the lab-notes case);
    anything else -> ``inconsistent``.
    """
    start = time.monotonic()
    polls = 0
    truth_since: float | None = None
    while True:
        views = read_views(domain, agent)
        polls += 1
        diff = agree(views, expected, online)
        if not diff:
            return Reconciled("done", views, time.monotonic() - start, polls)
        now = time.monotonic()
        truth_ok = views.qemu_present == expected and views.guest_present == expected
        truth_since = (truth_since or now) if truth_ok else None
        if now >= deadline or (truth_since is not None and now - truth_since >= libvirt_grace):
            break
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
    q = views.qemu_present
    g = views.guest_present
    name = domain.name
    if q is not None and q - expected:
        extra = sorted(q - expected)
        return Reconciled("pending", views, time.monotonic() - start, polls, diff,
                          f"QEMU still has vCPU(s) {extra}: the guest has not completed the unplug; "
                          f"check later with `virt-qga vcpus {name}`")
    if q is not None and q < expected:
        missing = sorted(expected - q)
        return Reconciled("pending", views, time.monotonic() - start, polls, diff,
                          f"QEMU has not plugged vCPU(s) {missing} yet; check with `virt-qga vcpus {name}`")
    if q == expected and (g is None or g == expected) and views.libvirt.enabled_ids != expected:
        return Reconciled("inconsistent", views, time.monotonic() - start, polls, diff,
                          "QEMU and the guest agree but libvirt's live XML is stale (it missed the "
                          "unplug completion: QEMU 7.2 reports DEVICE_DELETED for vcpuN/lapic). Do not "
                          "hot-plug into this QEMU process (QEMU 7.2 crashed on it in the lab, also after a "
                          "libvirtd restart had corrected libvirt's XML); restart the domain, then check "
                          f"with `virt-qga vcpus {name}`")
    return Reconciled("inconsistent", views, time.monotonic() - start, polls, diff,
                      f"inspect with `virt-qga vcpus {name}`")


# -- the workflows --------------------------------------------------------------------


@dataclass
class VcpuResult:
    domain: str
    action: str                    # shrink | grow | online | offline | none
    target: int
    state: str = "done"
    changed_guest: list[int] = field(default_factory=list)
    plugged: list[int] = field(default_factory=list)
    unplugged: list[int] = field(default_factory=list)
    rolled_back: list[int] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    reconciliation: dict[str, Any] | None = None
    views: dict[str, Any] | None = None
    message: str = ""
    hint: str | None = None

    def step(self, name: str, started: float, **info: Any) -> None:
        self.steps.append({"step": name, "seconds": round(time.monotonic() - started, 3), **info})

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


EXIT_BY_STATE = {
    "done": ExitCode.OK,
    "pending": ExitCode.PARTIAL,
    "partial": ExitCode.PARTIAL,
    "rolled-back": ExitCode.FAILED,
    "inconsistent": ExitCode.INCONSISTENT,
}


def finish(result: VcpuResult) -> VcpuResult:
    """Return a clean result, or raise OperationError carrying it."""
    if result.state == "done":
        return result
    raise OperationError(result.message or f"vCPU change ended {result.state}",
                         exit_code=EXIT_BY_STATE.get(result.state, ExitCode.FAILED), state=result.state,
                         undo=result.hint, result=result.to_dict(), domain=result.domain)


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
                             exit_code=ExitCode.AGENT_UNAVAILABLE, state="unchanged", domain=domain.name)
    if guest_only:
        return _guest_only(domain, agent, views, target)
    maximum = views.libvirt.maximum
    if target < 1 or target > maximum:
        raise BadInputError(f"N must be between 1 and {maximum} (the domain's maximum vCPUs), got {target}",
                            field="N")
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
        raise BadInputError(f"N must be between 1 and {len(present)} (vCPUs the guest has), got {target}",
                            field="N")
    result = VcpuResult(domain=domain.name, action="none", target=target)
    t = time.monotonic()
    if target < len(online):
        cands = [i for i in sorted(online, reverse=True)
                 if i != 0 and (views.guest_entry(i) or {}).get("can-offline", True)]
        need = len(online) - target
        if len(cands) < need:
            raise BadInputError(f"only {len(cands)} vCPU(s) can be offlined in the guest", field="N")
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
            result.state = "rolled-back" if ok and not want else ("partial" if exc.done else "rolled-back")
            if not ok:
                result.state = "inconsistent"
            result.message = str(exc)
    after = read_views(domain, agent)
    result.views = after.to_dict()
    if result.state == "done" and len(after.guest_online or set()) != target:
        result.state = "inconsistent"
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
        result.state = "rolled-back" if ok else "inconsistent"
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
            result.state = "rolled-back" if ok else "inconsistent"
        else:
            result.state = "partial" if ok and rec.state == "done" else "inconsistent"
        result.message = (f"host refused to unplug vCPU {not_attempted[0]}: {hard_error}; "
                          f"unplugged {result.unplugged or 'none'}, onlined again {result.rolled_back}")
    else:
        result.state = rec.state
        if rec.state != "done":
            result.message = "; ".join(rec.detail)
            result.hint = rec.hint
    if config and result.state == "done":
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
        result.state = "rolled-back" if not result.plugged and rec.state == "done" else "partial"
        result.message = f"host refused to plug vCPU(s): {hard_error}; plugged {result.plugged or 'none'}"
    elif guest_failed is not None:
        result.state = "partial"
        result.message = f"{guest_failed}; the vCPU is plugged but offline in the guest"
        result.hint = f"virt-qga vcpus set {domain.name} {target} --guest-only"
    else:
        result.state = rec.state
        if rec.state != "done":
            result.message = "; ".join(rec.detail)
            result.hint = rec.hint
        elif len(rec.views.guest_online or set()) != target:
            result.state = "inconsistent"
            n_online = len(rec.views.guest_online or set())
            result.message = f"guest has {n_online} vCPUs online, expected {target}"
    if config and result.state == "done":
        from virt_qga.host.vcpus import set_vcpu_count_config

        t = time.monotonic()
        set_vcpu_count_config(domain, target)
        result.step("config", t, vcpus=target)
    return finish(result)
