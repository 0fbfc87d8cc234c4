"""Pre-checks of a snapshot, before anything is frozen or created: the domain's state,
the agent (answers, can freeze, not already frozen, mountpoints exist) and a journal
left by a run that died."""

from __future__ import annotations

from virt_qga.errors import (
    BadInputError,
    CommandNotSupportedError,
    DomainNotRunningError,
    LockBusyError,
    OperationError,
    option_ref,
)
from virt_qga.outcome import State
from virt_qga.workflows.journal import Journal, maybe_frozen
from virt_qga.workflows.snapshot.job import Job
from virt_qga.workflows.snapshot.options import FREEZE_COMMANDS

__all__ = ["check_agent", "check_domain_state", "check_stale"]


def check_domain_state(job: Job) -> str | None:
    """None if running; a reason not to freeze if paused (and allowed)."""
    if job.host is None:
        return None
    state = job.host.state()
    if state == "running":
        return None
    if state == "paused":
        if job.opts.quiesce == "required":
            raise DomainNotRunningError(
                "domain is paused: its agent cannot freeze filesystems. Resume it, or pass "
                f"{option_ref('quiesce')} preferred for a crash-consistent snapshot of the paused "
                "domain", domain=job.label, state=state)
        return "domain is paused: no freeze possible"
    raise DomainNotRunningError(f"domain is {state}, not running; nothing to freeze "
                                "(use virsh for snapshots of stopped domains)",
                                domain=job.label, state=state)


def check_agent(job: Job) -> None:
    """Agent answers, supports freezing, guest not already frozen, mountpoints exist."""
    agent = job.open_agent()
    agent.ping()
    caps = agent.capabilities(refresh=True)
    needed = list(FREEZE_COMMANDS)
    if job.opts.mountpoints:
        needed.append("guest-fsfreeze-freeze-list")
    if job.opts.pre_freeze or job.opts.post_thaw:
        needed += ["guest-exec", "guest-exec-status"]
    missing = [c for c in needed if not caps.knows(c)]
    status = agent.fsfreeze_status() if caps.knows("guest-fsfreeze-status") else "thawed"
    if status == "frozen":
        if not job.opts.force_thaw_first:
            raise OperationError(
                "guest filesystems are already frozen (by another tool, or a run that died); "
                f"refusing to snapshot. Thaw with `virt-qga recover DOMAIN`, or pass "
                f"{option_ref('force_thaw_first')}", state=State.FROZEN,
                undo=f"virt-qga recover {job.label}", domain=job.label)
        n = agent.fsfreeze_thaw()
        if agent.fsfreeze_status() != "thawed":
            raise OperationError(f"guest was frozen and the thaw did not take "
                                 f"({option_ref('force_thaw_first')})", state=State.FROZEN,
                                 domain=job.label)
        job.warn(f"guest was frozen before the snapshot; thawed {n} filesystem(s) first "
                 f"({option_ref('force_thaw_first')})")
        caps = agent.capabilities(refresh=True)
    disabled = [c for c in needed if caps.knows(c) and not caps.enabled(c)]
    if missing or disabled:
        what = ", ".join(missing + disabled)
        raise CommandNotSupportedError(
            f"the agent (qemu-ga {caps.version}) lacks or disables {what}; it cannot freeze",
            domain=job.label, agent_version=caps.version)
    if job.opts.mountpoints:
        mounted = {str(fs.get("mountpoint")) for fs in agent.get_fsinfo()}
        unknown = [m for m in job.opts.mountpoints if m not in mounted]
        if unknown:
            raise BadInputError(f"not mounted in the guest: {', '.join(unknown)} (mounted: "
                                f"{', '.join(sorted(mounted))})", field="mountpoints",
                                domain=job.label)


def check_stale(job: Job, journal: Journal) -> None:
    """Refuse to start over the journal of a run that is still going or died."""
    st = journal.load()
    if st is None:
        return
    if st.owner_alive:
        raise LockBusyError(f"a {st.operation} job (pid {st.pid}) is in progress on this domain",
                            domain=job.label)
    left = State.MAYBE_FROZEN if maybe_frozen(st.phase) else State.INCONSISTENT
    raise OperationError(
        f"a previous {st.operation} (pid {st.pid}) died in phase '{st.phase}'; run "
        f"`virt-qga recover {job.label}` first", state=State.STALE_JOURNAL, cause=left,
        undo=f"virt-qga recover {job.label}", domain=job.label)
