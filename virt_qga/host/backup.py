"""libvirt's backup API and checkpoints: every backupBegin/checkpoint call lives here.

Push mode only: libvirt (QEMU) writes each disk's data into a target file we created
(``REUSE_EXTERNAL``), so an incremental's target can have the previous backup as its
backing file and be usable on its own chain (without ``REUSE_EXTERNAL`` libvirt makes
the target itself, backed by the *live* disk). A checkpoint records a dirty bitmap per
disk in the qcow2 image; the next incremental copies what the bitmap says changed.

What can go wrong, and how it is seen here:

* libvirt lost a checkpoint's metadata (redefined domain, lost state dir) while the
  bitmap is still in the image: :func:`redefine_checkpoint` puts the saved XML back;
* QEMU marks a bitmap ``inconsistent`` (QEMU died while it was in use): it cannot serve
  an incremental; :func:`bitmap_problems` says so and the workflow starts a new chain;
* the job fails or is aborted: :func:`wait_job` raises with libvirt's own message;
* the domain stops during the job (shut down, destroyed, crashed): DomainNotRunningError;
* libvirtd restarts during the job: :func:`wait_job` reconnects and keeps waiting
  (libvirt re-attaches to the running job; the job goes on in QEMU meanwhile).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virt_qga.connection import import_libvirt
from virt_qga.errors import AgentTimeoutError, DomainNotRunningError, HostError
from virt_qga.libvirt_errors import map_libvirt_error

if TYPE_CHECKING:
    from virt_qga.host import Domain

__all__ = [
    "BackupDisk",
    "JobProgress",
    "abort_job",
    "backup_job_running",
    "backup_xml",
    "begin",
    "bitmap_problems",
    "checkpoint_exists",
    "checkpoint_names",
    "checkpoint_xml",
    "delete_checkpoint",
    "get_checkpoint_xml",
    "redefine_checkpoint",
    "supports_backup",
    "wait_job",
]

#: Poll interval of a running backup job.
JOB_POLL = 0.1


@dataclass(frozen=True)
class BackupDisk:
    """One disk of a push-mode backup."""

    target: str              # vda
    file: str                # the target file (created beforehand)
    incremental: bool        # copy only what changed since the checkpoint
    checkpoint: bool         # record a bitmap for the next incremental (qcow2 only)


def supports_backup(host: Domain) -> bool:
    """``<backup supported='yes'/>`` in the domain capabilities of this domain's QEMU."""
    root = host.xml()
    emulator = root.findtext("./devices/emulator")
    os_el = root.find("./os/type")
    arch = os_el.get("arch") if os_el is not None else None
    machine = os_el.get("machine") if os_el is not None else None
    virt = root.get("type")
    try:
        caps = host.conn.getDomainCapabilities(emulator, arch, machine, virt, 0)
    except import_libvirt().libvirtError as exc:
        raise map_libvirt_error(exc, domain=host.name) from exc
    el = ET.fromstring(caps).find("./features/backup")
    return el is not None and el.get("supported") == "yes"


def checkpoint_xml(name: str, disks: list[BackupDisk], all_targets: list[str]) -> str:
    """A checkpoint with a bitmap for each checkpointed disk and none for the others."""
    root = ET.Element("domaincheckpoint")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = "virt-qga backup"
    el = ET.SubElement(root, "disks")
    wanted = {d.target for d in disks if d.checkpoint}
    for target in all_targets:
        ET.SubElement(el, "disk", name=target, checkpoint="bitmap" if target in wanted else "no")
    return ET.tostring(root, encoding="unicode")


def backup_xml(disks: list[BackupDisk], all_targets: list[str], incremental: str | None) -> str:
    """Push-mode backup XML: each disk into its target file, full or incremental."""
    root = ET.Element("domainbackup", mode="push")
    if incremental:
        ET.SubElement(root, "incremental").text = incremental
    el = ET.SubElement(root, "disks")
    chosen = {d.target: d for d in disks}
    for target in all_targets:
        d = chosen.get(target)
        if d is None:
            ET.SubElement(el, "disk", name=target, backup="no")
            continue
        attrs = {"name": target, "type": "file", "backup": "yes"}
        if incremental:
            attrs["backupmode"] = "incremental" if d.incremental else "full"
            if d.incremental:
                attrs["incremental"] = incremental
        disk = ET.SubElement(el, "disk", attrs)
        ET.SubElement(disk, "target", file=d.file)
        ET.SubElement(disk, "driver", type="qcow2")
    return ET.tostring(root, encoding="unicode")


def begin(host: Domain, backup: str, checkpoint: str | None) -> None:
    """Start the push-mode job (targets exist: ``REUSE_EXTERNAL``). Returns when QEMU has
    taken its point-in-time view, which is what the freeze must cover."""
    lv = import_libvirt()
    try:
        host.dom.backupBegin(backup, checkpoint, lv.VIR_DOMAIN_BACKUP_BEGIN_REUSE_EXTERNAL)
    except lv.libvirtError as exc:
        raise HostError(f"backupBegin failed: {map_libvirt_error(exc).message}", domain=host.name) from exc


@dataclass
class JobProgress:
    """A running or finished backup job, from libvirt's job statistics."""

    processed: int = 0
    total: int = 0
    elapsed_ms: int = 0


def backup_job_running(host: Domain) -> bool:
    """True while this domain runs a backup job (ours or a dead run's)."""
    lv = import_libvirt()
    try:
        stats = host.dom.jobStats(0)
    except lv.libvirtError:
        return False
    kind = stats.get("type", lv.VIR_DOMAIN_JOB_NONE)
    return bool(kind != lv.VIR_DOMAIN_JOB_NONE
                and stats.get("operation", lv.VIR_DOMAIN_JOB_OPERATION_BACKUP)
                == lv.VIR_DOMAIN_JOB_OPERATION_BACKUP)


def wait_job(host: Domain, deadline: float,
             progress: Callable[[JobProgress], None] | None = None) -> JobProgress:
    """Poll the job to its end. Returns the completed job's figures; raises HostError
    when it failed or was cancelled, AgentTimeoutError at the deadline (the job is left
    running: the caller aborts it)."""
    lv = import_libvirt()
    last = JobProgress()
    while True:
        try:
            stats = host.dom.jobStats(0)
        except lv.libvirtError as exc:
            _lost_sight(host, exc)
            continue
        kind = stats.get("type", lv.VIR_DOMAIN_JOB_NONE)
        if kind == lv.VIR_DOMAIN_JOB_NONE:
            break
        last = _progress(stats)
        if progress is not None:
            progress(last)
        if time.monotonic() >= deadline:
            raise AgentTimeoutError("the backup job did not finish in time", domain=host.name)
        time.sleep(JOB_POLL)
    try:
        done = host.dom.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except lv.libvirtError as exc:
        _lost_sight(host, exc)
        done = host.dom.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
    kind = done.get("type")
    if kind == lv.VIR_DOMAIN_JOB_COMPLETED:
        final = _progress(done)
        if progress is not None:
            progress(final)
        return final
    why = done.get("errmsg") or ("cancelled" if kind == lv.VIR_DOMAIN_JOB_CANCELLED else "no reason given")
    _raise_if_stopped(host, why, settle=0.0)
    raise HostError(f"the backup job ended without completing: {why}", domain=host.name)


def _lost_sight(host: Domain, exc: Any) -> None:
    """A job query failed. libvirtd restarted (the connection is dead): reconnect, and
    the caller asks again (libvirt re-attaches to the running job). The domain stopped
    (shut down, destroyed, crashed): say so. Anything else is libvirt's error."""
    if not host.alive():
        host.reconnect()
        return
    _raise_if_stopped(host, map_libvirt_error(exc).message, settle=STOP_SETTLE)
    raise map_libvirt_error(exc, domain=host.name) from exc


#: How long a domain whose job failed may take to show as stopped in libvirt.
STOP_SETTLE = 3.0


def _raise_if_stopped(host: Domain, why: str, settle: float) -> None:
    """DomainNotRunningError if the domain is not running (now, or within ``settle`` s)."""
    deadline = time.monotonic() + settle
    while True:
        state = host.state()
        if state != "running":
            raise DomainNotRunningError(f"the domain stopped during the backup job (it is {state} now; "
                                        f"libvirt said: {why})", domain=host.name, state=state)
        if time.monotonic() >= deadline:
            return
        time.sleep(JOB_POLL)


def _progress(stats: dict[str, Any]) -> JobProgress:
    return JobProgress(processed=int(stats.get("disk_processed", stats.get("data_processed", 0)) or 0),
                       total=int(stats.get("disk_total", stats.get("data_total", 0)) or 0),
                       elapsed_ms=int(stats.get("time_elapsed", 0) or 0))


def abort_job(host: Domain) -> bool:
    """Abort the domain's job; False when there was none."""
    lv = import_libvirt()
    try:
        host.dom.abortJob()
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_OPERATION_INVALID:
            return False
        raise map_libvirt_error(exc, domain=host.name) from exc
    return True


def checkpoint_names(host: Domain) -> list[str]:
    lv = import_libvirt()
    try:
        return [str(c.getName()) for c in host.dom.listAllCheckpoints(0)]
    except lv.libvirtError as exc:
        raise map_libvirt_error(exc, domain=host.name) from exc


def checkpoint_exists(host: Domain, name: str) -> bool:
    return name in checkpoint_names(host)


def get_checkpoint_xml(host: Domain, name: str) -> str:
    lv = import_libvirt()
    try:
        return str(host.dom.checkpointLookupByName(name, 0).getXMLDesc(0))
    except lv.libvirtError as exc:
        raise map_libvirt_error(exc, domain=host.name) from exc


def redefine_checkpoint(host: Domain, xml: str) -> None:
    """Give libvirt back a checkpoint's metadata (the bitmap must still be in the image)."""
    lv = import_libvirt()
    try:
        host.dom.checkpointCreateXML(xml, lv.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE)
    except lv.libvirtError as exc:
        raise HostError(f"cannot redefine the checkpoint: {map_libvirt_error(exc).message}",
                        domain=host.name) from exc


def delete_checkpoint(host: Domain, name: str, *, metadata_only: bool = False) -> bool:
    """Delete a checkpoint (and its bitmaps); False when libvirt does not know it."""
    lv = import_libvirt()
    try:
        cp = host.dom.checkpointLookupByName(name, 0)
    except lv.libvirtError:
        return False
    flags = lv.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
    try:
        cp.delete(flags)
    except lv.libvirtError as exc:
        raise HostError(f"cannot delete checkpoint {name}: {map_libvirt_error(exc).message}",
                        domain=host.name) from exc
    return True


def bitmap_problems(host: Domain, name: str, targets: list[str]) -> list[str]:
    """Why the bitmaps of checkpoint ``name`` cannot serve an incremental (empty: they can).

    Reads QEMU's own view (``query-named-block-nodes``): a bitmap that is missing for a
    disk or marked ``inconsistent`` after a crash is a problem.
    """
    nodes = host.qmp("query-named-block-nodes", {"flat": True}) or []
    found: list[dict[str, Any]] = []
    for node in nodes:
        for bm in node.get("dirty-bitmaps") or []:
            if bm.get("name") == name:
                found.append(bm)
    problems = []
    if len(found) < len(targets):
        problems.append(f"QEMU holds {len(found)} of the {len(targets)} bitmap(s) of checkpoint {name} "
                        "(lost, for example when QEMU stopped abruptly while using them)")
    if any(bm.get("inconsistent") for bm in found):
        problems.append(f"QEMU marks the bitmap of checkpoint {name} inconsistent (it was in use "
                        "when QEMU stopped)")
    return problems
