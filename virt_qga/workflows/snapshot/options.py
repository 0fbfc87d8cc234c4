"""The options of a snapshot, declared once (see :mod:`virt_qga.options`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError
from virt_qga.errors import option_ref as ref
from virt_qga.options import declare, option, validate

if TYPE_CHECKING:
    from virt_qga.workflows.lock import DomainLock

__all__ = ["FREEZE_COMMANDS", "MIN_FREE_BYTES", "MODES", "QUIESCE_POLICIES", "SnapshotOptions"]

MODES = ("external", "internal", "command")
QUIESCE_POLICIES = ("required", "preferred", "off")
#: Free space demanded in each overlay directory. A fresh qcow2 overlay is ~200 KiB and
#: grows with the guest's writes; 64 MiB buys minutes of normal write load and stops a
#: snapshot onto a full filesystem (where the guest would pause with ENOSPC at once).
MIN_FREE_BYTES = 64 * 1024 * 1024
#: Freeze/thaw commands that must be enabled for a quiesced snapshot.
FREEZE_COMMANDS = ("guest-fsfreeze-freeze", "guest-fsfreeze-thaw", "guest-fsfreeze-status")


@declare
@dataclass
class SnapshotOptions:
    """How to take a snapshot. Every field with help is a CLI option and an Ansible option."""

    mode: str = option("external", choices=MODES, help=(
        "external: a disk-only qcow2 overlay per disk (libvirt); internal: a libvirt internal "
        f"checkpoint (RAM too); command: run {ref('command')} on the host while frozen."))
    disks: tuple[str, ...] = option((), flag="--disk", metavar="TARGET", help=(
        "Disk target, for example vda (repeatable; default: every writable disk)."))
    directory: str | None = option(None, kind="host_path", flag="--dir", ansible="dir", metavar="DIR",
                                   help="Put the overlays here instead of next to each base image.")
    name: str | None = option(None, kind="str", metavar="NAME",
                              help="Snapshot name (default vqga-<UTC time>).")
    metadata: bool = option(False, negatable=True, help=(
        "Let libvirt keep snapshot metadata (snapshot-list, revert). Default off: the overlay is "
        "the record, and a commit-back leaves nothing stale."))
    mountpoints: tuple[str, ...] = option((), flag="--mountpoint", metavar="PATH", help=(
        "Freeze only this guest mountpoint (repeatable; default: all filesystems)."))
    quiesce: str = option("required", choices=QUIESCE_POLICIES, help=(
        "required: fail when the guest cannot be frozen; preferred: fall back to a "
        "crash-consistent snapshot (exit 7); off: never freeze."))
    pre_freeze: str | None = option(None, kind="str", metavar="CMD", help=(
        "Guest command (/bin/sh -c) run just before the freeze; its failure aborts."))
    post_thaw: str | None = option(None, kind="str", metavar="CMD", help=(
        "Guest command run after the thaw; if it fails the snapshot is kept and the run exits 5."))
    hook_timeout: float = option(60.0, min=0, min_open=True, unit="seconds",
                                 help="Deadline of each guest hook, seconds.")
    command: str | None = option(None, kind="str", metavar="CMD", help=(
        f"With {ref('mode')} command: the host command run while the guest is frozen; its "
        "environment has VIRT_QGA_DOMAIN, VIRT_QGA_URI, VIRT_QGA_DISKS, VIRT_QGA_DISK_<TARGET> "
        "and VIRT_QGA_SNAPSHOT_NAME."))
    command_timeout: float = option(30.0, min=0, min_open=True, unit="seconds",
                                    help=f"Seconds {ref('command')} may take.")
    max_frozen: float = option(10.0, min=0, min_open=True, max=600, unit="seconds", help=(
        "The thaw guard thaws the guest this many seconds after the freeze, whatever happens "
        "to virt-qga."))
    thaw_timeout: float = option(5.0, min=1, unit="seconds",
                                 help="Deadline of each thaw request, seconds.")
    force_thaw_first: bool = option(False, help=(
        "If the guest is already frozen (a run that died), thaw it and go on instead of refusing."))
    wait_lock: float = option(0.0, min=0, unit="seconds", help=(
        "Wait this long for another virt-qga job on the domain (default: fail at once, exit 10)."))
    #: Create external overlays with qemu-img before the freeze and pass REUSE_EXT, so
    #: libvirt only attaches them inside the frozen window. None: on for local URIs and
    #: file-backed disks.
    precreate: bool | None = option(None, kind="bool", negatable=True, help=(
        "Create the external overlays with qemu-img before freezing (libvirt REUSE_EXT), keeping "
        "file creation out of the frozen window. Default: on for local URIs and file disks."))

    # -- internal: set by front ends or callers, not user options -----------------------
    #: Deadline of each agent reply (the CLI's global --timeout, Ansible's timeout).
    timeout: float = 30.0
    #: The agent's channel socket instead of libvirt (only mode command works there).
    socket: str | None = None
    min_free_bytes: int = MIN_FREE_BYTES
    state_dir: Path | None = None
    description: str | None = None
    #: A :class:`~virt_qga.workflows.lock.DomainLock` the caller already holds on this
    #: domain (a backup keeps it from snapshot through copy to commit-back); the
    #: snapshot then neither takes nor releases the lock itself.
    held_lock: DomainLock | None = None
    #: ``mode command`` without a host command: call this while the guest is frozen
    #: instead (a backup's ``backupBegin``). What it creates is the caller's to undo.
    frozen_action: Callable[[], None] | None = None

    def validate(self) -> None:
        """Each option on its own (:func:`virt_qga.options.validate`), then combinations."""
        validate(self)
        if self.mode == "command" and not self.command and self.frozen_action is None:
            raise BadInputError(f"{ref('mode')} command needs {ref('command')}", field="command")
        if self.mode != "command" and self.command:
            raise BadInputError(f"{ref('command')} is only used with {ref('mode')} command",
                                field="command")
        if self.socket and self.mode != "command":
            raise BadInputError(f"over a bare agent socket only {ref('mode')} command is possible "
                                "(libvirt makes the external and internal snapshots)", field="mode")
        if self.mode == "internal" and self.directory:
            raise BadInputError(f"{ref('directory')} is only for external overlays", field="directory")
        if self.quiesce == "off" and (self.pre_freeze or self.post_thaw or self.mountpoints):
            raise BadInputError(f"hooks and {ref('mountpoints')} need a freeze; not with "
                                f"{ref('quiesce')} off", field="quiesce")
