"""The vCPU workflow's user-facing option names, declared once (see :mod:`virt_qga.options`)
so that its messages name the option the way each front end spells it: ``N`` on the
``virt-qga vcpus set`` command line, ``count`` in the Ansible module."""

from __future__ import annotations

from dataclasses import dataclass

from virt_qga.options import declare, option

__all__ = ["VcpuOptions"]


@declare
@dataclass
class VcpuOptions:
    """What ``set_vcpu_count`` is asked for (only the spelling is used so far)."""

    count: int = option(1, flag="N", min=1, help="The number of vCPUs wanted (online in the guest).")
