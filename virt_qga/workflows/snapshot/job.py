"""One snapshot job's state, shared by the phases (checks, plan, hooks, frozen
section, rollback) that :mod:`.run` drives. Attributes record what has been done, for
the cleanup and for the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from virt_qga.workflows.signals import Interrupts
from virt_qga.workflows.snapshot.options import SnapshotOptions
from virt_qga.workflows.snapshot.result import SnapshotResult, ms
from virt_qga.workflows.target import Target

if TYPE_CHECKING:
    from virt_qga.agent import GuestAgent
    from virt_qga.host import Domain
    from virt_qga.host.snapshots import DiskInfo
    from virt_qga.workflows.journal import Journal
    from virt_qga.workflows.thaw_guard import ThawGuard

__all__ = ["Job"]


class Job:
    """The state of one snapshot of one target."""

    def __init__(self, domain: str, uri: str | None, opts: SnapshotOptions) -> None:
        from virt_qga.host.snapshots import check_snapshot_name, default_snapshot_name

        self.target = Target.resolve(domain, uri=uri, socket=opts.socket)
        self.label = domain
        self.uri = uri
        self.opts = opts
        self.name = check_snapshot_name(opts.name) if opts.name else default_snapshot_name()
        self.host: Domain | None = None
        self.agent: GuestAgent | None = None
        self.result = SnapshotResult(domain=domain, uri=uri, mode=opts.mode, name=self.name,
                                     metadata=opts.metadata or opts.mode == "internal")
        #: (disk, overlay path or, in command mode, the disk's source) per disk covered.
        self.plan: list[tuple[DiskInfo, str]] = []
        self.all_disks: list[DiskInfo] = []
        self.xml = ""
        self.flags = 0
        self.precreate = False
        self.freeze = False
        self.freeze_sent = False
        self.frozen_at: float | None = None
        self.armed_at: float | None = None
        self.snapshot_done_at: float | None = None
        self.snapshot_made = False
        self.thaw_confirmed = True
        self.thaw_error = ""
        self.hooks_ran = False
        self.guard: ThawGuard | None = None
        self.journal: Journal | None = None
        self.signals = Interrupts()

    def timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` and record its duration under ``phase`` in the report."""
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.result.timings_ms[phase] = ms(time.perf_counter() - start)

    def warn(self, msg: str) -> None:
        self.result.warnings.append(msg)
        if self.journal:
            self.journal.event("warning", message=msg)

    def connect(self) -> None:
        """Look the domain up (libvirt) or, over a socket, open the agent."""
        if self.target.via_socket:
            self.agent = self.target.agent(self.opts.timeout)
            return
        self.host = self.target.domain("a snapshot")
        self.result.uri = self.host.uri
        self.label = self.host.name

    def identity(self) -> tuple[str, str, str | None]:
        """(URI, name, UUID) keying the journal and the lock."""
        return self.target.journal_identity(self.host)

    def open_agent(self) -> GuestAgent:
        if self.agent is None:
            self.agent = Target(self.label, self.uri).agent(self.opts.timeout)
        return self.agent
