"""The frozen section: freeze, the snapshot step, thaw and its confirmation.

Only three calls run with the guest frozen: the freeze, ``snapshotCreateXML`` (or the
host command) and the thaw; everything else was prepared before (:mod:`.plan`).
The thaw runs in ``finally`` on every path, with signals held so that a second Ctrl-C
cannot abort it.
"""

from __future__ import annotations

import time

from virt_qga.errors import VirtQgaError
from virt_qga.workflows.snapshot.hooks import run_host_command
from virt_qga.workflows.snapshot.job import Job
from virt_qga.workflows.snapshot.result import ms

__all__ = ["do_snapshot", "do_thaw", "frozen_section"]


def do_freeze(job: Job) -> None:
    agent = job.open_agent()
    assert job.journal is not None
    job.journal.advance("freezing", guard_pid=job.guard.pid if job.guard else None)
    if job.guard is not None:
        job.armed_at = time.monotonic()
        job.guard.arm()
    job.freeze_sent = True
    job.thaw_confirmed = False
    t0 = time.perf_counter()
    if job.opts.mountpoints:
        count = agent.fsfreeze_freeze_list(mountpoints=list(job.opts.mountpoints))
    else:
        count = agent.fsfreeze_freeze()
    job.frozen_at = time.perf_counter()
    job.result.timings_ms["freeze"] = ms(job.frozen_at - t0)
    job.result.frozen = int(count)


def do_snapshot(job: Job) -> None:
    """The snapshot step: the host command, or libvirt's snapshotCreateXML."""
    t0 = time.perf_counter()
    try:
        if job.opts.frozen_action is not None:
            job.opts.frozen_action()
        elif job.opts.mode == "command":
            run_host_command(job)
        else:
            from virt_qga.host.snapshots import create_snapshot

            assert job.host is not None
            create_snapshot(job.host, job.xml, job.flags)
        job.snapshot_made = True
        job.snapshot_done_at = time.monotonic()
    finally:
        job.result.timings_ms["snapshot"] = ms(time.perf_counter() - t0)


def do_thaw(job: Job) -> None:
    """Thaw and confirm. Never raises: failures are recorded for the report."""
    agent = job.open_agent()
    t0 = time.perf_counter()
    errors: list[str] = []
    thawed: int | None = None
    wait = job.opts.thaw_timeout
    for _attempt in range(2):
        try:
            thawed = int(agent.call("guest-fsfreeze-thaw", timeout=wait))
            break
        except VirtQgaError as exc:
            if str(exc) not in errors:
                errors.append(str(exc))
    t1 = time.perf_counter()
    job.result.timings_ms["thaw"] = ms(t1 - t0)
    if job.frozen_at is not None:
        job.result.frozen_window_ms = ms(t1 - job.frozen_at)
    job.result.thawed = thawed
    try:
        status = agent.call("guest-fsfreeze-status", timeout=wait)
    except VirtQgaError as exc:
        status = None
        if str(exc) not in errors:
            errors.append(str(exc))
    job.result.timings_ms["verify"] = ms(time.perf_counter() - t1)
    job.thaw_confirmed = status == "thawed"
    if not job.thaw_confirmed and _domain_stopped(job):
        job.thaw_confirmed = True
        job.warn("the domain stopped while its filesystems were frozen: nothing is left frozen "
                 f"(the agent said: {'; '.join(errors) or status})")
    elif not job.thaw_confirmed:
        job.thaw_error = "; ".join(errors) or f"status still {status}"


def _domain_stopped(job: Job) -> bool:
    """The domain is shut off or crashed: its QEMU, and every frozen filesystem, are gone."""
    if job.host is None:
        return False  # an agent socket: nothing else to ask
    try:
        return job.host.state() in ("shut off", "crashed")
    except VirtQgaError:
        return False


def frozen_section(job: Job) -> None:
    """Freeze, snapshot, and always thaw (a failed freeze under ``preferred`` falls back)."""
    try:
        try:
            do_freeze(job)
        except VirtQgaError as exc:
            if job.opts.quiesce != "preferred":
                raise
            do_thaw(job)  # a failed or timed-out freeze may have frozen some filesystems
            if not job.thaw_confirmed:
                raise
            fall_back(job, f"freeze failed: {exc}")
        do_snapshot(job)
    finally:
        job.signals.hold()
        if job.freeze_sent:
            do_thaw(job)


def fall_back(job: Job, reason: str) -> None:
    """``quiesce preferred``: the freeze failed and the guest is thawed again."""
    job.freeze = False
    job.freeze_sent = False
    job.frozen_at = None
    job.result.frozen = None
    job.result.frozen_window_ms = None
    job.result.consistency_reason = reason
    if job.guard is not None:
        job.guard.stop()
        job.guard = None
    job.warn(f"falling back to a crash-consistent snapshot: {reason}")
