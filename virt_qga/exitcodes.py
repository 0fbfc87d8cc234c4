"""Exit codes of the ``virt-qga`` CLI: the single table, rendered into docs/errors.md.

Two tables live here and nowhere else: :class:`ExitCode` with its :data:`MEANINGS`,
and :data:`EXIT_BY_STATE`, which gives each workflow outcome
(:class:`~virt_qga.outcome.State`) its exit code. Only the edges (the CLI, the error
classes in :mod:`virt_qga.errors`, the Ansible modules through them) turn outcomes
into codes; ``virt_qga.host`` and ``virt_qga.transport`` never import this module.

``virt-qga exec`` is the one exception: it exits with the guest process's own status
(128+N for a signal N); its own failures use 125 (virt-qga error), 124 (timeout),
126 (cannot execute) and 127 (not found), the conventions of ``env(1)``,
``timeout(1)`` and the shell.
"""

from __future__ import annotations

from enum import IntEnum

from virt_qga.outcome import State


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    AGENT_UNAVAILABLE = 3
    TIMEOUT = 4
    PARTIAL = 5
    DOMAIN = 6
    CRASH_CONSISTENT = 7
    MAYBE_FROZEN = 8
    INCONSISTENT = 9
    LOCKED = 10
    EXEC_TIMEOUT = 124
    EXEC_FAILED = 125
    EXEC_CANNOT_RUN = 126
    EXEC_NOT_FOUND = 127
    INTERRUPTED = 130


#: One line per code, used by ``docs/errors.md`` (generated) and ``virt-qga --help``.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "the operation failed (guest said no, host-side failure, bad reply; "
    "backup-verify: a problem was found); for workflows: failed and rolled back, nothing left changed",
    ExitCode.USAGE: "usage error or invalid input; nothing was sent or changed",
    ExitCode.AGENT_UNAVAILABLE: "no usable guest agent: channel not configured, agent not "
    "answering, or command unknown/disabled in this agent version",
    ExitCode.TIMEOUT: "a command or wait hit its deadline",
    ExitCode.PARTIAL: "partial success or still pending (some domains/steps done, others not)",
    ExitCode.DOMAIN: "domain not found or not running",
    ExitCode.CRASH_CONSISTENT: "snapshot made, but only crash-consistent (quiesce fell back)",
    ExitCode.MAYBE_FROZEN: "thaw could not be confirmed: the guest may still be frozen "
    "(run `virt-qga recover DOMAIN`)",
    ExitCode.INCONSISTENT: "guest, QEMU and libvirt disagree, or a rollback was incomplete; "
    "manual action needed (the error says which)",
    ExitCode.LOCKED: "another virt-qga job holds this domain's lock",
    ExitCode.EXEC_TIMEOUT: "`exec` only: the guest command did not finish within --timeout",
    ExitCode.EXEC_FAILED: "`exec` only: virt-qga itself failed (the guest command's status is unknown)",
    ExitCode.EXEC_CANNOT_RUN: "`exec` only: the guest command exists but cannot be executed "
    "(permission denied), as in the shell",
    ExitCode.EXEC_NOT_FOUND: "`exec` only: the guest command was not found, as in the shell",
    ExitCode.INTERRUPTED: "interrupted by SIGINT/SIGTERM (cleanup ran)",
}


#: Workflow outcome -> (exit code, fixed). A *fixed* code holds whatever stopped the
#: workflow: these states need a human. Otherwise the code is that of the cause (a
#: timeout exits 4, a signal 130, an unavailable agent 3), and this one only when the
#: workflow stopped for no more specific reason.
EXIT_BY_STATE: dict[State, tuple[ExitCode, bool]] = {
    State.DONE: (ExitCode.OK, True),
    State.PARTIAL: (ExitCode.PARTIAL, True),
    State.INCONSISTENT: (ExitCode.INCONSISTENT, True),
    State.MAYBE_FROZEN: (ExitCode.MAYBE_FROZEN, True),
    State.FROZEN: (ExitCode.MAYBE_FROZEN, True),
    State.UNKNOWN: (ExitCode.EXEC_FAILED, True),
    State.PENDING: (ExitCode.PARTIAL, False),
    State.STALE_JOURNAL: (ExitCode.INCONSISTENT, False),
    State.RUNNING: (ExitCode.EXEC_TIMEOUT, False),
    State.ROLLED_BACK: (ExitCode.FAILED, False),
    State.NOTHING_DONE: (ExitCode.FAILED, False),
    State.UNCHANGED: (ExitCode.FAILED, False),
    State.SNAPSHOT_KEPT: (ExitCode.FAILED, False),
    State.FAILED: (ExitCode.FAILED, False),
}
