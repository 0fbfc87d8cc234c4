"""What a workflow left behind: one vocabulary for every workflow and front end.

A workflow that cannot finish cleanly raises :class:`~virt_qga.errors.OperationError`
with a :class:`State`. The exit code follows from the state through the one table in
:data:`virt_qga.exitcodes.EXIT_BY_STATE`: states that need a human (``maybe-frozen``,
``inconsistent``, ...) always have their own code; clean ones (``rolled-back``,
``unchanged``, ...) take the code of what stopped the workflow (a timeout, a signal,
an unavailable agent), so that "rolled back after a timeout" still exits 4.

This module imports nothing from virt-qga, so every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["State"]


class State(StrEnum):
    """Workflow outcomes. The values are what ``--json`` and Ansible report as ``state``."""

    #: Finished as asked.
    DONE = "done"
    #: A request is still in flight (a vCPU unplug, a shutdown not yet seen).
    PENDING = "pending"
    #: Some steps or domains done, others not.
    PARTIAL = "partial"
    #: Failed, and everything it changed was undone.
    ROLLED_BACK = "rolled-back"
    #: Failed before changing anything.
    NOTHING_DONE = "nothing-done"
    #: Refused or failed with nothing touched.
    UNCHANGED = "unchanged"
    #: A ``--mode command`` snapshot failed after its host command ran: what it made stays.
    SNAPSHOT_KEPT = "snapshot-kept"
    #: Guest, QEMU and libvirt disagree, or an undo was incomplete: a human must look.
    INCONSISTENT = "inconsistent"
    #: The thaw could not be confirmed: the guest may still be frozen.
    MAYBE_FROZEN = "maybe-frozen"
    #: The guest was found frozen (by someone else, or a dead run) and was left so.
    FROZEN = "frozen"
    #: A previous run died and left a journal; ``virt-qga recover`` must run first.
    STALE_JOURNAL = "stale-journal"
    #: A guest command outlived its deadline (or our wait) and is still running.
    RUNNING = "running"
    #: We lost track of a guest command: its status is unknown.
    UNKNOWN = "unknown"
    #: Failed; what it left is described by the message.
    FAILED = "failed"
