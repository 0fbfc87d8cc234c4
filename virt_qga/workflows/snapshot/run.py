"""The snapshot job from start to end: lock, journal, pre-checks, plan, guard, frozen
section, report; and, on any failure, the cleanup and the one error that says what
was left (:func:`failed`)."""

from __future__ import annotations

import time

from virt_qga.errors import (
    AgentTimeoutError,
    AgentUnavailableError,
    Interrupted,
    OperationError,
    VirtQgaError,
    option_ref,
)
from virt_qga.exitcodes import ExitCode
from virt_qga.outcome import State
from virt_qga.workflows.journal import Journal, state_dir
from virt_qga.workflows.lock import DomainLock, lock_path
from virt_qga.workflows.snapshot import checks, frozen, hooks, plan
from virt_qga.workflows.snapshot.job import Job
from virt_qga.workflows.snapshot.result import SnapshotResult, achieved_consistency, decide_consistency, ms
from virt_qga.workflows.snapshot.rollback import rollback

__all__ = ["execute"]


def execute(job: Job) -> SnapshotResult:
    """Run ``job`` under the domain's lock (or the caller's ``held_lock``)."""
    t_start = time.perf_counter()
    job.opts.validate()
    job.timed("connect", job.connect)
    uri, name, uuid = job.identity()
    base = job.opts.state_dir or state_dir()
    journal = Journal.for_domain(uri, name, uuid, base=base)
    held = job.opts.held_lock
    lock = held or DomainLock(lock_path(base, journal.key), domain=name, wait=job.opts.wait_lock)
    if held is None:
        lock.acquire()
    try:
        checks.check_stale(job, journal)
        job.journal = journal
        with job.signals:
            return _locked(job, lock, t_start)
    finally:
        if held is None:
            lock.release()


def _locked(job: Job, lock: DomainLock, t_start: float) -> SnapshotResult:
    assert job.journal is not None
    opts = job.opts
    uri, name, uuid = job.identity()
    no_freeze_reason = job.timed("domain_check", lambda: checks.check_domain_state(job))
    can_freeze = no_freeze_reason is None and opts.quiesce != "off"
    if can_freeze:
        try:
            job.timed("agent_check", lambda: checks.check_agent(job))
        except (AgentUnavailableError, AgentTimeoutError) as exc:
            if opts.quiesce == "required":
                raise
            can_freeze, no_freeze_reason = False, f"guest agent unusable: {exc}"
    job.freeze, reason = decide_consistency(opts.quiesce, can_freeze=can_freeze, reason=no_freeze_reason)
    if not job.freeze and (opts.pre_freeze or opts.post_thaw):
        job.warn("hooks skipped: no freeze")
    job.result.consistency_reason = reason
    job.timed("plan", lambda: plan.plan_disks(job))
    job.result.overlays = [{"target": d.target, "base": d.source or "", "overlay": ov}
                           for d, ov in job.plan] if opts.mode == "external" else []
    job.journal.begin(domain=name, uri=uri, uuid=uuid, operation="snapshot", data={
        "mode": opts.mode, "name": job.name, "metadata": job.result.metadata,
        "planned_overlays": job.result.overlays, "command": opts.command, "freeze": job.freeze})
    try:
        if job.freeze:
            _start_guard(job, lock)
            if job.precreate:
                job.timed("precreate", lambda: plan.precreate_overlays(job))
            if opts.pre_freeze:
                job.journal.advance("hooks")
                hook = opts.pre_freeze
                job.timed("pre_freeze_hook", lambda: hooks.guest_hook(job, "pre_freeze", hook))
                job.hooks_ran = True
            assert job.guard is not None
            job.timed("guard_ready_wait", job.guard.wait_ready)
            job.result.guard = {"pid": job.guard.pid, "max_frozen_s": opts.max_frozen}
            frozen.frozen_section(job)
        else:
            if job.precreate:
                job.timed("precreate", lambda: plan.precreate_overlays(job))
            job.journal.advance("snapshotting")
            frozen.do_snapshot(job)
    except BaseException as exc:
        return failed(job, exc)
    return _finish(job, t_start)


def _start_guard(job: Job, lock: DomainLock) -> None:
    from virt_qga.workflows.thaw_guard import ThawGuard

    assert job.journal is not None
    uri, name, _ = job.identity()
    job.guard = ThawGuard(domain=name, uri=None if job.opts.socket else uri, socket=job.opts.socket,
                          max_frozen=job.opts.max_frozen, journal_dir=job.journal.dir,
                          journal_key=job.journal.key, thaw_timeout=job.opts.thaw_timeout,
                          pass_fds=(lock.fd,) if lock.fd is not None else ())
    job.guard.start()


def _guard_fired_early(job: Job) -> bool:
    if job.guard is None or not job.guard.poll_fired():
        return False
    if job.snapshot_done_at is None or job.armed_at is None:
        return True
    return job.snapshot_done_at >= job.armed_at + job.opts.max_frozen


def _stop_guard(job: Job) -> None:
    guard = job.guard
    if guard is None:
        return
    fired = guard.poll_fired()
    if job.thaw_confirmed:
        guard.stop()
    else:
        # Leave it running: closing its stdin makes it thaw and keep retrying.
        try:
            if guard.proc is not None and guard.proc.stdin is not None:
                guard.proc.stdin.close()
        except OSError:
            pass
    job.result.guard["fired"] = [list(f) for f in guard.report.fired]
    if fired:
        job.warn("the thaw guard thawed the guest itself (the job exceeded "
                 f"{option_ref('max_frozen')} {job.opts.max_frozen:g} s)")


def _finish(job: Job, t_start: float) -> SnapshotResult:
    assert job.journal is not None
    opts = job.opts
    early = _guard_fired_early(job)
    _stop_guard(job)
    if job.freeze and not job.thaw_confirmed:
        job.journal.event("thaw-unconfirmed", error=job.thaw_error)
        raise OperationError(
            f"snapshot {job.name} was made but the thaw could not be confirmed ({job.thaw_error}); "
            f"the thaw guard keeps trying. Check with `virt-qga recover {job.label}`",
            state=State.MAYBE_FROZEN, undo=f"virt-qga recover {job.label}", domain=job.label,
            result=job.result.to_dict())
    job.journal.advance("thawed", thawed=job.result.thawed)
    if early:
        reason = (f"the snapshot step took longer than {option_ref('max_frozen')} "
                  f"({opts.max_frozen:g} s): the thaw guard thawed the guest before it completed")
        if opts.quiesce == "required":
            state, undo = rollback(job)
            job.journal.advance("rolling-back")
            job.journal.advance("failed", state=state)
            if state == State.ROLLED_BACK:
                job.journal.remove()
            raise OperationError(reason + f"; snapshot {state}", state=state,
                                 cause=AgentTimeoutError(reason), undo=undo, domain=job.label,
                                 result=job.result.to_dict())
        job.result.consistency_reason = reason
    r = job.result
    if job.freeze and r.frozen is not None and r.thawed is not None and r.thawed != r.frozen:
        job.warn(f"froze {r.frozen} filesystem(s) but thawed {r.thawed} "
                 "(the guard or another client may have thawed some)")
    r.consistency = achieved_consistency(job.freeze, job.hooks_ran, early)
    if opts.post_thaw and job.freeze:
        job.journal.advance("post-hooks")
        post = opts.post_thaw
        try:
            job.timed("post_thaw_hook", lambda: hooks.guest_hook(job, "post_thaw", post))
        except VirtQgaError as exc:
            job.warn(f"post-thaw hook failed: {exc}")
            r.exit_code = int(ExitCode.PARTIAL)
    if opts.mode == "internal" and job.freeze:
        job.warn("the internal checkpoint holds the guest RAM as it was while frozen: after "
                 f"`virsh snapshot-revert {job.label} {job.name}` the guest resumes frozen; "
                 f"thaw it with `virt-qga recover {job.label}`")
    job.journal.advance("done")
    job.journal.remove()
    if r.consistency == "crash" and r.exit_code == ExitCode.OK:
        r.exit_code = int(ExitCode.CRASH_CONSISTENT)
    r.timings_ms["total"] = ms(time.perf_counter() - t_start)
    return r


def failed(job: Job, exc: BaseException) -> SnapshotResult:
    """Cleanup after any failure, then raise the one error that says what was left.

    The thaw has already run (the frozen section's ``finally``); what is left is the
    guard, the rollback, the journal and the report.
    """
    assert job.journal is not None
    job.signals.hold()
    _stop_guard(job)
    try:
        job.journal.advance("rolling-back", error=_describe(exc))
    except ValueError:
        pass
    state, undo = rollback(job)
    thaw_ok = not job.freeze_sent or job.thaw_confirmed
    job.journal.advance("failed", state=state)
    if thaw_ok and state == State.ROLLED_BACK:
        job.journal.remove()
    cause = exc if isinstance(exc, Exception) else None
    report = job.result.to_dict()
    if not thaw_ok:
        raise OperationError(
            f"{_describe(exc)}; and the thaw could not be confirmed ({job.thaw_error}): the guest "
            f"may still be frozen; the thaw guard keeps trying. Check with `virt-qga recover "
            f"{job.label}`", state=State.MAYBE_FROZEN, undo=f"virt-qga recover {job.label}",
            domain=job.label, result=report) from cause
    thawed = "guest thawed, " if job.freeze_sent else ""
    if state == State.INCONSISTENT:
        raise OperationError(f"{_describe(exc)}; {thawed}rollback incomplete", state=state, undo=undo,
                             domain=job.label, result=report) from cause
    if isinstance(exc, KeyboardInterrupt):
        raise OperationError(f"interrupted by {_signame(exc)}; {thawed}snapshot {state}", state=state,
                             cause=exc, undo=undo, domain=job.label, result=report) from cause
    if isinstance(exc, OperationError):
        exc.result = report
        if state != State.ROLLED_BACK:
            exc.state, exc.undo = state, undo
        raise exc
    if isinstance(exc, VirtQgaError):
        if not job.freeze_sent and not job.snapshot_made:
            raise exc
        raise OperationError(f"{exc}; {thawed}snapshot {state}", state=state, cause=exc, undo=undo,
                             domain=job.label, result=report) from exc
    raise exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted by {_signame(exc)}"
    return str(exc) or type(exc).__name__


def _signame(exc: BaseException) -> str:
    return exc.signal_name if isinstance(exc, Interrupted) else "SIGINT"
