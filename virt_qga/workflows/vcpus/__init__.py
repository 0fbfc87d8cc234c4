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

The package: :mod:`.views` (guest, QEMU and libvirt side by side), :mod:`.guest`
(``guest-set-vcpus``), :mod:`.plan` (which vCPUs), :mod:`.reconcile` (waiting for the
views to agree) and :mod:`.change` (the workflows and their result).
"""

from __future__ import annotations

from virt_qga.workflows.vcpus.change import (
    VcpuResult,
    set_vcpu_count,
)
from virt_qga.workflows.vcpus.config import (
    config_vcpu_count,
    set_config_vcpu_count,
)
from virt_qga.workflows.vcpus.guest import (
    GuestVcpuRefused,
    guest_error_is_transient,
    set_guest_online,
)
from virt_qga.workflows.vcpus.options import WAIT_FIELDS, VcpuOptions
from virt_qga.workflows.vcpus.plan import (
    choose_new,
    choose_victims,
)
from virt_qga.workflows.vcpus.reconcile import (
    Reconciled,
    agree,
    reconcile,
)
from virt_qga.workflows.vcpus.views import (
    GUEST_POLL,
    TRANSIENT_GUEST_TEXTS,
    AgentLike,
    VcpuRow,
    VcpuViews,
    log,
    read_views,
)

__all__ = [
    "GUEST_POLL",
    "TRANSIENT_GUEST_TEXTS",
    "WAIT_FIELDS",
    "AgentLike",
    "GuestVcpuRefused",
    "Reconciled",
    "VcpuOptions",
    "VcpuResult",
    "VcpuRow",
    "VcpuViews",
    "agree",
    "choose_new",
    "choose_victims",
    "config_vcpu_count",
    "guest_error_is_transient",
    "log",
    "read_views",
    "reconcile",
    "set_config_vcpu_count",
    "set_guest_online",
    "set_vcpu_count",
]
