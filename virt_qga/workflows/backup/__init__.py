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
:mod:`.run` (one domain), :mod:`.many` (many domains, --jobs at a time), :mod:`.recovery`
(what a dead run left), :mod:`.retention`;
for runs from cron: :mod:`.metrics` (node_exporter textfile), :mod:`.notify` (the
``--on-failure`` command).
"""

from __future__ import annotations

from virt_qga.workflows.backup.many import RunInterrupted, backup_many, select_domains
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
    "RunInterrupted",
    "Store",
    "aggregate_exit",
    "backup",
    "backup_many",
    "check_destination",
    "select_domains",
]
