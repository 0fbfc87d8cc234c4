"""A shut-off domain: its disks are copied as they are, without a freeze (nothing runs
to freeze), and the backup's consistency is ``offline``: as good as a clean shutdown
left it. Full backups only (libvirt makes checkpoints of running domains only)."""

from __future__ import annotations

import time
from pathlib import Path

from virt_qga.exitcodes import ExitCode
from virt_qga.workflows.backup import images
from virt_qga.workflows.backup.job import BackupJob
from virt_qga.workflows.backup.store import DiskRecord

__all__ = ["run_offline"]


def run_offline(job: BackupJob, partial: Path) -> None:
    """Copy each disk of the shut-off domain into ``partial``."""
    t = time.monotonic()
    for d in job.disks:
        assert d.source is not None
        file = f"{d.target}.qcow2"
        images.convert(d.source, partial / file, job.opts.copy_timeout, source_format=d.driver_type)
        size = int(images.info(partial / file)["virtual-size"])
        job.records.append(DiskRecord(target=d.target, source=d.source, file=file, virtual_size=size,
                                      checkpoint=False, bytes_written=images.data_bytes(partial / file)))
        job.report_progress(len(job.records), len(job.disks))
    job.result.timings_s["copy"] = round(time.monotonic() - t, 3)
    job.result.consistency = "offline"
    job.result.consistency_reason = "the domain was shut off"
    job.result.exit_code = int(ExitCode.OK)
