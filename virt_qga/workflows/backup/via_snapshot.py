"""The snapshot method, for stacks without the backup API: an external snapshot (the
guest frozen only for it), a copy of each now-stable base image, and the overlays
merged back, always: also when the copy fails, on SIGTERM or Ctrl-C. Full backups only.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from virt_qga.errors import OperationError, VirtQgaError
from virt_qga.outcome import State
from virt_qga.workflows.backup import images
from virt_qga.workflows.backup.job import BackupJob
from virt_qga.workflows.backup.store import DiskRecord

__all__ = ["run_snapshot"]


def run_snapshot(job: BackupJob, partial: Path) -> None:
    """Back up ``job.disks`` into ``partial`` through an external snapshot."""
    from virt_qga.workflows.snapshot import commit_back, snapshot

    t = time.monotonic()
    name = f"vqga-{job.name}"
    try:
        snap = snapshot(job.domain, job.uri, options=replace(
            job.snap, mode="external", held_lock=job.lock, name=name))
    except BaseException:
        _merge_back_after(job, name)  # a signal right after the snapshot: its overlays exist
        raise
    job.result.timings_s["snapshot"] = round(time.monotonic() - t, 3)
    job.took_snapshot(snap)
    targets = tuple(o["target"] for o in snap.overlays)
    job.note(step="copy", overlays=snap.overlays)
    copy_error: BaseException | None = None
    try:
        t = time.monotonic()
        for ov in snap.overlays:
            file = f"{ov['target']}.qcow2"
            images.convert(ov["base"], partial / file, job.opts.copy_timeout)
            size = int(images.info(partial / file)["virtual-size"])
            job.records.append(DiskRecord(target=ov["target"], source=ov["base"], file=file,
                                          virtual_size=size, checkpoint=False,
                                          bytes_written=images.data_bytes(partial / file)))
            job.report_progress(len(job.records), len(snap.overlays))
        job.result.timings_s["copy"] = round(time.monotonic() - t, 3)
    except BaseException as exc:
        copy_error = exc
        raise
    finally:
        t = time.monotonic()
        try:
            if targets:
                job.result.committed = commit_back(job.domain, job.uri, disks=targets,
                                                   timeout=job.opts.commit_timeout,
                                                   state_dir_=job.snap.state_dir, held_lock=job.lock)
            job.note(step="merged", overlays=[])
        except VirtQgaError as exc:
            also = f" (and the copy failed: {copy_error})" if copy_error else ""
            raise OperationError(f"merging the overlays back failed: {exc}{also}",
                                 state=State.INCONSISTENT, domain=job.domain,
                                 undo=f"virt-qga snapshot {job.domain} --commit-back") from exc
        job.result.timings_s["commit_back"] = round(time.monotonic() - t, 3)


def _merge_back_after(job: BackupJob, name: str) -> None:
    """Merge back the overlays of snapshot ``name`` if the domain runs on them."""
    from virt_qga.host import snapshots as hs
    from virt_qga.workflows.snapshot import commit_back

    try:
        active = hs.active_sources(job.host)
        mine = tuple(t for t, src in active.items() if src and f".{name}." in src)
        if mine:
            job.result.committed = commit_back(job.domain, job.uri, disks=mine,
                                               timeout=job.opts.commit_timeout,
                                               state_dir_=job.snap.state_dir, held_lock=job.lock)
    except VirtQgaError as exc:
        job.result.warnings.append(f"could not merge the overlays of {name} back: {exc}")
