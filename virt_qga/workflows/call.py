"""One schema command by name, checked before it is sent (``virt_qga_call``).

:func:`plan_call` resolves the name, validates the arguments against the spec and
says whether the command is read-only (:data:`virt_qga.spec.READ_ONLY_COMMANDS`), so a
dry run knows whether it may send it. Commands without a reply on success are refused:
the power workflow confirms them, a bare call could not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from virt_qga.errors import BadInputError

__all__ = ["CallPlan", "plan_call"]


@dataclass(frozen=True)
class CallPlan:
    command: str
    args: dict[str, Any]
    read_only: bool


def plan_call(command: str, args: dict[str, Any] | None) -> CallPlan:
    """The command's wire name, its validated arguments and whether it is read-only."""
    from virt_qga.spec import command_name, get_spec, is_read_only

    spec = get_spec()
    name = command_name(command)
    cmd = spec.command(name)
    if not cmd.success_response:
        raise BadInputError(f"{name} sends no reply on success; use the power workflow "
                            "(virt_qga_power, virt-qga shutdown/suspend) instead", field="command")
    clean = spec.validate_args(name, dict(args or {}))
    return CallPlan(name, clean, is_read_only(name))
