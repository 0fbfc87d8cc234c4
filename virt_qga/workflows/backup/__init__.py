"""Backups from cron: full and incremental chains, one domain or many.

:func:`backup` backs up one domain into a store directory (:mod:`.store`): with
libvirt's backup API and a checkpoint wherever the stack offers it (incrementals, the
guest frozen only while the job starts), else through an external snapshot (full
backups only), and shut-off domains by copying their disks. Which method and level
ran, and why, is in the result; a backup under its final name is complete, and a run
that dies leaves a journal that the next run or ``virt-qga recover`` cleans up.

The package, one concern per module: :mod:`.options`, :mod:`.result`, :mod:`.store`
(layout and manifest), :mod:`.plan` (method and level), :mod:`.job`, :mod:`.api`,
:mod:`.via_snapshot`, :mod:`.offline` (the three methods), :mod:`.images` (qemu-img),
:mod:`.run` (one domain), :mod:`.recovery` (what a dead run left), :mod:`.retention`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from virt_qga.workflows.backup.options import LEVELS, METHODS, SNAPSHOT_FIELDS, BackupOptions
from virt_qga.workflows.backup.result import BackupResult
from virt_qga.workflows.backup.run import backup, check_destination
from virt_qga.workflows.backup.store import Store
from virt_qga.workflows.fleet import aggregate_exit

__all__ = [
    "LEVELS",
    "METHODS",
    "SNAPSHOT_FIELDS",
    "BackupOptions",
    "BackupResult",
    "Store",
    "aggregate_exit",
    "backup",
    "backup_many",
    "check_destination",
]


def backup_many(domains: list[str], uri: str | None, dest: Path,
                **kw: Any) -> tuple[list[BackupResult], int]:
    """:func:`backup` for each domain in turn; the results and the aggregated exit code."""
    results = [backup(d, uri, dest, **kw) for d in domains]
    return results, aggregate_exit([r.exit_code for r in results])
