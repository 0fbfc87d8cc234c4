"""The vCPU workflow's user-facing options, declared once (see :mod:`virt_qga.options`):
``count`` so that messages name it the way each front end spells it (``N`` on the
``virt-qga vcpus set`` command line, ``count`` in the Ansible module), and the change's
overall deadline, which the CLI (``--timeout``) and the Ansible module (``wait_timeout``,
written into it by ``tools/gen_ansible.py``) derive from here."""

from __future__ import annotations

from dataclasses import dataclass

from virt_qga.options import declare, option

__all__ = ["WAIT_FIELDS", "VcpuOptions"]

#: The fields the CLI and the Ansible module take from this declaration.
WAIT_FIELDS = ("wait_timeout",)


@declare
@dataclass
class VcpuOptions:
    """What ``set_vcpu_count`` is asked for (``count`` is a CLI argument: only its spelling
    is taken from here)."""

    count: int = option(1, flag="N", min=1, help="The number of vCPUs wanted (online in the guest).")
    wait_timeout: float = option(60.0, flag="--timeout", min=1, unit="seconds", help=(
        "Deadline for the whole change, reconciliation included, in seconds."))
