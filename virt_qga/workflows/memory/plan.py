"""Memory planning: which DIMMs to remove for a size, and how to reach a DIMM total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from virt_qga.errors import BadInputError
from virt_qga.host.memory import (
    MemoryDevice,
    MemoryLayout,
    human_size,
)
from virt_qga.workflows.memory.view import MemoryView


def choose_dimms(layout: MemoryLayout, size: int) -> list[MemoryDevice]:
    """DIMMs that add up to exactly ``size``, highest base address first."""
    dimms = sorted(layout.dimms, key=lambda d: d.base or 0, reverse=True)
    if not dimms:
        raise BadInputError("this domain has no hot-plugged DIMMs to remove", field="SIZE")
    chosen: list[MemoryDevice] = []
    total = 0
    for d in dimms:
        if total + d.size <= size:
            chosen.append(d)
            total += d.size
        if total == size:
            return chosen
    sizes = ", ".join(f"{d.alias}={human_size(d.size)}" for d in dimms)
    raise BadInputError(f"{human_size(size)} is not a sum of whole DIMMs taken from the highest "
                        f"address down ({sizes})", field="SIZE")


def check_block_multiple(size: int, block_size: int) -> None:
    if size % block_size:
        raise BadInputError(f"SIZE {human_size(size)} is not a multiple of the guest's memory block "
                            f"size ({human_size(block_size)})", field="SIZE")


@dataclass(frozen=True)
class DimmPlan:
    """How to bring the hot-plugged DIMM memory to a total: DIMM sizes to plug, or the
    aliases of DIMMs to unplug (highest address first); neither when already there."""

    current: int
    target: int
    plug: tuple[int, ...] = ()
    unplug: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.plug or self.unplug)

    def to_dict(self) -> dict[str, Any]:
        """Sizes in MiB, for people and playbooks."""
        if self.plug:
            return {"plug": [s // MIB for s in self.plug]}
        if self.unplug:
            return {"unplug": list(self.unplug)}
        return {}


MIB = 1024 * 1024


def plan_dimm_total(view: MemoryView, target: int, step: int = 0) -> DimmPlan:
    """Plan a change of the DIMM total to ``target`` bytes, adding DIMMs of ``step``
    bytes (default: one DIMM of the whole difference) or removing whole DIMMs.

    An idempotent front end (the Ansible module) asks this and does nothing when the
    plan has no changes.
    """
    if target < 0:
        raise BadInputError("the DIMM total must be 0 or more", field="dimm_mb")
    if step < 0:
        raise BadInputError("the DIMM size must be positive", field="dimm_size_mb")
    current = sum(d.size for d in view.layout.dimms)
    if target == current:
        return DimmPlan(current, target)
    if target > current:
        delta = target - current
        size = step or delta
        if delta % size:
            raise BadInputError(f"{delta // MIB} MiB to add is not a multiple of the DIMM size "
                                f"({size // MIB} MiB)", field="dimm_size_mb")
        if size % view.block_size:
            raise BadInputError(f"DIMM size {size // MIB} MiB is not a multiple of the guest's memory "
                                f"block size ({view.block_size // MIB} MiB)", field="dimm_size_mb")
        return DimmPlan(current, target, plug=(size,) * (delta // size))
    return DimmPlan(current, target,
                    unplug=tuple(d.alias or "" for d in choose_dimms(view.layout, current - target)))
