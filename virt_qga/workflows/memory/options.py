"""The memory workflows' user-facing options, declared once (see :mod:`virt_qga.options`):
the overall deadline, which the CLI (``--timeout`` of ``memory plug``/``unplug``) and the
Ansible module (``wait_timeout``, written into it by ``tools/gen_ansible.py``) derive from
here."""

from __future__ import annotations

from dataclasses import dataclass

from virt_qga.options import declare, option

__all__ = ["WAIT_FIELDS", "MemoryOptions"]

#: The fields the CLI and the Ansible module take from this declaration.
WAIT_FIELDS = ("wait_timeout",)


@declare
@dataclass
class MemoryOptions:
    """How long a memory change may take."""

    wait_timeout: float = option(120.0, flag="--timeout", min=1, unit="seconds", help=(
        "Deadline for the whole change (every DIMM plugged or removed, the guest's blocks "
        "included), in seconds."))
