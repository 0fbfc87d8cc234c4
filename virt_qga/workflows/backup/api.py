"""The backup-api method: libvirt's push-mode backup job with a checkpoint.

The guest is frozen only around ``backupBegin`` (the snapshot workflow's freeze, thaw
guard, hooks and consistency policy, with the job start as its frozen step); the data
is then copied by QEMU with the guest thawed and no overlay on the domain. Targets are
created first (``REUSE_EXTERNAL``): an incremental's target has the previous backup's
image as its backing file, so each point of a chain is a usable image on its own.
Disks that are not qcow2 (raw) cannot hold a bitmap: they are backed up in full every
time and say so (``checkpoint: false`` in the manifest).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from virt_qga.errors import BadInputError, HostError, VirtQgaError, option_ref
from virt_qga.host import backup as hb
from virt_qga.host import snapshots as hs
from virt_qga.workflows.backup import images
from virt_qga.workflows.backup.job import BackupJob
from virt_qga.workflows.backup.store import CHECKPOINT_XML, DiskRecord

__all__ = ["CHECKPOINT_PREFIX", "blocking_dir", "check_reachable", "run_api"]

#: virt-qga's checkpoints are named after the backup that made them: vqga-<backup name>.
CHECKPOINT_PREFIX = "vqga-"
#: How long an aborted job may take to go away before cleanup goes on regardless.
ABORT_WAIT = 10.0


def run_api(job: BackupJob, partial: Path) -> None:
    """Back up ``job.disks`` into ``partial`` with the backup API (see module docstring)."""
    from virt_qga.workflows.snapshot import snapshot

    host = job.host
    all_targets = [d.target for d in hs.list_disks(host.xml())]
    owner = job.qemu_owner()
    if owner is not None:
        check_reachable(partial, owner)
    parent_files = {d.target: d for d in job.parent.manifest.disks} if job.parent else {}
    disks: list[hb.BackupDisk] = []
    for d in job.disks:
        can_bitmap = d.driver_type == "qcow2"
        prev = parent_files.get(d.target)
        incremental = job.level == "inc" and can_bitmap and prev is not None and prev.checkpoint
        file = f"{d.target}.qcow2"
        size = int(host.call("blockInfo", d.target)[0])
        backing = f"../{job.parent.name}/{prev.file}" if incremental and job.parent and prev else None
        images.create(partial / file, size, backing=backing, owner=owner)
        disks.append(hb.BackupDisk(d.target, str(partial / file), incremental, can_bitmap))
        job.records.append(DiskRecord(target=d.target, source=d.source, file=file, virtual_size=size,
                                      backing=backing, checkpoint=can_bitmap))
        if not can_bitmap:
            job.result.warnings.append(f"{d.target} is {d.driver_type}, not qcow2: no checkpoint "
                                       "bitmap, so it is backed up in full every time")
    job.checkpoint = CHECKPOINT_PREFIX + job.name if any(d.checkpoint for d in disks) else None
    since = job.parent.manifest.checkpoint if job.level == "inc" and job.parent else None
    backup_xml = hb.backup_xml(disks, all_targets, since)
    checkpoint_xml = hb.checkpoint_xml(job.checkpoint, disks, all_targets) if job.checkpoint else None
    job.note(step="job", checkpoint=job.checkpoint)  # before backupBegin: recover must know it
    started = False

    def start() -> None:
        nonlocal started
        hb.begin(host, backup_xml, checkpoint_xml)
        started = True

    try:
        t = time.monotonic()
        snap = snapshot(job.domain, job.uri, options=replace(
            job.snap, mode="command", command=None, frozen_action=start, held_lock=job.lock,
            name=CHECKPOINT_PREFIX + job.name, description="virt-qga backup"))
        job.result.timings_s["start"] = round(time.monotonic() - t, 3)
        job.took_snapshot(snap)
        t = time.monotonic()
        done = hb.wait_job(host, time.monotonic() + job.opts.copy_timeout, job.on_job())
        job.result.timings_s["job"] = round(time.monotonic() - t, 3)
        job.note(step="job-done", processed=done.processed)
        for rec in job.records:
            rec.bytes_written = images.data_bytes(partial / rec.file)
        if job.checkpoint:
            (partial / CHECKPOINT_XML).write_text(hb.get_checkpoint_xml(host, job.checkpoint))
    except BaseException:
        undo_job(job, started)
        raise


def check_reachable(folder: Path, owner: tuple[int, int]) -> None:
    """QEMU (running as ``owner``) opens the target files by path: every directory above
    them must let it through. Say so before the job instead of after a 'Permission denied'."""
    import stat

    blocked = blocking_dir(folder, owner)
    if blocked is not None:
        raise BadInputError(
            f"QEMU runs as uid {owner[0]} and cannot reach the backup store: {blocked} is mode "
            f"{stat.S_IMODE(blocked.stat().st_mode):03o}. Choose a store below directories it can "
            f"enter (or give it access), or use {option_ref('method')} snapshot", field="dest")


def blocking_dir(folder: Path, owner: tuple[int, int]) -> Path | None:
    """The first directory from ``folder`` up that user ``owner`` (uid, gid) cannot
    enter (no search permission), or None when it can reach ``folder``."""
    import stat

    uid, gid = owner
    if uid == 0:
        return None
    for d in [folder, *folder.parents]:
        st = d.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return d
    return None


def undo_job(job: BackupJob, started: bool) -> None:
    """After a failure: stop our job and drop our checkpoint (best effort; what cannot be
    undone stays in the journal for ``virt-qga recover``)."""
    host = job.host
    if not host.alive():
        with contextlib.suppress(VirtQgaError):
            host.reconnect()  # libvirtd restarted: the job and checkpoint are on the new one
    if started:
        with contextlib.suppress(VirtQgaError):
            if hb.backup_job_running(host):
                hb.abort_job(host)
                deadline = time.monotonic() + ABORT_WAIT
                while hb.backup_job_running(host) and time.monotonic() < deadline:
                    time.sleep(0.1)
    if job.checkpoint:
        from virt_qga.workflows.backup.recovery import remove_checkpoint

        try:
            remove_checkpoint(host, job.checkpoint)
        except VirtQgaError as exc:
            job.result.warnings.append(f"could not delete checkpoint {job.checkpoint}: {exc}")
            return
    job.note(step="undone")


def drop_older_checkpoints(job: BackupJob) -> list[str]:
    """After a successful backup, the checkpoints of this store's older backups of the
    domain serve no chain any more (incrementals always start from the newest): delete
    them, so QEMU keeps one bitmap per disk instead of one per backup. Checkpoints of
    backups in another store (or made by other tools) are not ours to judge: kept."""
    ours = {b.manifest.checkpoint for c in job.store.chains(job.domain) for b in c.backups
            if b.manifest.checkpoint}
    ours.discard(job.checkpoint)
    dropped = []
    for name in hb.checkpoint_names(job.host):
        if name in ours:
            try:
                if hb.delete_checkpoint(job.host, name):
                    dropped.append(name)
            except HostError as exc:
                job.result.warnings.append(f"could not delete the old checkpoint {name}: {exc}")
    return dropped
