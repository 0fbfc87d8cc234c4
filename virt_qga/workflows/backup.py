"""Backups from cron: consistent snapshot, copy the now-stable base images, merge back.

For each domain, under one per-domain lock held from start to finish:

1. **Refuse leftovers.** A disk already running on a virt-qga overlay (a backup or
   snapshot that died before its commit-back) would make "the base" only part of the
   chain; the run stops there and says to run ``virt-qga snapshot DOM --commit-back``.
2. **Snapshot** with :func:`virt_qga.workflows.snapshot.snapshot` (external mode,
   freeze/thaw, thaw guard, consistency policy): from here on the guest writes to
   overlays and the base images no longer change.
3. **Copy** each base with ``qemu-img convert -O qcow2`` into
   ``DEST/DOMAIN/.SNAPNAME.partial/TARGET.qcow2``: a standalone image (the base's own
   backing chain, if any, is flattened into it), streamed by qemu-img in bounded
   memory, with a deadline. Then a ``manifest.json`` is written and the directory is
   renamed to ``DEST/DOMAIN/SNAPNAME``: a backup under its final name is complete.
4. **Merge back, always** (``finally``): the overlays are committed into their bases
   and deleted, whether the copy worked or not. If that fails, the result is
   ``inconsistent`` (exit 9) with the command that finishes it.
5. **Retention** (``keep``): after a successful backup, only the newest ``keep``
   complete backups of the domain are kept; partial directories of dead runs are
   removed too.

Many domains run one after the other (copies compete for the same disks anyway); the
exit code is aggregated by :func:`~virt_qga.workflows.fleet.aggregate_exit` so that cron
sees the worst case that needs a human: 8 (maybe frozen) before 9 (inconsistent) before 5 (some failed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from virt_qga.errors import BadInputError, HostError, OperationError, VirtQgaError, option_ref
from virt_qga.exitcodes import ExitCode
from virt_qga.options import declare, option, validate
from virt_qga.outcome import State
from virt_qga.state import state_dir
from virt_qga.workflows.fleet import aggregate_exit
from virt_qga.workflows.journal import Journal
from virt_qga.workflows.lock import DomainLock, lock_path
from virt_qga.workflows.signals import Interrupts
from virt_qga.workflows.snapshot import SnapshotOptions, commit_back, snapshot

if TYPE_CHECKING:
    from virt_qga.host import Domain

__all__ = ["BackupOptions", "BackupResult", "aggregate_exit", "backup", "backup_many", "prune"]

#: A copy in progress lives in ``.SNAPSHOT.partial``; complete backups are named by the
#: snapshot's default name (``vqga-<UTC time>Z``, sortable).
PARTIAL_SUFFIX = ".partial"


#: The snapshot options a backup offers (CLI and Ansible); the others do not apply.
SNAPSHOT_FIELDS = ("disks", "quiesce", "pre_freeze", "post_thaw", "max_frozen", "wait_lock")


@declare
@dataclass
class BackupOptions:
    """The backup's own options; the freeze and snapshot ones are :class:`SnapshotOptions`'."""

    keep: int | None = option(None, kind="int", min=1, metavar="N", help=(
        "After a successful backup keep only the newest N backups of the domain."))
    copy_timeout: float = option(3600.0, min=1, unit="seconds",
                                 help="Deadline for copying one disk, seconds.")
    #: Deadline of the merge back of the overlays.
    commit_timeout: float = 600.0


@dataclass
class BackupResult:
    """One domain's backup; ``to_dict`` is the JSON the CLI prints."""

    domain: str
    state: str = "failed"                  # done | failed | inconsistent | maybe-frozen
    directory: str | None = None
    consistency: str | None = None
    snapshot: dict[str, Any] | None = None
    disks: list[dict[str, Any]] = field(default_factory=list)
    committed: list[dict[str, Any]] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    undo: str | None = None
    warnings: list[str] = field(default_factory=list)
    exit_code: int = int(ExitCode.FAILED)

    @property
    def ok(self) -> bool:
        """A backup was made (perhaps only crash-consistent)."""
        return self.exit_code in (ExitCode.OK, ExitCode.CRASH_CONSISTENT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "ok": self.ok,
            "state": self.state, "directory": self.directory, "consistency": self.consistency,
            "disks": self.disks, "committed": self.committed, "pruned": self.pruned,
            "timings_s": self.timings_s, "error": self.error, "undo": self.undo,
            "warnings": self.warnings, "exit_code": self.exit_code, "snapshot": self.snapshot,
        }


def _qemu_img() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise HostError("qemu-img not found (Debian package qemu-utils)")
    return path


def copy_image(source: str, target: Path, timeout: float) -> dict[str, Any]:
    """``qemu-img convert -O qcow2 SOURCE TARGET`` with a deadline; returns sizes."""
    start = time.monotonic()
    try:
        proc = subprocess.run([_qemu_img(), "convert", "-O", "qcow2", source, str(target)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        target.unlink(missing_ok=True)
        raise HostError(f"copying {source} took longer than {timeout:g} s (--copy-timeout)") from exc
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise HostError(f"qemu-img convert {source} failed: {msg}")
    return {"source": source, "backup": str(target), "bytes": target.stat().st_size,
            "seconds": round(time.monotonic() - start, 3)}


def prune(domain_dir: Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` complete backups, and every partial one."""
    validate(BackupOptions(keep=keep))
    if not domain_dir.is_dir():
        return []
    from virt_qga.host.snapshots import is_default_name

    complete = sorted(p for p in domain_dir.iterdir() if p.is_dir() and is_default_name(p.name))
    partial = [p for p in domain_dir.iterdir()
               if p.is_dir() and p.name.startswith(".") and p.name.endswith(PARTIAL_SUFFIX)]
    removed = []
    for p in [*complete[:-keep], *partial]:
        shutil.rmtree(p, ignore_errors=True)
        removed.append(str(p))
    return removed


def _leftover_overlays(host: Domain, disks: tuple[str, ...]) -> list[str]:
    """The chosen disks that already run on a virt-qga overlay, as ``target (path)``."""
    from virt_qga.host import snapshots as hs

    chosen = hs.select_disks(hs.list_disks(host.xml()), disks)
    return [f"{d.target} ({d.source})" for d in chosen if hs.is_vqga_overlay(d.source)]


def backup(domain: str, uri: str | None, dest: Path, *, options: SnapshotOptions | None = None,
           keep: int | None = BackupOptions.keep, copy_timeout: float = BackupOptions.copy_timeout,
           commit_timeout: float = BackupOptions.commit_timeout) -> BackupResult:
    """Back up one domain (see the module docstring). Never raises for a per-domain
    failure: the result carries the state, the error and the exit code."""
    opts = options or SnapshotOptions()
    if opts.mode != "external":
        raise BadInputError(f"backups use external snapshots ({option_ref('mode')} external)",
                            field="mode")
    if opts.socket:
        raise BadInputError("backups need libvirt (an agent socket has no disks to copy)", field="socket")
    validate(BackupOptions(keep=keep, copy_timeout=copy_timeout))
    result = BackupResult(domain=domain)
    t0 = time.monotonic()
    with Interrupts():
        try:
            _run(result, domain, uri, dest, opts, keep, copy_timeout, commit_timeout)
        except VirtQgaError as exc:
            exc.domain = None  # the result already names the domain
            result.error = str(exc)
            result.exit_code = int(exc.exit_code)
            if isinstance(exc, OperationError):
                result.state = exc.state or result.state
                result.undo = exc.undo or result.undo
    result.timings_s["total"] = round(time.monotonic() - t0, 3)
    return result


def _run(result: BackupResult, domain: str, uri: str | None, dest: Path, opts: SnapshotOptions,
         keep: int | None, copy_timeout: float, commit_timeout: float) -> None:
    from virt_qga.host import Domain

    host = Domain.lookup(domain, uri)
    base_dir = opts.state_dir or state_dir()
    journal = Journal.for_domain(host.uri, host.name, str(host.dom.UUIDString()), base=base_dir)
    with DomainLock(lock_path(base_dir, journal.key), domain=host.name, operation="backup",
                    wait=opts.wait_lock) as lock:
        _locked(result, host, uri, dest, opts, lock, keep, copy_timeout, commit_timeout)


def _locked(result: BackupResult, host: Domain, uri: str | None, dest: Path, opts: SnapshotOptions,
            lock: DomainLock, keep: int | None, copy_timeout: float, commit_timeout: float) -> None:
    name = host.name
    leftovers = _leftover_overlays(host, opts.disks)
    if leftovers:
        raise OperationError(
            f"disk(s) {', '.join(leftovers)} already run on a virt-qga overlay (a run that died "
            f"before its commit-back); a backup now would copy only part of the chain. Run "
            f"`virt-qga snapshot {name} --commit-back` first", state=State.INCONSISTENT, domain=name,
            undo=f"virt-qga snapshot {name} --commit-back")
    domain_dir = dest / name
    try:
        domain_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot create backup directory {domain_dir}: {exc.strerror}",
                            field="dest", domain=name) from exc
    if not os.access(domain_dir, os.W_OK | os.X_OK):
        raise BadInputError(f"backup directory {domain_dir} is not writable", field="dest", domain=name)
    for stale in domain_dir.glob(f".*{PARTIAL_SUFFIX}"):  # a run that died mid-copy (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
        result.warnings.append(f"removed the partial backup {stale} of a run that died")

    t = time.monotonic()
    snap = snapshot(name, uri, options=replace(opts, held_lock=lock))
    result.timings_s["snapshot"] = round(time.monotonic() - t, 3)
    result.snapshot = snap.to_dict()
    result.consistency = snap.consistency
    result.warnings.extend(snap.warnings)
    targets = tuple(o["target"] for o in snap.overlays)
    partial = domain_dir / f".{snap.name}{PARTIAL_SUFFIX}"
    copy_error: VirtQgaError | None = None
    try:
        t = time.monotonic()
        partial.mkdir()
        for ov in snap.overlays:
            result.disks.append({"target": ov["target"],
                                 **copy_image(ov["base"], partial / f"{ov['target']}.qcow2", copy_timeout)})
        (partial / "manifest.json").write_text(json.dumps({
            "domain": name, "snapshot": snap.name, "consistency": snap.consistency,
            "consistency_reason": snap.consistency_reason, "disks": result.disks,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        final = domain_dir / snap.name
        os.rename(partial, final)
        result.directory = str(final)
        for d in result.disks:
            d["backup"] = str(final / Path(d["backup"]).name)
        result.timings_s["copy"] = round(time.monotonic() - t, 3)
    except (VirtQgaError, OSError) as exc:
        copy_error = exc if isinstance(exc, VirtQgaError) else HostError(f"copy failed: {exc}")
    finally:
        t = time.monotonic()
        try:
            if partial.exists():  # failed or interrupted mid-copy: no half backup is left behind
                shutil.rmtree(partial, ignore_errors=True)
            if targets:
                result.committed = commit_back(name, uri, disks=targets, timeout=commit_timeout,
                                               state_dir_=opts.state_dir, held_lock=lock)
        except VirtQgaError as exc:
            raise OperationError(
                f"merging the overlays back failed: {exc}" + (f" (and the copy failed: {copy_error})"
                                                              if copy_error else ""),
                state=State.INCONSISTENT, domain=name,
                undo=f"virt-qga snapshot {name} --commit-back") from exc
        result.timings_s["commit_back"] = round(time.monotonic() - t, 3)
    if copy_error is not None:
        raise copy_error
    if keep is not None:
        result.pruned = prune(domain_dir, keep)
    result.state = "done"
    result.exit_code = int(snap.exit_code)


def backup_many(domains: list[str], uri: str | None, dest: Path, **kw: Any) -> tuple[list[BackupResult], int]:
    """:func:`backup` for each domain in turn; returns the results and the aggregated
    exit code (:func:`aggregate_exit`)."""
    results = [backup(d, uri, dest, **kw) for d in domains]
    return results, aggregate_exit([r.exit_code for r in results])
