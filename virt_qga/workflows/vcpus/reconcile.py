"""Reconciliation: poll the three views until they agree or the deadline passes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from virt_qga.host.vcpus import DomainLike
from virt_qga.outcome import State
from virt_qga.workflows.vcpus.views import AgentLike, VcpuViews, read_views


@dataclass
class Reconciled:
    state: State                  # done | pending | inconsistent
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
            return Reconciled(State.DONE, views, time.monotonic() - start, polls)
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
        return Reconciled(State.PENDING, views, time.monotonic() - start, polls, diff,
                          f"QEMU still has vCPU(s) {extra}: the guest has not completed the unplug; "
                          f"check later with `virt-qga vcpus {name}`")
    if q is not None and q < expected:
        missing = sorted(expected - q)
        return Reconciled(State.PENDING, views, time.monotonic() - start, polls, diff,
                          f"QEMU has not plugged vCPU(s) {missing} yet; check with `virt-qga vcpus {name}`")
    if q == expected and (g is None or g == expected) and views.libvirt.enabled_ids != expected:
        return Reconciled(State.INCONSISTENT, views, time.monotonic() - start, polls, diff,
                          "QEMU and the guest agree but libvirt's live XML is stale (it missed the "
                          "unplug completion: QEMU 7.2 reports DEVICE_DELETED for vcpuN/lapic). Do not "
                          "hot-plug into this QEMU process (QEMU 7.2 crashed on it in the lab, also after a "
                          "libvirtd restart had corrected libvirt's XML); restart the domain, then check "
                          f"with `virt-qga vcpus {name}`")
    return Reconciled(State.INCONSISTENT, views, time.monotonic() - start, polls, diff,
                      f"inspect with `virt-qga vcpus {name}`")
