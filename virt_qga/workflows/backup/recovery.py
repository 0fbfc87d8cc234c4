"""What a dead backup run left, and its cleanup: used by the next ``backup`` of the
domain and by ``virt-qga recover``.

The backup journal (``<key>.backup.json``, see :mod:`virt_qga.workflows.journal`) says
what the run had got to: the partial directory, the checkpoint it created (recorded
before ``backupBegin``), the overlays of the snapshot method. From that and the live
state (a backup job still running in QEMU, a disk still on an overlay) the cleanup is:

* abort a backup job that nobody waits for any more;
* delete a checkpoint whose backup never got its final name (its bitmap would only
  cost QEMU work, and no chain can use it);
* remove the partial directory;
* merge the snapshot method's overlays back into their bases.

Each step is reported as done, or as a problem with the command that finishes it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from virt_qga.errors import VirtQgaError
from virt_qga.host import backup as hb

if TYPE_CHECKING:
    from virt_qga.host import Domain
    from virt_qga.workflows.journal import JournalState
    from virt_qga.workflows.lock import DomainLock

__all__ = ["Cleanup", "clean_dead_backup", "remove_checkpoint"]


@dataclass
class Cleanup:
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems


def clean_dead_backup(host: Domain | None, st: JournalState, *, lock: DomainLock | None = None,
                      state_dir: Path | None = None) -> Cleanup:
    """Undo what the dead backup run of ``st`` left (the caller holds the domain lock)."""
    out = Cleanup()
    data = st.data
    if host is not None and not host.alive():
        host.reconnect()  # libvirtd restarted under the run: what it left is on the new daemon
    running = host is not None and host.state() == "running"
    if running:
        assert host is not None
        try:
            if hb.backup_job_running(host):
                hb.abort_job(host)
                out.actions.append("aborted the backup job the dead run had started")
        except VirtQgaError as exc:
            out.problems.append(f"cannot abort the backup job: {exc} (virsh domjobabort {host.name})")
    final = data.get("final")
    checkpoint = data.get("checkpoint")
    if checkpoint and host is not None and not (final and Path(str(final)).is_dir()):
        try:
            done = remove_checkpoint(host, str(checkpoint))
            if done:
                out.actions.append(f"{done} (its backup was never completed)")
        except VirtQgaError as exc:
            out.problems.append(f"cannot delete checkpoint {checkpoint}: {exc} "
                                f"(virsh checkpoint-delete {host.name} {checkpoint})")
    partial = data.get("partial")
    if partial and Path(str(partial)).exists():
        shutil.rmtree(str(partial), ignore_errors=True)
        if Path(str(partial)).exists():
            out.problems.append(f"cannot remove the partial backup {partial}")
        else:
            out.actions.append(f"removed the partial backup {partial}")
    overlays = [o for o in data.get("overlays") or [] if isinstance(o, dict)]
    if overlays and host is not None:
        _merge_back(host, overlays, out, lock, state_dir)
    return out


#: How long a domain that is shutting down may take to be shut off (libvirt 9.0 was seen
#: taking ~20 s after QEMU had exited when the guest powered off during a backup job).
STOP_WAIT = 60.0


def remove_checkpoint(host: Domain, name: str) -> str | None:
    """Delete checkpoint ``name`` and its bitmaps; what was done, or None when libvirt
    does not know it. libvirt deletes checkpoints of running domains only: for a shut-off
    one (it stopped during the job) its metadata goes, and its bitmap is removed from each
    qcow2 image with qemu-img (no QEMU has them open)."""
    import xml.etree.ElementTree as ET

    from virt_qga.host import snapshots as hs
    from virt_qga.workflows.backup import images

    # a domain "shutting down" may still have QEMU holding its images: let it finish
    state = host.wait_for_state({"running", "shut off", "crashed"}, STOP_WAIT)
    if state == "running":
        return f"deleted checkpoint {name}" if hb.delete_checkpoint(host, name) else None
    if not hb.checkpoint_exists(host, name):
        return None
    # the checkpoint's own XML holds the domain as it was: live-attached disks included
    saved = ET.fromstring(hb.get_checkpoint_xml(host, name)).find("domain")
    hb.delete_checkpoint(host, name, metadata_only=True)
    cleared = []
    for d in hs.list_disks(saved if saved is not None else host.xml(inactive=True)):
        if d.source and d.source_type == "file" and d.driver_type == "qcow2" \
                and name in images.bitmaps(Path(d.source)):
            images.remove_bitmap(Path(d.source), name)
            cleared.append(d.target)
    where = f", and its bitmap from the image of {', '.join(cleared)}" if cleared else ""
    return f"deleted checkpoint {name} of the shut-off domain (libvirt's metadata{where})"


def _merge_back(host: Domain, overlays: list[dict[str, str]], out: Cleanup, lock: DomainLock | None,
                state_dir: Path | None) -> None:
    from virt_qga.host import snapshots as hs
    from virt_qga.workflows.snapshot import commit_back

    active = hs.active_sources(host)
    on_overlay = tuple(o["target"] for o in overlays if active.get(o["target"]) == o.get("overlay"))
    if not on_overlay:
        return
    try:
        done = commit_back(host.name, host.uri, disks=on_overlay, held_lock=lock, state_dir_=state_dir)
        out.actions.append("merged the snapshot method's overlay(s) back: "
                           + ", ".join(str(d.get("target")) for d in done))
    except VirtQgaError as exc:
        out.problems.append(f"cannot merge the overlay(s) of {', '.join(on_overlay)} back: {exc} "
                            f"(virt-qga snapshot {host.name} --commit-back)")
