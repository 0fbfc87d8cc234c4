"""The result of a memory change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from virt_qga.workflows.results import ChangeResult


@dataclass(kw_only=True)
class MemoryResult(ChangeResult):
    """A memory change (plug, unplug, grow, shrink) of ``size`` bytes."""

    what: ClassVar[str] = "memory change"

    size: int = 0
    devices: list[dict[str, Any]] = field(default_factory=list)
    view: dict[str, Any] | None = None


def online_hint(domain: str, ids: list[int]) -> str:
    blks = ",".join(f'{{"phys-index":{i},"online":true}}' for i in ids)
    return f"virt-qga call {domain} guest-set-memory-blocks --args '{{\"mem-blks\":[{blks}]}}'"
