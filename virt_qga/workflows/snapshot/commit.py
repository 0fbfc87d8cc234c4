"""Commit-back: undo external snapshots by merging each disk's active overlay into its
base. :func:`overlays_to_commit` is the one place that decides which disks qualify
(the CLI, the Ansible module's check mode and the backup all ask it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from virt_qga.errors import BadInputError, option_ref
from virt_qga.workflows.journal import Journal, state_dir
from virt_qga.workflows.lock import DomainLock, lock_path

if TYPE_CHECKING:
    from virt_qga.host import Domain

__all__ = ["commit_back", "overlays_to_commit"]


def overlays_to_commit(host: Domain, disks: tuple[str, ...] | list[str] = ()) -> list[dict[str, str]]:
    """``[{target, overlay, base}]`` that :func:`commit_back` would merge.

    Named ``disks`` qualify when they have a backing image; by default, every disk
    whose active image is a virt-qga overlay.
    """
    from virt_qga.host import snapshots as hs

    out = []
    for d in hs.list_disks(host.xml()):
        if disks and d.target not in disks:
            continue
        if d.source and d.backing and (disks or hs.is_vqga_overlay(d.source)):
            out.append({"target": d.target, "overlay": d.source, "base": d.backing})
    return out


def commit_back(domain: str, uri: str | None = None, *, disks: tuple[str, ...] = (),
                timeout: float = 300.0, wait_lock: float = 0.0,
                state_dir_: Path | None = None,
                held_lock: DomainLock | None = None) -> list[dict[str, Any]]:
    """Undo external snapshots: commit the active overlay of each disk into its base.

    Default disks: those whose active image is a virt-qga overlay (``*.vqga-*Z.qcow2``).
    Holds the domain lock while it works (or runs under ``held_lock``, already held).
    """
    from virt_qga.host import Domain
    from virt_qga.host import snapshots as hs

    host = Domain.lookup(domain, uri)
    base = state_dir_ or state_dir()
    journal = Journal.for_domain(host.uri, host.name, str(host.dom.UUIDString()), base=base)
    lock = held_lock or DomainLock(lock_path(base, journal.key), domain=host.name,
                                   operation="commit-back", wait=wait_lock)
    if held_lock is None:
        lock.acquire()
    try:
        targets = list(disks)
        if not targets:
            targets = [o["target"] for o in overlays_to_commit(host)]
            if not targets:
                raise BadInputError(f"no disk runs on a virt-qga overlay; name one with "
                                    f"{option_ref('disks')}", field="disks", domain=host.name)
        return [r.to_dict() for r in hs.commit_external(host, targets, timeout)]
    finally:
        if held_lock is None:
            lock.release()
