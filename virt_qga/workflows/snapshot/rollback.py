"""Undo what the snapshot step made, after a failure: returns the state left and,
when something could not be undone, the command that finishes it."""

from __future__ import annotations

import os
import shlex

from virt_qga.errors import VirtQgaError
from virt_qga.outcome import State
from virt_qga.workflows.snapshot.job import Job

__all__ = ["rollback"]


def rollback(job: Job) -> tuple[State, str | None]:
    """(state, undo command or None) after undoing the snapshot step."""
    from virt_qga.host import snapshots as hs

    if job.opts.mode == "command" or job.host is None:
        return (State.SNAPSHOT_KEPT if job.snapshot_made else State.ROLLED_BACK), None
    if job.opts.mode == "internal":
        try:
            hs.delete_internal(job.host, job.name)
        except VirtQgaError as exc:
            return State.INCONSISTENT, f"virsh snapshot-delete {job.label} {job.name}  # {exc}"
        return State.ROLLED_BACK, None
    try:
        active = hs.active_sources(job.host)
    except VirtQgaError as exc:
        return State.INCONSISTENT, f"virt-qga recover {job.label}  # cannot read the disks: {exc}"
    to_commit = [d.target for d, ov in job.plan if active.get(d.target) == ov]
    if to_commit:
        try:
            hs.commit_external(job.host, to_commit, timeout=120.0,
                               expect_overlays={d.target: ov for d, ov in job.plan},
                               snapshot_name=job.name if job.opts.metadata else None)
        except VirtQgaError as exc:
            return State.INCONSISTENT, (f"virt-qga snapshot {job.label} --commit-back "
                                        + " ".join(f"--disk {t}" for t in to_commit) + f"  # {exc}")
    for _, overlay in job.plan:
        if hs.is_local_uri(job.host.uri) and os.path.exists(overlay):
            try:
                os.unlink(overlay)
            except OSError as exc:
                return State.INCONSISTENT, f"rm {shlex.quote(overlay)}  # {exc.strerror}"
    return State.ROLLED_BACK, None
