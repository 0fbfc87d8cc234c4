"""The options of a backup, declared once (see :mod:`virt_qga.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from virt_qga.errors import BadInputError
from virt_qga.errors import option_ref as ref
from virt_qga.options import declare, option, validate

__all__ = ["LEVELS", "METHODS", "SNAPSHOT_FIELDS", "BackupOptions"]

LEVELS = ("auto", "full", "inc")
METHODS = ("auto", "backup-api", "snapshot")
#: The snapshot options a backup offers (CLI and Ansible); the others do not apply.
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
        "After a successful backup keep only the newest N backups of the domain (whole chains "
        "are kept or removed: never a backup another kept one depends on)."))
    copy_timeout: float = option(3600.0, min=1, unit="seconds", help=(
        "Deadline for the data copy of one domain (the backup job, or each disk copy of the "
        "snapshot method), seconds."))
    #: Deadline of the merge back of the overlays (snapshot method).
    commit_timeout: float = 600.0

    def validate(self) -> None:
        validate(self)
        if self.level == "inc" and self.method == "snapshot":
            raise BadInputError(f"{ref('method')} snapshot makes full backups only; use "
                                f"{ref('level')} full or auto", field="level")
