"""One domain's backup job: its inputs and what it has done so far, shared by the
methods (:mod:`.api`, :mod:`.via_snapshot`, :mod:`.offline`) that :mod:`.run` drives."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virt_qga.workflows.backup.options import BackupOptions
from virt_qga.workflows.backup.result import BackupResult
from virt_qga.workflows.backup.store import DiskRecord, Manifest, Store, StoredBackup

if TYPE_CHECKING:
    from virt_qga.host import Domain
    from virt_qga.host.backup import JobProgress
    from virt_qga.host.snapshots import DiskInfo
    from virt_qga.workflows.journal import Journal
    from virt_qga.workflows.lock import DomainLock
    from virt_qga.workflows.snapshot import SnapshotOptions, SnapshotResult

__all__ = ["BackupJob", "Progress"]

#: Called with (domain, bytes done, bytes total) while data is copied.
Progress = Callable[[str, int, int], None]


@dataclass
class BackupJob:
    host: Domain
    uri: str | None
    store: Store
    snap: SnapshotOptions
    opts: BackupOptions
    lock: DomainLock
    journal: Journal
    result: BackupResult
    name: str                      # this backup's name
    started: datetime
    disks: list[DiskInfo] = field(default_factory=list)
    level: str = "full"
    chain: str = ""                # the chain this backup joins (or starts)
    parent: StoredBackup | None = None
    checkpoint: str | None = None  # created by this backup
    progress: Progress | None = None
    manifest: Manifest | None = None
    records: list[DiskRecord] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return self.host.name

    def qemu_owner(self) -> tuple[int, int] | None:
        """(uid, gid) the domain's QEMU writes as: the owner of its first file disk
        (libvirt gives a running domain's images to QEMU's user; a session daemon's
        images belong to its user). None when that cannot be seen from here."""
        for d in self.disks:
            if d.source and d.source_type == "file":
                try:
                    st = os.stat(d.source)
                except OSError:
                    return None
                return st.st_uid, st.st_gid
        return None

    def report_progress(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(self.domain, done, total)

    def on_job(self) -> Callable[[JobProgress], None]:
        return lambda p: self.report_progress(p.processed, p.total)

    def took_snapshot(self, snap: SnapshotResult) -> None:
        """Record what the freeze achieved (the snapshot workflow's report)."""
        r = self.result
        r.snapshot = snap.to_dict()
        r.consistency, r.consistency_reason = snap.consistency, snap.consistency_reason
        r.frozen_window_ms = snap.frozen_window_ms
        r.warnings.extend(snap.warnings)
        r.exit_code = snap.exit_code

    def note(self, **data: Any) -> None:
        """Record progress in the backup journal (what recover must know if we die)."""
        self.journal.update(**data)

    def partial_path(self) -> Path:
        return self.store.partial_dir(self.domain, self.chain, self.name)
