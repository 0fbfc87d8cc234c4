"""The options of a backup, declared once (see :mod:`virt_qga.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from virt_qga.errors import BadInputError
from virt_qga.errors import option_ref as ref
from virt_qga.options import declare, option, validate

__all__ = ["LEVELS", "METHODS", "RETENTION_FIELDS", "SNAPSHOT_FIELDS", "BackupOptions"]

LEVELS = ("auto", "full", "inc")
METHODS = ("auto", "backup-api", "snapshot")
#: The snapshot options a backup offers (CLI and Ansible); the others do not apply.
#: The retention options (``backup`` and ``backup-prune``).
RETENTION_FIELDS = ("keep", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
SNAPSHOT_FIELDS = ("disks", "quiesce", "pre_freeze", "post_thaw", "max_frozen", "wait_lock")


@declare
@dataclass
class BackupOptions:
    """The backup's own options; the freeze ones are :class:`SnapshotOptions`'."""

    level: str = option("auto", choices=LEVELS, help=(
        "full starts a new chain; inc backs up what changed since the chain's last backup; "
        "auto is inc when the chain can take one and full otherwise, and says why."))
    method: str = option("auto", choices=METHODS, help=(
        "backup-api: libvirt's backup job with a checkpoint (incrementals, the guest frozen only "
        "while the job starts); snapshot: external overlay, copy, merge back (full backups only). "
        "auto: backup-api where libvirt supports it, else snapshot; a method asked for and not "
        "possible is an error, never a silent fallback."))
    full_every: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Start a new chain (a full backup) once the chain holds N backups."))
    keep: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "The same as keep_last (kept for the scripts that use it)."))
    keep_last: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Retention, applied after a successful backup: keep the newest N backups. The keep_* "
        "rules apply in the order last, daily, weekly, monthly, yearly, each keeping the newest "
        "backup of its next N periods (weeks are ISO weeks); a chain goes only when no rule "
        "keeps any of its backups. Without any keep_* option nothing is removed."))
    keep_daily: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Retention: keep the newest backup of each of the last N days that have one."))
    keep_weekly: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Retention: keep the newest backup of each of the last N ISO weeks that have one."))
    keep_monthly: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Retention: keep the newest backup of each of the last N months that have one."))
    keep_yearly: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "Retention: keep the newest backup of each of the last N years that have one."))
    copy_timeout: float = option(3600.0, min=1, unit="seconds", help=(
        "Deadline for the data copy of one domain (the backup job, or each disk copy of the "
        "snapshot method), seconds."))
    #: Deadline of the merge back of the overlays (snapshot method).
    commit_timeout: float = 600.0

    def validate(self) -> None:
        validate(self)
        if self.keep is not None and self.keep_last is not None and self.keep != self.keep_last:
            raise BadInputError(f"{ref('keep')} is {ref('keep_last')}: give one of them", field="keep")
        if self.level == "inc" and self.method == "snapshot":
            raise BadInputError(f"{ref('method')} snapshot makes full backups only; use "
                                f"{ref('level')} full or auto", field="level")
