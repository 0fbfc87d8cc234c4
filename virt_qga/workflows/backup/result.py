"""The report of one domain's backup (``BackupResult``); a run over many domains folds
their exit codes with :func:`virt_qga.workflows.fleet.aggregate_exit`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from virt_qga.exitcodes import ExitCode
from virt_qga.outcome import State

__all__ = ["BackupResult"]


@dataclass
class BackupResult:
    """One domain's backup; ``to_dict`` is the JSON the CLI prints (one per domain)."""

    domain: str
    state: str = State.FAILED              # done | failed | inconsistent | maybe-frozen | ...
    method: str | None = None              # backup-api | snapshot | offline-copy
    method_reason: str | None = None
    level: str | None = None               # full | inc
    level_reason: str | None = None
    chain: str | None = None
    name: str | None = None
    chain_length: int = 0                  # backups in the chain, this one included
    directory: str | None = None
    consistency: str | None = None         # application | filesystem | crash | offline
    consistency_reason: str | None = None
    frozen_window_ms: float | None = None
    bytes_written: int = 0
    disks: list[dict[str, Any]] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    committed: list[dict[str, Any]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    #: What retention kept (backup -> rule) and removed (:meth:`.retention.Plan.to_dict`).
    retention: dict[str, Any] | None = None
    #: Older virt-qga checkpoints deleted after this backup (no chain needs them).
    dropped_checkpoints: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    finished_at: float | None = None       # UNIX time of a successful backup
    error: str | None = None
    undo: str | None = None
    warnings: list[str] = field(default_factory=list)
    exit_code: int = int(ExitCode.FAILED)

    @property
    def ok(self) -> bool:
        """A backup was made (perhaps only crash-consistent)."""
        return self.exit_code in (ExitCode.OK, ExitCode.CRASH_CONSISTENT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "ok": self.ok, "state": str(self.state), "method": self.method,
            "method_reason": self.method_reason, "level": self.level, "level_reason": self.level_reason,
            "chain": self.chain, "name": self.name, "chain_length": self.chain_length,
            "directory": self.directory, "consistency": self.consistency,
            "consistency_reason": self.consistency_reason, "frozen_window_ms": self.frozen_window_ms,
            "bytes_written": self.bytes_written, "disks": self.disks, "committed": self.committed,
            "pruned": self.pruned, "retention": self.retention,
            "dropped_checkpoints": self.dropped_checkpoints,
            "timings_s": self.timings_s, "finished_at": self.finished_at,
            "error": self.error, "undo": self.undo, "warnings": self.warnings,
            "exit_code": self.exit_code, "snapshot": self.snapshot,
        }
