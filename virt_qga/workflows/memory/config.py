"""The persistent definition's DIMMs, brought in line with the running domain's.

``plug``/``unplug`` with ``config=True`` change the definition along with the live
domain. When the live DIMMs are already right but the definition is not (an earlier
change made without ``config``), there is nothing to hot-plug and only the definition
needs fixing: :func:`config_dimm_changes` says what differs (by DIMM size) and
:func:`sync_config_dimms` adds or removes DIMMs in the definition only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from virt_qga.host.memory import MemoryDevice, dimm_xml, read_layout
from virt_qga.host.vcpus import DomainLike


@dataclass
class ConfigDimmChanges:
    """DIMM sizes (bytes) to add to / remove from the persistent definition."""

    add: list[int] = field(default_factory=list)
    remove: list[MemoryDevice] = field(default_factory=list)
    config_total: int = 0

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)

    def to_dict(self) -> dict[str, Any]:
        return {"add": list(self.add), "remove": [d.size for d in self.remove],
                "config_total": self.config_total}


def config_dimm_changes(domain: DomainLike) -> ConfigDimmChanges:
    """What the definition lacks or has too much, compared with the live DIMMs (by size)."""
    live = Counter(d.size for d in read_layout(domain).dimms)
    config = read_layout(domain, inactive=True).dimms
    missing = Counter(live)
    remove: list[MemoryDevice] = []
    for d in config:
        if missing[d.size] > 0:
            missing[d.size] -= 1
        else:
            remove.append(d)
    add = sorted(size for size, n in missing.items() for _ in range(n))
    return ConfigDimmChanges(add=add, remove=remove, config_total=sum(d.size for d in config))


def sync_config_dimms(domain: DomainLike, changes: ConfigDimmChanges, node: int = 0) -> None:
    """Apply ``changes`` to the persistent definition only."""
    from virt_qga.connection import import_libvirt

    flag = int(import_libvirt().VIR_DOMAIN_AFFECT_CONFIG)
    for d in changes.remove:
        domain.call("detachDeviceFlags", d.xml, flag)
    for size in changes.add:
        domain.call("attachDeviceFlags", dimm_xml(size, node), flag)
