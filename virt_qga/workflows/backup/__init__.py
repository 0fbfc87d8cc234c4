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
:mod:`.run` (one domain), :mod:`.recovery` (what a dead run left), :mod:`.retention`;
for runs from cron: :mod:`.metrics` (node_exporter textfile), :mod:`.notify` (the
``--on-failure`` command).
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
    "select_domains",
]


def backup_many(domains: list[str], uri: str | None, dest: Path, *, jobs: int = 1,
                **kw: Any) -> tuple[list[BackupResult], int]:
    """:func:`backup` for each domain, at most ``jobs`` at a time (each under its own
    lock; one domain's failure never stops another); the results in the order given and
    the aggregated exit code."""
    from virt_qga.workflows.fleet import run_each

    results = []
    for r in run_each(domains, lambda d: backup(d, uri, dest, **kw), jobs=jobs):
        if r.result is not None:
            results.append(r.result)
        else:  # an exception backup() does not turn into a result (a bug): still one result
            error = r.error or {}
            results.append(BackupResult(domain=r.domain, error=str(error.get("message", "failed")),
                                        exit_code=r.exit_code))
    return results, aggregate_exit([r.exit_code for r in results])


def select_domains(names: list[str], exclude: tuple[str, ...] = ()) -> list[str]:
    """``names`` without those matching any ``exclude`` glob (``web*``, ``test-?``), each
    once, in the order given."""
    from fnmatch import fnmatchcase

    return [n for n in dict.fromkeys(names) if not any(fnmatchcase(n, g) for g in exclude)]
