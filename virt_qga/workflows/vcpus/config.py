"""The persistent definition's vCPU count, read and set on its own.

``set_vcpu_count(..., config=True)`` stores the new count once the live change is done.
When the live count is already right but the definition is not (an earlier change made
without ``config``), there is no live change to make and only the definition needs the
count: callers that promise idempotence (the Ansible module) compare and fix it here.
"""

from __future__ import annotations

from virt_qga.host.vcpus import DomainLike, set_vcpu_count_config


def config_vcpu_count(domain: DomainLike) -> int:
    """vCPUs the persistent definition starts the domain with (``<vcpu current=...>``,
    else the maximum)."""
    root = domain.xml(inactive=True)
    vcpu = root.find("vcpu")
    if vcpu is None or not (vcpu.text or "").strip():
        return 1
    return int(vcpu.get("current") or vcpu.text or "1")


def set_config_vcpu_count(domain: DomainLike, count: int) -> None:
    """Store ``count`` in the persistent definition only (the running domain is untouched)."""
    set_vcpu_count_config(domain, count)
