"""Exit codes of the ``virt-qga`` CLI: the single table, rendered into docs/errors.md.

``virt-qga exec`` is the one exception: it exits with the guest process's own status
(128+N for a signal N); its own failures use 125 (virt-qga error) and 124 (timeout),
the conventions of ``env(1)`` and ``timeout(1)``.
"""

from __future__ import annotations

from enum import IntEnum


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
    INTERRUPTED = 130


#: One line per code, used by ``docs/errors.md`` (generated) and ``virt-qga --help``.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILED: "the operation failed (guest said no, host-side failure, bad reply); "
    "for workflows: failed and rolled back, nothing left changed",
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
    ExitCode.INTERRUPTED: "interrupted by SIGINT/SIGTERM (cleanup ran)",
}
