"""One domain's backup from start to end, under one lock held throughout:

1. clean up what a dead run left (its backup journal, partial directories);
2. decide the method and the level, each with a reason (:mod:`.plan`);
3. write the backup into a partial directory with the method (:mod:`.api`,
   :mod:`.via_snapshot`, :mod:`.offline`), checksum each image, save the domain XML and
   the manifest, and rename the directory to its final name: a final name means complete;
4. drop checkpoints no chain needs any more, then apply retention.

Every phase is in the backup journal, so ``recover`` and the next run can undo what a
killed run left. A per-domain failure never raises: the :class:`BackupResult` carries
the state, the error and the exit code (a signal does raise, after the cleanup).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError, OperationError, VirtQgaError, option_ref
from virt_qga.outcome import State
from virt_qga.workflows.backup.job import BackupJob, Progress
from virt_qga.workflows.backup.options import BackupOptions
from virt_qga.workflows.backup.plan import Facts, choose_level, choose_method
from virt_qga.workflows.backup.result import BackupResult
from virt_qga.workflows.backup.store import (
    CHECKPOINT_XML,
    DOMAIN_XML,
    Manifest,
    Store,
    backup_name,
    iso_time,
    sha256_file,
)
from virt_qga.workflows.signals import Interrupts

if TYPE_CHECKING:
    from virt_qga.host import Domain
    from virt_qga.workflows.journal import Journal
    from virt_qga.workflows.lock import DomainLock
    from virt_qga.workflows.snapshot import SnapshotOptions

__all__ = ["backup", "check_destination"]

Clock = Callable[[], datetime]


def backup(domain: str, uri: str | None, dest: Path, *, options: SnapshotOptions | None = None,
           backup_options: BackupOptions | None = None, progress: Progress | None = None,
           clock: Clock | None = None) -> BackupResult:
    """Back up one domain into the store at ``dest`` (see the module docstring).

    ``options`` are the freeze options (:class:`~virt_qga.workflows.snapshot.SnapshotOptions`),
    ``backup_options`` the backup's own; ``clock`` gives the backup's time (tests of
    retention inject one). Bad input raises BadInputError before anything is touched.
    """
    from virt_qga.workflows.snapshot import SnapshotOptions

    snap = options or SnapshotOptions()
    opts = backup_options or BackupOptions()
    if snap.socket:
        raise BadInputError("backups need libvirt (an agent socket has no disks to copy)", field="socket")
    snap.validate()
    opts.validate()
    if snap.mode != "external":
        raise BadInputError(f"a backup chooses its own snapshot kind; leave {option_ref('mode')} "
                            "at its default", field="mode")
    result = BackupResult(domain=domain)
    t0 = time.monotonic()
    with Interrupts() as signals:
        try:
            _run(result, domain, uri, Store(dest), snap, opts, progress, clock or _utcnow, signals)
        except VirtQgaError as exc:
            exc.domain = None  # the result already names the domain
            result.error = str(exc)
            result.exit_code = int(exc.exit_code)
            if isinstance(exc, OperationError):
                result.state = exc.state
                result.undo = exc.undo or result.undo
            elif isinstance(exc, BadInputError):
                result.state = State.NOTHING_DONE
    result.timings_s["total"] = round(time.monotonic() - t0, 3)
    return result


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _run(result: BackupResult, domain: str, uri: str | None, store: Store, snap: SnapshotOptions,
         opts: BackupOptions, progress: Progress | None, clock: Clock, signals: Interrupts) -> None:
    from virt_qga.host import Domain
    from virt_qga.state import state_dir
    from virt_qga.workflows.journal import Journal, domain_key
    from virt_qga.workflows.lock import DomainLock, lock_path

    host = Domain.lookup(domain, uri)
    result.domain = host.name
    check_destination(store.domain_dir(host.name))
    base = snap.state_dir or state_dir()
    uuid = str(host.dom.UUIDString())
    journal = Journal.for_domain(host.uri, host.name, uuid, base=base, kind="backup")
    with DomainLock(lock_path(base, domain_key(host.uri, host.name, uuid)), domain=host.name,
                    operation="backup", wait=snap.wait_lock) as lock:
        _clean_leftovers(result, host, store, journal, lock, base)
        now = clock()
        job = BackupJob(host=host, uri=uri, store=store, snap=snap, opts=opts, lock=lock,
                        journal=journal, result=result, name=_free_name(store, host, now),
                        started=now, progress=progress)
        _decide(job)
        journal.begin(domain=host.name, uri=host.uri, uuid=uuid, operation="backup", data={
            "method": result.method, "level": job.level, "chain": job.chain, "name": job.name,
            "partial": str(job.partial_path()), "store": str(store.root)})
        try:
            _write(job)
        except BaseException:
            signals.hold()  # a second signal must not cut the cleanup short
            _after_failure(job)
            raise
        journal.remove()


def _clean_leftovers(result: BackupResult, host: Domain, store: Store, journal: Journal,
                     lock: DomainLock, base: Path) -> None:
    """A dead run's journal and partial directories: clean up before anything else."""
    from virt_qga.workflows.backup.recovery import clean_dead_backup

    _clean_dead_snapshot(result, host, lock, base)
    st = journal.load()
    if st is not None:
        done = clean_dead_backup(host, st, lock=lock, state_dir=base)
        for a in done.actions:
            result.warnings.append(f"a dead backup run (pid {st.pid}) left work behind: {a}")
        if not done.complete:
            raise OperationError(f"a dead backup run (pid {st.pid}) left what cannot be undone here: "
                                 + "; ".join(done.problems), state=State.INCONSISTENT, domain=host.name,
                                 undo=f"virt-qga recover {host.name}")
        journal.remove()
    for stale in store.stale_partials(host.name):
        shutil.rmtree(stale, ignore_errors=True)
        result.warnings.append(f"removed the partial backup {stale} of a run that died")
    _refuse_foreign_overlays(host)


def _clean_dead_snapshot(result: BackupResult, host: Domain, lock: DomainLock, base: Path) -> None:
    """A snapshot journal whose owner died (a backup killed while it froze the guest):
    thaw and clean up as ``recover`` would, or stop with what is left."""
    from virt_qga.workflows.journal import Journal
    from virt_qga.workflows.recover import RecoverReport, recover_dead_snapshot
    from virt_qga.workflows.target import Target

    journal = Journal.for_domain(host.uri, host.name, str(host.dom.UUIDString()), base=base)
    st = journal.load()
    if st is None or st.owner_alive:
        return  # none, or a live job: the snapshot inside this backup will say it is busy
    report = RecoverReport(domain=host.name, uri=host.uri)
    recover_dead_snapshot(report, host, Target(host.name, host.uri).agent(10.0), journal, st)
    result.warnings += [f"a dead {st.operation} run (pid {st.pid}) left work behind: {a}"
                        for a in report.actions]
    if report.problems:
        raise OperationError(f"a dead {st.operation} run (pid {st.pid}) left what cannot be undone "
                             "here: " + "; ".join(report.problems), state=State.STALE_JOURNAL,
                             cause=State.MAYBE_FROZEN, domain=host.name,
                             undo=f"virt-qga recover {host.name}")


def _after_failure(job: BackupJob) -> None:
    """Undo what the failed run made, with the same steps ``recover`` takes after a dead
    run; the journal goes only when nothing is left (else ``recover`` finds it)."""
    from virt_qga.workflows.backup.recovery import clean_dead_backup

    st = job.journal.state
    if st is None:
        return
    try:
        done = clean_dead_backup(job.host, st, lock=job.lock, state_dir=job.snap.state_dir)
    except VirtQgaError as exc:
        job.result.warnings.append(f"cleanup after the failure failed: {exc}; run "
                                   f"`virt-qga recover {job.domain}`")
        job.result.undo = job.result.undo or f"virt-qga recover {job.domain}"
        return
    if done.complete:
        job.journal.remove()
        return
    job.result.warnings += [f"left after the failure: {p}" for p in done.problems]
    job.result.undo = job.result.undo or f"virt-qga recover {job.domain}"


def _refuse_foreign_overlays(host: Domain) -> None:
    from virt_qga.workflows.snapshot import overlays_to_commit

    left = overlays_to_commit(host)
    if left:
        names = ", ".join(f"{o['target']} ({o['overlay']})" for o in left)
        raise OperationError(
            f"disk(s) {names} run on a virt-qga overlay that no backup journal accounts for (a "
            f"snapshot left in place, or a run that died before its commit-back); a backup now would "
            f"miss the overlay's data. Run `virt-qga snapshot {host.name} --commit-back` first",
            state=State.INCONSISTENT, domain=host.name, undo=f"virt-qga snapshot {host.name} --commit-back")


def _free_name(store: Store, host: Domain, now: datetime) -> str:
    """This backup's name: its start second, or the next free second when a backup of
    that second exists in the store, or its checkpoint in libvirt (a backup into another
    store). Names keep one format, so they sort as text in time order; the manifest
    keeps the exact start time."""
    from virt_qga.host import backup as hb
    from virt_qga.workflows.backup.api import CHECKPOINT_PREFIX

    taken = {b.name for c in store.chains(host.name) for b in c.backups}
    if host.state() == "running":
        taken |= {n.removeprefix(CHECKPOINT_PREFIX) for n in hb.checkpoint_names(host)}
    second = 0
    while (name := backup_name(now + timedelta(seconds=second))) in taken:
        second += 1
    return name


def _decide(job: BackupJob) -> None:
    from virt_qga.host import backup as hb
    from virt_qga.host import snapshots as hs

    host, result = job.host, job.result
    job.disks = hs.select_disks(hs.list_disks(host.xml()), job.snap.disks)
    chain = job.store.latest_chain(host.name)
    running = host.state() == "running"
    facts = Facts(running=running, backup_api=running and hb.supports_backup(host),
                  local=hs.is_local_uri(host.uri), targets=[d.target for d in job.disks],
                  sources={d.target: d.source for d in job.disks},
                  formats={d.target: d.driver_type for d in job.disks},
                  file_disks=all(d.source_type == "file" for d in job.disks), chain=chain)
    method = choose_method(job.opts.method, facts)
    result.method, result.method_reason = method.value, method.reason
    if method.value == "backup-api" and chain is not None and chain.last is not None:
        _check_checkpoint(job, facts)
    level = choose_level(job.opts.level, method.value, facts, job.opts.full_every)
    job.level = level.value
    result.level, result.level_reason = level.value, level.reason
    if job.level == "inc":
        assert chain is not None
        job.chain, job.parent = chain.name, chain.last
        result.chain_length = len(chain.backups) + 1
    else:
        job.chain = job.name
        result.chain_length = 1
    result.chain, result.name = job.chain, job.name


def _check_checkpoint(job: BackupJob, facts: Facts) -> None:
    """Is the chain's last checkpoint usable? Redefine it from the backup's copy when
    libvirt lost its metadata; look at QEMU's bitmaps."""
    from virt_qga.host import backup as hb

    assert facts.chain is not None and facts.chain.last is not None
    last = facts.chain.last
    name = last.manifest.checkpoint
    if not name:
        return
    if hb.checkpoint_exists(job.host, name):
        facts.checkpoint_known = True
    elif last.manifest.checkpoint_xml and (last.path / last.manifest.checkpoint_xml).is_file():
        try:
            hb.redefine_checkpoint(job.host, (last.path / last.manifest.checkpoint_xml).read_text())
            facts.checkpoint_known = facts.checkpoint_redefined = True
            job.result.warnings.append(f"libvirt had lost checkpoint {name}; redefined it from "
                                       f"{last.path / last.manifest.checkpoint_xml}")
        except VirtQgaError as exc:
            facts.checkpoint_problem = f"libvirt lost checkpoint {name} and it cannot be redefined ({exc})"
    else:
        facts.checkpoint_problem = f"libvirt does not know checkpoint {name} and the backup kept no copy"
    if facts.checkpoint_known:
        targets = [d.target for d in last.manifest.disks if d.checkpoint]
        facts.bitmap_problems = hb.bitmap_problems(job.host, name, targets)


def _write(job: BackupJob) -> None:
    from virt_qga.connection import import_libvirt
    from virt_qga.workflows.backup.api import drop_older_checkpoints, run_api
    from virt_qga.workflows.backup.offline import run_offline
    from virt_qga.workflows.backup.via_snapshot import run_snapshot

    runners = {"backup-api": run_api, "snapshot": run_snapshot, "offline": run_offline}
    result, store = job.result, job.store
    t = time.monotonic()
    with store.writing(job.domain, job.chain, job.name) as partial:
        runners[str(result.method)](job, partial)
        lv = import_libvirt()
        flags = lv.VIR_DOMAIN_XML_INACTIVE if job.host.dom.isPersistent() else 0
        (partial / DOMAIN_XML).write_text(str(job.host.call("XMLDesc", flags)))
        t_sum = time.monotonic()
        for rec in job.records:
            path = partial / rec.file
            rec.sha256 = sha256_file(path)
            rec.file_size = path.stat().st_size
        result.timings_s["checksum"] = round(time.monotonic() - t_sum, 3)
        finished = job.started + timedelta(seconds=time.monotonic() - t)
        manifest = Manifest(
            domain=job.domain, name=job.name, chain=job.chain, level=job.level, method=str(result.method),
            consistency=result.consistency or "crash", started=iso_time(job.started),
            finished=iso_time(finished),
            uuid=str(job.host.dom.UUIDString()), uri=job.host.uri,
            parent=job.parent.name if job.parent else None, checkpoint=job.checkpoint,
            consistency_reason=result.consistency_reason, level_reason=result.level_reason,
            frozen_window_ms=result.frozen_window_ms, duration_s=round(time.monotonic() - t, 3),
            disks=job.records, checkpoint_xml=CHECKPOINT_XML if job.checkpoint else None)
        manifest.write(partial)
        job.manifest = manifest
    final = partial.parent / job.name
    job.note(step="final", final=str(final))
    result.directory = str(final)
    result.disks = [{**r.__dict__, "path": str(final / r.file)} for r in job.records]
    result.bytes_written = sum(r.bytes_written for r in job.records)
    result.finished_at = finished.timestamp()
    if result.method == "backup-api" or job.host.state() == "running":
        try:
            dropped = drop_older_checkpoints(job)
        except VirtQgaError as exc:
            job.result.warnings.append(f"could not list checkpoints: {exc}")
            dropped = []
        result.dropped_checkpoints = dropped
    from virt_qga.workflows.backup.retention import policy_of, prune_domain

    policy = policy_of(job.opts)
    if policy.active:
        done = prune_domain(store, job.domain, policy, host=job.host)
        result.pruned = done.removed_chains
        result.retention = done.to_dict()
    result.state = State.DONE


def check_destination(dest: Path) -> None:
    """The store directory can be created and written (checked before any domain)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot create backup directory {dest}: {exc.strerror}", field="dest") from exc
    if not dest.is_dir() or not os.access(dest, os.W_OK | os.X_OK):
        raise BadInputError(f"backup directory {dest} is not a writable directory", field="dest")
