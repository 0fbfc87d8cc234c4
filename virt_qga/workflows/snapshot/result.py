"""What a snapshot achieved: :class:`SnapshotResult` and the consistency decisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from virt_qga.exitcodes import ExitCode

__all__ = ["SnapshotResult", "achieved_consistency", "decide_consistency", "ms"]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for reports."""
    return round(seconds * 1000.0, 3)


@dataclass
class SnapshotResult:
    domain: str
    uri: str | None
    mode: str
    name: str
    consistency: str = "crash"             # application, filesystem or crash
    consistency_reason: str | None = None
    frozen: int | None = None              # filesystems frozen (agent's count)
    thawed: int | None = None              # filesystems thawed (agent's count)
    frozen_window_ms: float | None = None  # freeze reply -> thaw reply, host clock
    timings_ms: dict[str, float] = field(default_factory=dict)
    overlays: list[dict[str, str]] = field(default_factory=list)
    metadata: bool = False
    hooks: dict[str, Any] = field(default_factory=dict)
    command: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    guard: dict[str, Any] = field(default_factory=dict)
    exit_code: int = int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True, "domain": self.domain, "uri": self.uri, "mode": self.mode,
            "snapshot": self.name, "consistency": self.consistency,
            "consistency_reason": self.consistency_reason, "frozen": self.frozen,
            "thawed": self.thawed, "frozen_window_ms": self.frozen_window_ms,
            "timings_ms": self.timings_ms, "overlays": self.overlays, "metadata": self.metadata,
            "hooks": self.hooks, "command": self.command, "guard": self.guard,
            "warnings": self.warnings, "exit_code": self.exit_code,
        }


def decide_consistency(policy: str, *, can_freeze: bool, reason: str | None) -> tuple[bool, str | None]:
    """Policy decision before the freeze: (freeze?, why not).

    ``required`` and no freeze possible -> raise (the caller raises the original error);
    returns ``(False, reason)`` under ``preferred``; ``off`` never freezes.
    """
    if policy == "off":
        return False, "quiesce off (requested)"
    if can_freeze:
        return True, None
    if policy == "preferred":
        return False, reason or "guest agent unavailable"
    raise AssertionError("required policy without a freeze must raise before this point")


def achieved_consistency(froze: bool, hooks_ran: bool, guard_fired_early: bool) -> str:
    """``crash`` without a (timely) freeze, ``application`` with hooks, else ``filesystem``."""
    if not froze or guard_fired_early:
        return "crash"
    return "application" if hooks_ran else "filesystem"
