"""``recover``: thaw and report what a dead snapshot or backup run left behind.

For one domain (or every domain with a journal, ``--all``):

1. take the domain's lock (a thaw guard still at work holds it; we wait for it);
2. read the journal, if any, and the guard's events;
3. ask the agent: frozen? then thaw and confirm (done even without a journal: a
   frozen guest with nothing to explain it is exactly what recover is for);
4. look at what the run planned: an external overlay that is the disk's active image
   means the snapshot completed (reported with the command that undoes it); a planned
   overlay file that exists but is not in use is a half-made overlay and is removed;
   an internal snapshot that exists is reported; a host command's effect is unknown
   and reported as such;
5. a dead *backup* run (its own journal, ``<key>.backup.json``): abort its job, delete
   the checkpoint of a backup that never completed, remove its partial directory and
   merge the snapshot method's overlays back (:mod:`virt_qga.workflows.backup.recovery`);
6. without any journal, still look: a disk on a virt-qga overlay or a backup job
   running is reported with the command that deals with it, never "nothing left";
7. remove each journal once nothing is left in doubt.

A dry run (``dry_run=True``, Ansible's check mode) reads the same things and says what
it would do ("would thaw ...") without doing it. ``changed`` says whether anything was
(or, in a dry run, would be) done: thawing, removing a file or a journal, cleaning up
a dead backup. Leftovers that only get reported change nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virt_qga.errors import VirtQgaError
from virt_qga.exitcodes import ExitCode
from virt_qga.options import declare, option
from virt_qga.workflows.journal import Journal, JournalState, maybe_frozen, state_dir
from virt_qga.workflows.lock import DomainLock, lock_path

__all__ = ["RecoverOptions", "RecoverReport", "recover", "recover_all", "recover_dead_snapshot"]


@declare
@dataclass(frozen=True)
class RecoverOptions:
    """The options of ``recover`` that the CLI and the Ansible module share."""

    wait_lock: float = option(70.0, min=0, unit="seconds", help=(
        "Wait this long for another virt-qga job on the domain (a thaw guard still at work "
        "holds the lock) before giving up with exit 10."))


@dataclass
class RecoverReport:
    domain: str
    uri: str | None
    journal: dict[str, Any] | None = None
    backup_journal: dict[str, Any] | None = None
    frozen_before: bool | None = None
    thawed: int | None = None
    actions: list[str] = field(default_factory=list)
    leftovers: list[dict[str, str]] = field(default_factory=list)
    guard_events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    exit_code: int = int(ExitCode.OK)
    dry_run: bool = False
    changed: bool = False

    def did(self, what: str) -> None:
        """Record an action that changed something."""
        self.actions.append(what)
        self.changed = True

    def would(self, what: str) -> None:
        """Record, in a dry run, an action that would change something."""
        self.actions.append(f"would {what}")
        self.changed = True

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "uri": self.uri, "journal": self.journal,
                "backup_journal": self.backup_journal,
                "frozen_before": self.frozen_before, "thawed": self.thawed, "actions": self.actions,
                "leftovers": self.leftovers, "guard_events": self.guard_events,
                "problems": self.problems, "exit_code": self.exit_code, "dry_run": self.dry_run,
                "changed": self.changed}


def _thaw(report: RecoverReport, agent: Any, st: JournalState | None) -> None:
    try:
        status = agent.fsfreeze_status()
        report.frozen_before = status == "frozen"
        if report.frozen_before and report.dry_run:
            report.would("thaw the guest")
        elif report.frozen_before:
            report.changed = True
            report.thawed = int(agent.fsfreeze_thaw())
            if agent.fsfreeze_status() == "thawed":
                report.actions.append(f"thawed the guest ({report.thawed} filesystem(s))")
            else:
                report.problems.append("thaw sent but the guest still reports frozen")
                report.exit_code = int(ExitCode.MAYBE_FROZEN)
        else:
            report.actions.append("guest is not frozen")
    except VirtQgaError as exc:
        if st is not None and not maybe_frozen(st.phase) and not st.data.get("freeze", True):
            report.actions.append(f"agent not usable ({exc}); the run never froze")
            return
        report.problems.append(f"cannot check or thaw the freeze state: {exc}")
        report.exit_code = int(ExitCode.MAYBE_FROZEN)


def _leftovers(report: RecoverReport, host: Any, st: JournalState) -> None:
    from virt_qga.host import snapshots as hs

    mode = st.data.get("mode")
    name = str(st.data.get("name", ""))
    if mode == "external" and host is not None:
        active = hs.active_sources(host)
        local = hs.is_local_uri(host.uri)
        for ov in st.data.get("planned_overlays", []):
            target, overlay = ov.get("target"), ov.get("overlay")
            if active.get(target) == overlay:
                report.leftovers.append({
                    "kind": "overlay-active", "target": target, "overlay": overlay,
                    "note": f"snapshot {name} completed: {target} runs on {overlay}; keep it, or "
                            f"undo with: virt-qga snapshot {report.domain} --commit-back --disk {target}"})
            elif overlay and local and os.path.exists(overlay) and report.dry_run:
                report.would(f"remove half-made overlay {overlay}")
            elif overlay and local and os.path.exists(overlay):
                try:
                    os.unlink(overlay)
                    report.did(f"removed half-made overlay {overlay}")
                except OSError as exc:
                    report.problems.append(f"cannot remove half-made overlay {overlay}: {exc.strerror}")
                    report.leftovers.append({"kind": "overlay-unused", "target": target,
                                             "overlay": overlay, "note": f"rm {overlay}"})
    elif mode == "internal" and host is not None:
        try:
            host.dom.snapshotLookupByName(name, 0)
            report.leftovers.append({"kind": "internal-snapshot", "name": name,
                                     "note": f"internal snapshot {name} exists; delete with: virsh "
                                             f"snapshot-delete {report.domain} {name}"})
        except Exception:  # libvirtError: no such snapshot
            pass
    elif mode == "command" and st.data.get("command"):  # None: a backup's frozen step (its own journal)
        report.leftovers.append({"kind": "command", "command": str(st.data.get("command")),
                                 "note": "the host snapshot command may or may not have run; check "
                                         "its target"})


def recover(domain: str, uri: str | None = None, *, socket: str | None = None,
            timeout: float = 10.0, wait_lock: float = 70.0,
            state_dir_: Path | None = None, dry_run: bool = False) -> RecoverReport:
    """Thaw ``domain`` if frozen and clean up after a dead snapshot run (see module doc);
    ``dry_run``: only say what would be done."""
    from virt_qga.workflows.target import Target

    base = state_dir_ or state_dir()
    target = Target.resolve(domain, uri=uri, socket=socket)
    host: Any = None if target.via_socket else target.domain("recover")
    key_uri, name, uuid = target.journal_identity(host)
    agent = (target if host is None else Target(name, uri)).agent(timeout)
    journal = Journal.for_domain(key_uri, name, uuid, base=base)
    report = RecoverReport(domain=name, uri=None if socket else key_uri, dry_run=dry_run)
    with DomainLock(lock_path(base, journal.key), domain=name, operation="recover",
                    wait=wait_lock) as lock:
        st = journal.load()
        if st is not None:
            report.journal = {"operation": st.operation, "phase": st.phase, "pid": st.pid,
                              "owner_alive": st.owner_alive, "mode": st.data.get("mode"),
                              "snapshot": st.data.get("name")}
            report.guard_events = [e for e in st.events if str(e.get("event", "")).startswith("guard")]
            if st.owner_alive:
                report.problems.append(f"the job (pid {st.pid}) is still running; not touching it")
                report.exit_code = int(ExitCode.LOCKED)
                return report
        recover_dead_snapshot(report, host, agent, journal, st)
        backup_journal = Journal.for_domain(key_uri, name, uuid, base=base, kind="backup")
        bst = backup_journal.load() if host is not None else None
        if bst is not None:
            _dead_backup(report, host, backup_journal, bst, lock, base)
        if host is not None:
            _unexplained(report, host, journal_seen=st is not None or bst is not None)
        if st is None and bst is None and not report.problems and not report.leftovers:
            report.actions.append("no journal, no overlay, no backup job: no run left anything behind")
    if report.problems and report.exit_code == ExitCode.OK:
        report.exit_code = int(ExitCode.INCONSISTENT)
    return report


def recover_dead_snapshot(report: RecoverReport, host: Any, agent: Any, journal: Journal,
                          st: JournalState | None) -> None:
    """Thaw if frozen, then deal with what the dead snapshot run of ``st`` planned, and
    remove its journal when nothing is left in doubt (the caller holds the lock)."""
    host_state = host.state() if host is not None else "running"
    if host_state == "running":
        _thaw(report, agent, st)
    else:
        report.actions.append(f"domain is {host_state}: no agent to ask")
    if st is not None:
        _leftovers(report, host, st)
        if not report.problems:
            what = f"the journal of the dead run (pid {st.pid}, phase {st.phase})"
            if report.dry_run:
                report.would(f"remove {what}")
            else:
                journal.remove()
                report.did(f"removed {what}")


def _dead_backup(report: RecoverReport, host: Any, journal: Journal, st: JournalState,
                 lock: DomainLock, base: Path) -> None:
    from virt_qga.workflows.backup.recovery import clean_dead_backup

    report.backup_journal = {"operation": st.operation, "pid": st.pid, "owner_alive": st.owner_alive,
                             "step": st.data.get("step"), "method": st.data.get("method"),
                             "name": st.data.get("name")}
    if st.owner_alive:
        report.problems.append(f"the backup (pid {st.pid}) is still running; not touching it")
        report.exit_code = int(ExitCode.LOCKED)
        return
    if report.dry_run:
        report.would(f"clean up after the dead backup run (pid {st.pid}, step {st.data.get('step')})")
        return
    report.changed = True
    done = clean_dead_backup(host, st, lock=lock, state_dir=base)
    report.actions += done.actions
    report.problems += done.problems
    if done.complete:
        journal.remove()
        report.did(f"removed the journal of the dead backup run (pid {st.pid})")


def _unexplained(report: RecoverReport, host: Any, *, journal_seen: bool) -> None:
    """What no journal accounts for: say it, with the command that deals with it."""
    from virt_qga.host import backup as hb
    from virt_qga.workflows.snapshot import overlays_to_commit

    try:
        overlays = overlays_to_commit(host)
        job = host.state() == "running" and hb.backup_job_running(host)
    except VirtQgaError as exc:
        report.problems.append(f"cannot inspect the domain's disks and jobs: {exc}")
        return
    explained = {lo.get("overlay") for lo in report.leftovers}  # a journal's, with its own note
    for o in overlays:
        if o["overlay"] in explained:
            continue
        report.leftovers.append({"kind": "overlay", "target": o["target"], "overlay": o["overlay"],
                                 "note": f"disk {o['target']} runs on the virt-qga overlay {o['overlay']}"
                                         f"; merge it back with: virt-qga snapshot {report.domain} "
                                         "--commit-back"})
    if job and not journal_seen:
        report.leftovers.append({"kind": "backup-job", "note": "a backup job runs on the domain and "
                                 f"no virt-qga run owns it; stop it with: virsh domjobabort {report.domain}"})


def recover_all(uri: str | None = None, *, timeout: float = 10.0, wait_lock: float = 70.0,
                state_dir_: Path | None = None) -> list[RecoverReport]:
    """Recover every domain that has a journal (any URI recorded in it)."""
    base = state_dir_ or state_dir()
    out: list[RecoverReport] = []
    folder = base / "journal"
    keys = sorted({p.stem.removesuffix(".backup") for p in folder.glob("*.json")}) if folder.is_dir() else []
    for key in keys:
        j = Journal(folder, key) if (folder / f"{key}.json").exists() else Journal(folder, f"{key}.backup")
        try:
            st = j.load()
        except VirtQgaError as exc:
            out.append(RecoverReport(domain=key, uri=None, problems=[str(exc)],
                                     exit_code=int(ExitCode.INCONSISTENT)))
            continue
        if st is None:
            continue
        socket = st.uri[5:] if st.uri.startswith("unix:") else None
        try:
            out.append(recover(st.uuid or st.domain, None if socket else (uri or st.uri),
                               socket=socket, timeout=timeout, wait_lock=wait_lock, state_dir_=base))
        except VirtQgaError as exc:
            out.append(RecoverReport(domain=st.domain, uri=st.uri, problems=[str(exc)],
                                     exit_code=int(exc.exit_code)))
    return out
