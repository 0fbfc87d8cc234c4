"""Which vCPUs to remove (never 0, never one that cannot go) or to add."""

from __future__ import annotations

from virt_qga.errors import BadInputError
from virt_qga.workflows.vcpus.views import VcpuViews


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
                            field="count")
    return candidates[:count]


def choose_new(views: VcpuViews, count: int) -> list[int]:
    """The ``count`` disabled hot-pluggable vCPUs to plug, lowest ids first."""
    enabled = views.libvirt.enabled_ids
    free = sorted(i for i in views.libvirt.hotpluggable_ids if i not in enabled)
    if len(free) < count:
        raise BadInputError(f"only {len(free)} more vCPU(s) can be hot-plugged", field="count")
    return free[:count]
